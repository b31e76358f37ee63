"""Both transports: identical counts for the same run, and the HTTP/1.1 cases the raw one must handle."""

import asyncio
import ssl

import pytest

from squall.engine import run
from squall.engine.workload.http import build_request
from squall.plan.plan import Outputs, Plan, assemble
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop
from squall.result.document import Result
from squall.targets.serve import ServerThread

TRANSPORTS = ("raw", "aiohttp")


def go(url: str, transport: str, **kw: object) -> Result:
    kw.setdefault("workers", 1)
    kw.setdefault("connections", 4)
    return run(
        assemble(RequestSpec(url, **kw.pop("spec", {})), quiet=True, transport=transport, **kw).validate()
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path", ["/", "/status/503", "/status/404", "/bytes/70000", "/close", "/reset", "/status/204"]
)
def test_transports_agree(target: ServerThread, path: str) -> None:
    got = {t: go(target.url + path, t, requests=120).summary for t in TRANSPORTS}
    raw, aio = got["raw"], got["aiohttp"]
    for key in ("requests", "ok", "errors", "status_codes", "error_kinds", "bytes_in"):
        assert raw[key] == aio[key], (path, key, raw[key], aio[key])
    assert raw["requests"] == 120


def test_auto_picks_raw_and_says_so(target: ServerThread) -> None:
    res = run(
        Plan(
            RequestSpec(target.url + "/"),
            stop=Stop(requests=10),
            spread=Spread(workers=1),
            outputs=Outputs(quiet=True),
        ).validate()
    )
    assert res.doc["meta"]["transport"] == "raw"


def test_post_body_and_head(target: ServerThread) -> None:
    for t in TRANSPORTS:
        s = go(target.url + "/", t, requests=50, spec={"method": "POST", "body": b"x" * 3000}).summary
        assert (s["ok"], s["bytes_out"], s["bytes_in"]) == (50, 150_000, 600)
        s = go(target.url + "/", t, requests=50, spec={"method": "HEAD"}).summary
        assert (s["ok"], s["bytes_in"]) == (50, 0)


def test_timeouts_and_refused(target: ServerThread, closed_port: int) -> None:
    s = go(target.url + "/delay/3000", "raw", requests=4, timeout_s=0.3).summary
    assert s["error_kinds"] == {"timeout": 4}
    s = go(f"http://127.0.0.1:{closed_port}/", "raw", requests=7).summary
    assert s["error_kinds"] == {"connect": 7}


def test_open_model_on_raw(target: ServerThread) -> None:
    s = go(target.url + "/", "raw", rate=500.0, duration_s=1.0, connections=16).summary
    assert s["requests"] == 500
    assert s["schedule_lag_ms"]["p50"] < 5


def test_request_bytes() -> None:
    spec = RequestSpec("http://127.0.0.1:8080/a?b=1", "POST", (("X-K", "v"),), b"hi")
    assert build_request(spec) == (
        b"POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: squall/0.1.0\r\nX-K: v\r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    assert build_request(RequestSpec("http://h/", headers=(("Host", "x"),))).startswith(
        b"GET / HTTP/1.1\r\nUser"
    )


def test_chunked_bodies(byte_server) -> None:  # type: ignore[no-untyped-def]
    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    port = byte_server(conn)
    for t in TRANSPORTS:
        s = go(f"http://127.0.0.1:{port}/", t, requests=40).summary
        assert (s["ok"], s["bytes_in"]) == (40, 40 * 11), t


def test_body_delimited_by_close(byte_server) -> None:  # type: ignore[no-untyped-def]
    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nno length here")
        await writer.drain()
        writer.close()

    port = byte_server(conn)
    for t in TRANSPORTS:
        s = go(f"http://127.0.0.1:{port}/", t, requests=20).summary
        assert (s["ok"], s["bytes_in"], s["error_kinds"]) == (20, 20 * 14, {}), t


def test_https_with_and_without_verification(byte_server) -> None:  # type: ignore[no-untyped-def]
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntls")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    url = f"https://127.0.0.1:{byte_server(conn, ssl=server_ctx)}/"
    for t in TRANSPORTS:
        s = go(url, t, requests=30, tls_verify=False).summary
        assert (s["ok"], s["bytes_in"]) == (30, 90), t
        s = go(url, t, requests=5).summary  # a certificate no one trusts
        assert s["error_kinds"] == {"tls": 5}, (t, s["error_kinds"])


def test_a_response_nobody_asked_for_is_a_protocol_error(byte_server) -> None:  # type: ignore[no-untyped-def]
    # Two responses to every request, in one write: the second must not be taken as the next answer
    # (its times would precede its request).
    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 2)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    s = go(f"http://127.0.0.1:{byte_server(conn)}/", "raw", requests=20).summary
    assert s["requests"] == 20
    assert s["ok"] + s["error_kinds"].get("protocol", 0) == 20
    assert s["error_kinds"].get("protocol", 0) >= 1
    assert s["latency_ms"]["min"] >= 0
