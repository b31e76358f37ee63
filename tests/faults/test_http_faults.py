"""The HTTP fault matrix: a hostile or broken server on loopback, both transports, `squall run` end to end.

For each fault: the run ends on time, every request is accounted for (ok + errors == n), the fault is counted
under its documented kind, the result (-o) is written and valid, and the exit code is 0 (faults in the target
are data, not a failure of squall).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

import squall.engine.transport.aiohttp  # noqa: F401  (imported once here: each run's forked worker has it)
from squall.cli import app
from squall.engine.transport.http1 import FRAMED, HEAD_OPEN, TO_CLOSE, framing_of
from squall.report.json import read_json

TRANSPORTS = ("raw", "aiohttp")
N = 20
GIB = 1 << 30

Fault = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _answer(head: str, body: bytes = b"") -> Fault:
    """Write `head` (lines joined by CRLF, the blank line added) and `body`; keep the connection."""
    data = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body

    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return True

    return fault


def _then_close(head: str, body: bytes = b"", *, ended: bool = True) -> Fault:
    """As `_answer`, then a clean close (FIN), whatever the head said about the connection; `ended=False`:
    the head is cut (no blank line after it)."""
    answer = _answer(head, body) if ended else _raw(head.replace("\n", "\r\n").encode())

    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await answer(reader, writer)
        return False

    return fault


def _then_close_late(head: str) -> Fault:
    """As `_then_close`, but the close comes a little after the answer: the client has put the connection
    back in its pool, and its next request may go out on it as the close arrives."""
    answer = _answer(head)

    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await answer(reader, writer)
        await asyncio.sleep(0.001)
        return False

    return fault


async def _body_to_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """A body with no length (it ends at the close), cut by a reset instead of a clean close."""
    writer.write(b"HTTP/1.0 200 OK\r\n\r\n0123456789")
    await writer.drain()
    _rst(writer)
    return False


def _raw(data: bytes) -> Fault:
    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return True

    return fault


async def _reset_before(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    _rst(writer)
    return False


async def _reset_mid(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await writer.drain()
    await asyncio.sleep(0.01)
    _rst(writer)
    return False


async def _hang_after_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    await writer.drain()
    await reader.read()  # until squall gives up and closes
    return False


def _trickle(answer: bytes, keep: bool) -> Fault:
    """`answer` one byte at a time, a millisecond apart; then a close unless `keep`."""

    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        for b in answer:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.001)
        return keep

    return fault


async def _interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    # Interim answers apart and together, before the final one (their bytes split across reads).
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.002)
    writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHT")
    await writer.drain()
    await asyncio.sleep(0.002)
    writer.write(b"TP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    return True


async def _malformed_chunk_later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await writer.drain()
    await asyncio.sleep(0.02)  # the bad chunk in a later read, once the body has begun
    writer.write(b"zz\r\nhi\r\n0\r\n\r\n")
    await writer.drain()
    await reader.read()
    return False


async def _gib(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    block = bytes(1 << 20)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
    for _ in range(GIB // len(block)):
        writer.write(block)
        await writer.drain()
    return True


FAULTS: dict[str, Fault] = {
    "ok": _answer("HTTP/1.1 200 OK\nContent-Length: 2", b"ok"),
    "reset_before_answer": _reset_before,
    "reset_mid_body": _reset_mid,
    "hang_after_headers": _hang_after_headers,
    "trickle": _trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello, world", keep=True),
    "trickle_to_close": _trickle(b"HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nhello, world", keep=False),
    "malformed_status": _then_close("HTTP/1.1 2x0 OK\nContent-Length: 2", b"ok"),
    "malformed_header": _then_close("HTTP/1.1 200 OK\nContent-Length: 2\nNo colon here", b"ok"),
    "malformed_chunk": _then_close("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", b"zz\r\nhi\r\n0\r\n\r\n"),
    "malformed_chunk_later": _malformed_chunk_later,
    "short_length_close": _then_close("HTTP/1.1 200 OK\nContent-Length: 1000\nConnection: close", b"x" * 10),
    "short_length_keepalive": _then_close("HTTP/1.1 200 OK\nContent-Length: 1000", b"x" * 10),
    "short_length_http10": _then_close("HTTP/1.0 200 OK\nContent-Length: 1000", b"x" * 10),
    "chunk_cut": _then_close(
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nConnection: close", b"5\r\nhello\r\n10\r\nabc"
    ),
    "head_cut": _then_close("HTTP/1.1 200 OK\nContent-Le", ended=False),
    "body_to_close": _then_close("HTTP/1.0 200 OK\nContent-Type: text/plain", b"no length here"),
    "interim_then_200": _interim,
    "close_after_429": _then_close("HTTP/1.1 429 Too Many Requests\nContent-Length: 4", b"slow"),
    "close_after_401": _then_close("HTTP/1.1 401 Unauthorized\nContent-Length: 0"),
    "close_late_after_429": _then_close_late("HTTP/1.1 429 Too Many Requests\nContent-Length: 0"),
    "body_to_reset": _body_to_reset,
    "big": _answer("HTTP/1.1 200 OK\nContent-Length: 3000000", b"0123456789" * 300_000),
    "gib": _gib,
}
RETRY_AFTER = (
    b"2",  # seconds
    b"Wed, 21 Oct 2015 07:28:00 GMT",  # an HTTP date
    b"soon, please",  # garbage
    b"1e30",  # huge
    b"99999999999999999999",  # beyond 64 bits
    b"inf",
    b"-5",  # negative
    b"",  # empty
)


def _429_storm() -> Fault:
    """429 to every request, its Retry-After taking each form in turn."""
    forms = itertools.cycle(RETRY_AFTER)

    async def fault(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\nContent-Length: 0\r\n\r\n"
        writer.write(head % next(forms))
        await writer.drain()
        return True

    return fault


FAULTS["429_storm"] = _429_storm()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read each request's head; its path names the fault that answers it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            name = head.split(b" ", 2)[1].decode().strip("/")
            if not await FAULTS[name](reader, writer):
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


class FaultServer:
    """The fault routes on 127.0.0.1 (optionally over TLS), served from an event loop in a daemon thread."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def start() -> None:
            server = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=self.tls)
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> FaultServer:
        self.thread.start()
        assert self.ready.wait(5), "fault server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def url(self, fault: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{fault}"


@pytest.fixture(scope="module")
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


Run = tuple[int, dict[str, Any], float]


def squall_run(url: str, transport: str, out: Path, *extra: str, n: int = N) -> Run:
    """`squall run URL -n n` in process; (exit code, the -o document, seconds it took)."""
    args = ["run", url, "-n", str(n), "-c", "4", "-w", "1", "--transport", transport, "-q", "-o", str(out)]
    began = time.monotonic()
    res = CliRunner().invoke(app, [*args, *extra])
    took = time.monotonic() - began
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output, res.output
    return res.exit_code, read_json(str(out)), took


def accounted(doc: dict[str, Any], n: int = N) -> dict[str, Any]:
    """The summary, once every request is checked to be accounted for and the result valid."""
    s = doc["summary"]
    assert s["requests"] == s["ok"] + s["errors"] == n, s
    assert s["interrupted"] == 0, s
    assert doc["valid"] is True, doc["warnings"]
    return s


CASES: list[tuple[str, dict[str, int], dict[int, int]]] = [
    # (fault, error kinds, status codes)
    ("ok", {}, {200: N}),
    ("reset_before_answer", {"reset": N}, {}),
    ("reset_mid_body", {"truncated": N}, {}),
    ("trickle", {}, {200: N}),
    ("trickle_to_close", {}, {200: N}),
    ("malformed_status", {"protocol": N}, {}),
    ("malformed_header", {"protocol": N}, {}),
    ("malformed_chunk", {"protocol": N}, {}),
    ("malformed_chunk_later", {"protocol": N}, {}),
    ("short_length_close", {"truncated": N}, {}),
    ("short_length_keepalive", {"truncated": N}, {}),
    ("short_length_http10", {"truncated": N}, {}),
    ("chunk_cut", {"truncated": N}, {}),
    ("head_cut", {"reset": N}, {}),
    ("body_to_close", {}, {200: N}),
    ("body_to_reset", {"truncated": N}, {}),
    ("interim_then_200", {}, {200: N}),
    ("close_after_429", {"http_429": N}, {429: N}),
    ("close_after_401", {"http_401": N}, {401: N}),
    ("429_storm", {"http_429": N}, {429: N}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("fault", "kinds", "codes"), CASES, ids=[c[0] for c in CASES])
def test_fault_is_counted_under_its_kind(
    faults: FaultServer,
    tmp_path: Path,
    transport: str,
    fault: str,
    kinds: dict[str, int],
    codes: dict[int, int],
) -> None:
    code, doc, took = squall_run(faults.url(fault), transport, tmp_path / "r.json")
    s = accounted(doc)
    assert (s["error_kinds"], {int(k): v for k, v in s["status_codes"].items()}) == (kinds, codes)
    assert code == 0
    assert took < 20


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_close_just_after_an_answer_is_one_error(
    faults: FaultServer, tmp_path: Path, transport: str, method: str
) -> None:
    # The request that crosses the close goes again on a new connection: each 429 is counted once, no reset.
    n = 200
    extra = ("-m", method, "-b", "x", "-c", "8")
    code, doc, _ = squall_run(faults.url("close_late_after_429"), transport, tmp_path / "r.json", *extra, n=n)
    s = accounted(doc, n)
    assert (s["error_kinds"], s["status_codes"], code) == ({"http_429": n}, {"429": n}, 0)
    assert "internal" not in (doc.get("error_samples") or {})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused(closed_port: int, tmp_path: Path, transport: str) -> None:
    code, doc, _ = squall_run(f"http://127.0.0.1:{closed_port}/", transport, tmp_path / "r.json")
    assert (accounted(doc)["error_kinds"], code) == ({"connect": N}, 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hang_after_headers_times_out(faults: FaultServer, tmp_path: Path, transport: str) -> None:
    url = faults.url("hang_after_headers")
    code, doc, took = squall_run(url, transport, tmp_path / "r.json", "--timeout", "1s", "-c", "10", n=10)
    assert (accounted(doc, 10)["error_kinds"], code) == ({"timeout": 10}, 0)
    assert took < 10  # one timeout (1 s) and a sweep, not a hang


@pytest.fixture(scope="module")
def tls_faults() -> Iterator[FaultServer]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()  # not in the system's store: a certificate squall must not trust
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with FaultServer(ctx) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("insecure", "kinds", "codes"), [(False, {"tls": N}, {}), (True, {}, {200: N})])
def test_untrusted_certificate(
    tls_faults: FaultServer,
    tmp_path: Path,
    transport: str,
    insecure: bool,
    kinds: dict[str, int],
    codes: dict[int, int],
) -> None:
    extra = ("-k",) if insecure else ()
    code, doc, _ = squall_run(tls_faults.url("ok"), transport, tmp_path / "r.json", *extra)
    s = accounted(doc)
    assert (s["error_kinds"], {int(k): v for k, v in s["status_codes"].items()}, code) == (kinds, codes, 0)


def _peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """The largest RSS of `pid`'s squall worker children until `stop` is set."""
    me = psutil.Process(pid)
    while not stop.is_set():
        try:
            for p in me.children(recursive=True):
                if p.name().startswith("squall-worker"):
                    peak[0] = max(peak[0], p.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_gib_body_is_read_in_bounded_memory(faults: FaultServer, tmp_path: Path, transport: str) -> None:
    import os

    peak = [0]
    stop = threading.Event()
    watcher = threading.Thread(target=_peak_rss, args=(os.getpid(), stop, peak), daemon=True)
    watcher.start()
    try:
        out = tmp_path / "r.json"
        code, doc, _ = squall_run(faults.url("gib"), transport, out, "-c", "1", "--timeout", "60s", n=1)
    finally:
        stop.set()
        watcher.join(5)
    s = accounted(doc, 1)
    assert (s["ok"], s["bytes_in"], code) == (1, GIB, 0)
    assert 0 < peak[0] < 300 << 20, f"worker RSS peaked at {peak[0] >> 20} MB"


def fetch(transport: str, url: str, keep: int = 1 << 20) -> list[Any]:
    """`Transport.request` (the scenario steps' path) for `url` three times in a row on one transport: each
    outcome, as (status, nbytes, body) or the error kind."""
    from squall.engine.transport import TRANSPORTS
    from squall.engine.workload.http import build
    from squall.plan.plan import Client, Plan
    from squall.plan.specs import RequestSpec

    async def main() -> list[Any]:
        t = TRANSPORTS[transport]()(Plan(RequestSpec(url), client=Client(timeout_s=5.0)), 1)
        await t.open()
        out: list[Any] = []
        try:
            for _ in range(3):
                try:
                    a = await t.request(build("GET", url), keep=keep)
                    out.append((a.status, a.nbytes, a.body))
                except Exception as e:
                    out.append(t.classify(e))
        finally:
            await t.close()
        return out

    return asyncio.run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("fault", "want"),
    [
        ("interim_then_200", (200, 2, b"ok")),
        ("close_after_429", (429, 4, b"slow")),
        ("short_length_keepalive", "truncated"),
        ("chunk_cut", "truncated"),
        ("body_to_close", (200, 14, b"no length here")),
        ("malformed_chunk_later", "protocol"),
    ],
)
def test_request_path_sees_the_same(faults: FaultServer, transport: str, fault: str, want: Any) -> None:
    assert fetch(transport, faults.url(fault)) == [want] * 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_request_keeps_only_the_first_bytes_of_a_body(faults: FaultServer, transport: str) -> None:
    got = fetch(transport, faults.url("big"), keep=100_005)
    assert [(status, n, len(body), body[:20]) for status, n, body in got] == [
        (200, 3_000_000, 100_005, b"01234567890123456789")
    ] * 3


@pytest.mark.parametrize(
    ("head", "want"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", FRAMED),
        (b"HTTP/1.0 200 OK\r\n\r\nab", TO_CLOSE),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", TO_CLOSE),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", FRAMED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", FRAMED),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", TO_CLOSE),
        (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", FRAMED),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", FRAMED),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nx", TO_CLOSE),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", FRAMED),
        (b"HTTP/1.1 100 Continue\r\n\r\n", HEAD_OPEN),
        (b"HTTP/1.1 200 OK\r\nContent-Le", HEAD_OPEN),
        (b"", HEAD_OPEN),
        (b"garbage\r\n\r\n", HEAD_OPEN),
    ],
)
def test_framing_of_a_head(head: bytes, want: int) -> None:
    assert framing_of(head) == want
