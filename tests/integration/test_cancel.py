"""--cancel-after and --cancel-rate against a slow in-test stream server that records early disconnects."""

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from squall.engine import run
from squall.engine.llm.cancel import draws
from squall.hist import decode
from squall.plan.plan import assemble
from squall.plan.specs import LlmSpec, RequestSpec
from squall.result.document import Result

TRANSPORTS = ("raw", "aiohttp")
TTFT_S = 0.05
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b'data: {"choices":[{"delta":{"content":"word "}}]}\n\n'


@dataclass
class Seen:
    """What the server saw: connections opened, requests, streams sent to their end, streams whose client
    closed the connection before their end."""

    connections: int = 0
    requests: int = 0
    complete: int = 0
    early: int = 0


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def slow_stream(seen: Seen, tokens: int, itl_s: float, ttft_s: float = TTFT_S) -> Callable:
    """A keep-alive SSE server: `ttft_s` to the first token, then one token every `itl_s`, each in its own
    chunk; a client that closes the connection mid-stream is counted `early` as soon as it does."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            for _ in range(100):  # (bounded: the runs here send a few requests a connection)
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: *(\d+)", head, re.I)
                await reader.readexactly(int(found.group(1)) if found else 0)
                seen.requests += 1
                writer.write(HEAD)
                eof = asyncio.ensure_future(reader.read(1))  # ends when the client closes the connection
                for i in range(tokens):
                    await asyncio.wait({eof}, timeout=itl_s if i else ttft_s)
                    if eof.done():
                        seen.early += 1
                        writer.close()
                        return
                    writer.write(_chunk(EVENT))
                writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                eof.cancel()  # (before any await: the next request cannot have come yet)
                await asyncio.gather(eof, return_exceptions=True)
                seen.complete += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


def stalled(seen: Seen) -> Callable:
    """A server that reads each request and never answers it; it counts a client's close as `early`."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"content-length: *(\d+)", head, re.I)
            await reader.readexactly(int(found.group(1)) if found else 0)
            seen.requests += 1
            if not await asyncio.wait_for(reader.read(1), 10):
                seen.early += 1
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        writer.close()

    return handler


def go(port: int, transport: str, spec: LlmSpec, **kw: object) -> Result:
    kw.setdefault("workers", 1)
    plan = assemble(
        RequestSpec(f"http://127.0.0.1:{port}/v1/chat/completions", "POST"),
        quiet=True,
        llm=spec,
        transport=transport,
        **kw,  # type: ignore[arg-type]
    )
    return run(plan.validate())


def counted(res: Result, name: str) -> int:
    blob = res.doc["histograms"].get(name)
    return 0 if blob is None else decode(blob).get_total_count()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_after_abandons_every_slow_stream(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=10, itl_s=0.3))  # a 2.75 s stream
    res = go(port, transport, LlmSpec(cancel_after=0.5), connections=2, requests=6)
    s = res.summary
    assert (s["ok"], s["errors"], s["error_kinds"], s["interrupted"]) == (0, 0, {}, 0)
    assert s["llm"]["cancelled"] == 6
    assert (s["llm"]["streamed"], s["llm"]["output_tokens"]) == (0, 0)  # no answer ended
    assert counted(res, "ttft") == 6  # the first token came at 50 ms: each TTFT is kept
    assert 40 <= s["llm"]["ttft_ms"]["p50"] < 300
    assert counted(res, "itl") == 6  # one gap each (tokens at 50 and 350 ms) before the cancel at 500 ms
    assert counted(res, "e2e") == counted(res, "tpot") == counted(res, "latency") == 0
    assert s["status_codes"] == {}
    # The server saw each connection closed mid-stream, and none reused: one connection a request.
    assert (seen.requests, seen.early, seen.complete, seen.connections) == (6, 6, 0, 6)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_answers_quicker_than_cancel_after_are_not_cancelled(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=5, itl_s=0.03))  # ~0.2 s answers, one after another
    # (each answer's 0.3 s timer would fall in the next answer's time on the same connection)
    res = go(port, transport, LlmSpec(cancel_after=0.3), connections=1, requests=4)
    s = res.summary
    assert (s["requests"], s["ok"], s["errors"], s["llm"]["cancelled"]) == (4, 4, 0, 0)
    assert (seen.requests, seen.complete, seen.early, seen.connections) == (4, 4, 0, 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_after_before_the_first_token(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=3, itl_s=0.1, ttft_s=0.5))
    res = go(port, transport, LlmSpec(cancel_after=0.05), connections=1, requests=3)  # well before the TTFT
    s = res.summary
    assert (s["ok"], s["errors"], s["llm"]["cancelled"]) == (0, 0, 3)
    assert counted(res, "ttft") == 0  # the stream had not started: no TTFT
    assert (seen.requests, seen.early, seen.complete) == (3, 3, 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_after_abandons_a_stalled_server(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(stalled(seen))  # no byte of an answer: only a timer can end the wait
    began = time.monotonic()
    res = go(port, transport, LlmSpec(cancel_after=0.1), connections=2, requests=4, timeout_s=5.0)
    took = time.monotonic() - began
    s = res.summary
    assert (s["ok"], s["errors"], s["error_kinds"], s["llm"]["cancelled"]) == (0, 0, {}, 4)
    assert counted(res, "ttft") == 0
    assert took < 4  # cancelled at 0.1 s, not at the 5 s timeout
    assert (seen.requests, seen.early, seen.connections) == (4, 4, 4)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_rate_follows_the_seeded_draw(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=8, itl_s=0.05))  # (a cut is 50 ms or more before the end)
    n, seed = 8, 7  # (seed 7 picks 5 of 8, the last one among them)
    want = sum(d is not None for d in draws(seed, 0, 0.5, n))
    assert 0 < want < n  # (the seed picks some, not all: the test tells cancelled from complete)
    spec = LlmSpec(cancel_rate=0.5, max_tokens=8)  # the expected end: 8 tokens, each cut before it
    res = go(port, transport, spec, connections=1, requests=n, seed=seed)
    s = res.summary
    assert s["llm"]["cancelled"] == want
    assert (s["ok"], s["errors"], s["error_kinds"]) == (n - want, 0, {})
    assert s["llm"]["streamed"] == n - want
    assert counted(res, "ttft") == n  # every stream got its first token, cancelled or not
    assert counted(res, "e2e") == n - want
    assert (seen.requests, seen.early, seen.complete) == (n, want, n - want)
    # One connection, and a new one after each cancelled stream the channel sent after.
    last_cancelled = draws(seed, 0, 0.5, n)[-1] is not None
    assert seen.connections == 1 + want - last_cancelled


def test_each_worker_draws_its_own_share(byte_server) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=8, itl_s=0.02))
    seed = 11
    want = sum(d is not None for w in (0, 1) for d in draws(seed, w, 0.5, 5))  # -n 10: 5 a worker
    res = go(
        port, "raw", LlmSpec(cancel_rate=0.5, max_tokens=8), workers=2, connections=2, requests=10, seed=seed
    )
    s = res.summary
    assert (s["llm"]["cancelled"], s["ok"], s["errors"]) == (want, 10 - want, 0)
    assert (seen.requests, seen.early) == (10, want)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_in_the_open_model(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=10, itl_s=0.1))
    res = go(port, transport, LlmSpec(cancel_after=0.2), connections=4, rate=10, requests=5)
    s = res.summary
    assert (s["ok"], s["errors"], s["llm"]["cancelled"]) == (0, 0, 5)
    assert counted(res, "ttft_intended") == 5
    assert (seen.requests, seen.early) == (5, 5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_requests_are_ok_errors_and_cancelled(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=8, itl_s=0.03))
    res = go(port, transport, LlmSpec(cancel_rate=0.5, max_tokens=8), connections=2, requests=10, seed=7)
    s = res.summary
    assert s["requests"] == s["ok"] + s["errors"] + s["llm"]["cancelled"] == 10


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cancel-rate", "1.5"], "--cancel-rate must be from 0 to 1"),
        (["--cancel-after", "0s"], "--cancel-after must be more than 0 s"),
        (["--cancel-after", "soon"], "--cancel-after"),
        (["--cancel-rate", "0.5", "--no-stream"], "--no-stream has neither"),
    ],
)
def test_bad_cancel_values_exit_2_with_one_line(args: list[str], words: str) -> None:
    # (port 9 on loopback: the plan is refused before anything is sent)
    got = subprocess.run(
        [sys.executable, "-m", "squall", "llm", "http://127.0.0.1:9/v1/chat/completions", "-n", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 2, got.stderr
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], got.stderr
    assert "Traceback" not in got.stderr


def test_the_cli_reports_cancelled(byte_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=10, itl_s=0.1))
    out = tmp_path / "result.json"
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "squall",
            "llm",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            "-n",
            "2",
            "-c",
            "2",
            "--cancel-after",
            "200ms",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert "cancelled: 2 abandoned (not errors; TTFT kept)" in got.stdout
    doc = json.loads(out.read_text())
    assert (doc["summary"]["llm"]["cancelled"], doc["summary"]["errors"]) == (2, 0)
    assert (seen.requests, seen.early) == (2, 2)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_after_with_max_inflight_cancels_the_pools_sends(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    seen = Seen()
    port = byte_server(slow_stream(seen, tokens=10, itl_s=0.1))  # a 1 s stream
    spec = LlmSpec(cancel_after=0.1, turns=2, max_inflight=1)
    res = go(port, transport, spec, connections=2, requests=6)
    s = res.summary
    assert (s["ok"], s["errors"], s["llm"]["cancelled"]) == (0, 0, 6)
    assert (seen.requests, seen.early, seen.complete) == (6, 6, 0)
