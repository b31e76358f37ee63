"""LLM servers that send odd answers: `squall llm` and a scenario's LLM step end on time, account for every
request, count the fault under its kind and write their result, over both transports.

Each server here answers every request the same way: its head, then its body in pieces written apart (so a
reader sees events, lines and UTF-8 characters split across reads), on a keep-alive connection.
"""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.specs import LlmSpec, RequestSpec
from squall.report.outputs import exit_code

N = 20
TRANSPORTS = ("raw", "aiohttp")


def chat(content: Any) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": {"content": content}}]})


def events(*payloads: bytes, nl: bytes = b"\n") -> bytes:
    return b"".join(b"data: " + p + nl + nl for p in payloads)


USAGE = orjson.dumps({"choices": [], "usage": {"completion_tokens": 3, "prompt_tokens": 5}})
GOOD = events(chat("Hel"), chat("lo"), chat(" world"), USAGE, b"[DONE]")
SNOWMAN = "☃ über 世界"


def pieces_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# name: (status, extra header lines, body pieces, what the result must say)
FAULTS: dict[str, tuple[int, bytes, list[bytes], dict[str, Any]]] = {
    "content_is_not_text": (
        200,
        b"",
        [events(chat(5), chat([1, 2]), chat({"a": 1}), b"[DONE]")],
        {"error_kinds": {"bad_response": N}, "bad_chunks": 3 * N},
    ),
    "choices_of_the_wrong_type": (
        200,
        b"",
        [events(chat("a"), b'{"choices":[null]}', b'["abc"]', b'{"choices":[{"delta":"abc"}]}', b"[DONE]")],
        {"ok": N, "bad_chunks": 3 * N},
    ),
    "usage_past_64_bits": (
        200,
        b"",
        [events(chat("a"), b'{"choices":[],"usage":{"completion_tokens":18446744073709551616}}', b"[DONE]")],
        {"ok": N, "bad_usage": N},
    ),
    "usage_past_2_31_and_not_a_number": (
        200,
        b"",
        [
            events(
                chat("a"),
                b'{"choices":[],"usage":{"completion_tokens":9223372036854775807,"prompt_tokens":"5"}}',
                b"[DONE]",
            )
        ],
        {"ok": N, "bad_usage": 2 * N, "output_tokens": N * 2**31},
    ),
    "usage_not_an_object": (
        200,
        b"",
        [events(chat("a"), b'{"choices":[],"usage":"many"}', b"[DONE]")],
        {"ok": N, "bad_usage": N},
    ),
    "retry_after_1e30": (
        429,
        b"Retry-After: 1e30\r\n",
        [b'{"error":{"message":"slow down"}}'],
        {"error_kinds": {"http_429": N}, "retry_after": {"count": N, "max_s": 3600.0}, "clamped": N},
    ),
    "retry_after_inf": (
        429,
        b"Retry-After: inf\r\n",
        [b"{}"],
        {"error_kinds": {"http_429": N}, "retry_after": {"count": N, "max_s": 3600.0}, "clamped": N},
    ),
    "retry_after_unreadable": (
        429,
        b"Retry-After: soon\r\n",
        [b"{}"],
        {"error_kinds": {"http_429": N}, "retry_after": {"count": N, "max_s": 0.0}, "clamped": N},
    ),
    "retry_after_not_text": (
        429,
        b"Retry-After: \xff\xfe1\r\n",
        [b"{}"],
        {"error_kinds": {"http_429": N}, "retry_after": {"count": N, "max_s": 0.0}, "clamped": N},
    ),
    "retry_after_an_http_date": (
        429,
        b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
        [b"{}"],
        {"error_kinds": {"http_429": N}, "retry_after": {"count": N, "max_s": 0.0}},
    ),
    "crlf_after_a_first_packet_without_cr": (
        200,
        b"",
        [b"data: " + chat("Hel"), b"\r\n\r\n" + events(chat("lo"), USAGE, b"[DONE]", nl=b"\r\n")],
        {"ok": N, "bad_chunks": 0, "output_tokens": 3 * N},
    ),
    "bare_cr_line_ends": (
        200,
        b"",
        pieces_every(events(chat("Hel"), chat("lo"), USAGE, b"[DONE]", nl=b"\r"), 7),
        {"ok": N, "bad_chunks": 0, "output_tokens": 3 * N},
    ),
    "mixed_line_ends_comments_heartbeats_and_split_utf8": (
        200,
        b"",
        pieces_every(
            b": hello\r\n\r\n"
            + events(chat(SNOWMAN), nl=b"\r\n")
            + b"event: ping\rdata:\r\r"
            + events(chat("!"), nl=b"\r")
            + b": keep-alive\n\n"
            + events(USAGE, b"[DONE]"),
            3,
        ),
        {"ok": N, "bad_chunks": 0, "output_tokens": 3 * N},
    ),
    "an_error_event_in_the_stream": (
        200,
        b"",
        [events(chat("a"), b'{"error":{"message":"overloaded","type":"server_error"}}')],
        {"error_kinds": {"stream_error": N}},
    ),
    "not_json_at_all": (
        200,
        b"",
        [events(b"{nope", b"\xff\xfe", b"[DONE]")],
        {"error_kinds": {"bad_response": N}, "bad_chunks": 2 * N},
    ),
}


def answer(status: int, extra: bytes, pieces: list[bytes]) -> list[bytes]:
    """The whole answer as the pieces it is written in: the head, then the body's pieces."""
    reason = {200: b"OK", 429: b"Too Many Requests"}[status]
    kind = b"text/event-stream" if status == 200 else b"application/json"
    size = sum(map(len, pieces))
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        reason,
        kind,
        size,
        extra,
    )
    return [head, *pieces]


def serve(*fault: Any, routes: dict[bytes, list[bytes]] | None = None) -> Callable[..., Any]:
    """An asyncio connection handler answering every request as `fault` (status, extra head lines, body
    pieces) says, or each path as `routes` says."""
    every = answer(*fault[:3]) if fault else []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                path = request.split(b" ", 2)[1]
                for piece in routes[path] if routes else every:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.001)  # apart: each piece its own read, as far as loopback allows
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


def squall(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    t = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "squall", *args], capture_output=True, text=True, timeout=timeout
    )
    return out, time.monotonic() - t


def check(doc: dict[str, Any], want: dict[str, Any]) -> None:
    s, llm = doc["summary"], doc["summary"]["llm"]
    assert s["requests"] == N
    assert s["ok"] + s["errors"] == N  # every request accounted for
    assert s["error_kinds"] == want.get("error_kinds", {})
    assert s["ok"] == want.get("ok", 0)
    for key in ("bad_chunks", "bad_usage", "output_tokens", "retry_after"):
        if key in want:
            assert llm[key] == want[key], (key, llm)
    assert llm["retry_after_clamped"] == want.get("clamped", 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_llm_counts_each_odd_answer(
    fault: str,
    transport: str,
    byte_server: Callable[..., int],
    check_result: Callable[[dict], None],
    tmp_path: Path,
) -> None:
    # `squall llm URL -n 20 -c 4 -w 1 --timeout 5s -o r.json` as the library runs it (the CLI's own path is
    # the next test's): the run ends, its file is written and its exit code is 0 (faults are data).
    port = byte_server(serve(*FAULTS[fault]))
    out = tmp_path / "r.json"
    plan = assemble(
        RequestSpec(f"http://127.0.0.1:{port}/v1/chat/completions", "POST"),
        llm=LlmSpec(api="chat"),
        requests=N,
        connections=4,
        workers=1,
        timeout_s=5.0,
        transport=transport,
        quiet=True,
        out_path=str(out),
    )
    t = time.monotonic()
    result = run(plan.validate())
    assert time.monotonic() - t < 30
    assert exit_code(result) == 0
    doc = json.loads(out.read_text())
    check_result(doc)
    check(doc, FAULTS[fault][3])


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["content_is_not_text", "retry_after_inf"])
def test_the_cli_survives_what_once_hung_or_killed_it(
    fault: str, transport: str, byte_server: Callable[..., int], tmp_path: Path
) -> None:
    port = byte_server(serve(*FAULTS[fault]))
    out = tmp_path / "r.json"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    ran, took = squall(
        "llm", url, "-n", str(N), "-c", "4", "-w", "1", "--timeout", "5s", "--transport", transport,
        "-q", "-o", str(out),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr + ran.stdout
    assert took < 30
    check(json.loads(out.read_text()), FAULTS[fault][3])


def test_a_scenario_llm_step_counts_odd_answers(byte_server: Callable[..., int], tmp_path: Path) -> None:
    # Step `odd` gets three unusable events among good ones (it passes); step `bad` nothing usable (it fails).
    routes = {b"/odd": answer(*FAULTS["choices_of_the_wrong_type"][:3])}
    routes[b"/bad"] = answer(*FAULTS["content_is_not_text"][:3])
    port = byte_server(serve(routes=routes))
    doc = tmp_path / "s.yaml"
    doc.write_text(
        f"base_url: http://127.0.0.1:{port}\nusers: 2\nscenarios:\n  - name: s\n    steps:\n"
        "      - {name: odd, llm: {path: /odd, api: chat, prompt: hi}}\n"
        "      - {name: bad, llm: {path: /bad, api: chat, prompt: hi}}\n"
    )
    out = tmp_path / "r.json"
    ran, took = squall("scenario", str(doc), "-n", str(N), "-w", "1", "--timeout", "5s", "-q", "-o", str(out))
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr
    assert took < 30
    res = json.loads(out.read_text())
    s = res["summary"]
    assert s["requests"] == 2 * N
    assert (s["ok"], s["errors"], s["error_kinds"]) == (N, N, {"bad_response": N})
    assert s["llm"]["bad_chunks"] == 3 * N + 3 * N
    odd, bad = s["steps"]["odd"], s["steps"]["bad"]
    assert (odd["ok"], odd["llm"]["bad_chunks"]) == (N, 3 * N)
    assert (bad["errors"], bad["error_kinds"]) == (N, {"bad_response": N})
    assert s["scenarios"]["s"]["failed_at"] == {"bad": N}
