"""--trace end to end: every line sent once, with its own input size, at its offset (server's clock)."""

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from squall.engine import run
from squall.engine.llm.tokens import make_counter
from squall.plan.build import LoadFlags, build
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.specs import RequestSpec

ANSWER = b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'


def recording(got: list[tuple[int, dict]], delay: float = 0.0) -> Callable:
    """A keep-alive HTTP/1.1 handler that records (arrival ns, JSON body) and streams a one-token answer
    (`delay` seconds after the request)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                t = time.perf_counter_ns()
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                got.append((t, orjson.loads(await reader.readexactly(length))))
                if delay:
                    await asyncio.sleep(delay)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handle


def write_trace(path: Path) -> list[float]:
    """50 lines over about a second: 25 in the first 0.3 s, a pause, 25 from 0.7 s; line i asks for 20 + i
    tokens (so each request tells its line). Returns the offsets in s."""
    offsets = [i * 0.012 for i in range(25)] + [0.7 + i * 0.012 for i in range(25)]
    rows = [
        {"timestamp": 5000 + t * 1000, "input_length": 20 + i, "output_length": 3, "hash_ids": [i % 2]}
        for i, t in enumerate(offsets)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return offsets


def test_a_50_line_trace_sends_each_line_once_at_its_offset(tmp_path: Path, byte_server: Callable) -> None:
    got: list[tuple[int, dict]] = []
    port = byte_server(recording(got))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    offsets = write_trace(tmp_path / "t.jsonl")
    spec = llm_spec(url, LlmFlags(trace=tmp_path / "t.jsonl", block_tokens=8), seed=0)
    plan = build(RequestSpec(url=url, method="POST"), LoadFlags(workers=2, quiet=True), llm=spec, argv=[])
    res = run(plan)
    s = res.summary
    assert (s["requests"], s["ok"], s["errors"], s["dropped"], s["unsent"]) == (50, 50, 0, 0, 0)
    count = make_counter()
    sizes = [count(body["messages"][0]["content"]) for _, body in got]
    assert sorted(sizes) == [20 + i for i in range(50)]  # every line once, with its own size
    assert all(body["max_tokens"] == 3 for _, body in got)
    # Each line arrived at its offset, by the server's clock: from the earliest (arrival - offset) on, none
    # later than a busy box's slack (250 ms: a 2-core box with two other processes burning CPU; a quiet box
    # keeps within a few ms, see bench/trace.py).
    at = {size: t for size, (t, _) in zip(sizes, got, strict=True)}
    base = min(at[20 + i] - offsets[i] * 1e9 for i in range(50))
    late = [(at[20 + i] - base) / 1e9 - offsets[i] for i in range(50)]
    assert max(late) <= 0.25, late
    assert s["schedule_lag_ms"]["max"] < 250
    # The pause in the trace is a pause on the wire: every line of the first burst (to 0.288 s) arrived before
    # any of the second (from 0.7 s), and nothing arrived between 0.55 s and 0.69 s.
    assert max(at[20 + i] for i in range(25)) < min(at[20 + i] for i in range(25, 50))
    gaps = sorted((t - base) / 1e9 for t in at.values())
    assert not [g for g in gaps if 0.55 < g < 0.69], gaps


def test_trace_speed_compresses_the_replay(tmp_path: Path, byte_server: Callable) -> None:
    got: list[tuple[int, dict]] = []
    port = byte_server(recording(got))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    write_trace(tmp_path / "t.jsonl")
    spec = llm_spec(url, LlmFlags(trace=tmp_path / "t.jsonl", trace_speed=4), seed=0)
    plan = build(RequestSpec(url=url, method="POST"), LoadFlags(workers=1, quiet=True), llm=spec, argv=[])
    assert run(plan).summary["requests"] == 50
    span = (max(t for t, _ in got) - min(t for t, _ in got)) / 1e9
    # 0.2475 s asked; a busy box's slack either way (unsped, it would be 0.99 s; sent at once, about 0).
    assert 0.99 / 4 - 0.1 <= span <= 0.99 / 4 + 0.25, span


def test_bad_trace_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1}\n')
    cases = [
        ([str(path)], f"--trace {path}:2: input_length: missing"),
        (
            [str(good), "-r", "5"],
            "--trace sends at the trace's own times, one request per line; drop -r/--rate",
        ),
        ([str(good), "-n", "5"], "drop -n/--requests"),
        ([str(path), "--trace-speed", "0"], "--trace-speed must be a number greater than 0"),
    ]
    for args, message in cases:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "squall",
                "llm",
                "http://127.0.0.1:9/v1/chat/completions",
                "--trace",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], p.stderr


def test_the_cli_says_a_trace_was_sorted(tmp_path: Path, byte_server: Callable) -> None:
    got: list[tuple[int, dict]] = []
    port = byte_server(recording(got))
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"timestamp": 20, "input_length": 5, "output_length": 1}\n'
        '{"timestamp": 0, "input_length": 6, "output_length": 1}\n'
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    out = str(tmp_path / "out.json")
    p = subprocess.run(
        [sys.executable, "-m", "squall", "llm", url, "--trace", str(path), "-w", "1", "-q", "-o", out],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    note = f"squall: --trace {path}: the timestamps are out of order; replaying the lines sorted by time"
    assert p.stderr.splitlines()[0] == note, p.stderr
    assert len(got) == 2


def test_the_target_rate_follows_the_traces_bursts(tmp_path: Path, byte_server: Callable) -> None:
    got: list[tuple[int, dict]] = []
    port = byte_server(recording(got))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    path = tmp_path / "t.jsonl"
    offsets = [0.0, 0.1, 0.2, 0.3, 0.4, 2.3, 2.4, 2.5]  # 5 in the first second, none in the second, 3 after
    path.write_text(
        "".join(
            json.dumps({"timestamp": t * 1000, "input_length": 4, "output_length": 1}) + "\n" for t in offsets
        )
    )
    spec = llm_spec(url, LlmFlags(trace=path), seed=0)
    plan = build(RequestSpec(url=url, method="POST"), LoadFlags(workers=1, quiet=True), llm=spec, argv=[])
    res = run(plan)
    assert res.summary["requests"] == 8
    series = res.doc["timeseries"]
    assert [e["target_rps"] for e in series[:2]] == [5.0, 0.0]
    assert [e["requests"] for e in series[:2]] == [5, 0]
    last = series[2]
    assert last["target_rps"] == round(3 / (last["span_s"] if last["partial"] else 1.0), 3), series


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_a_dropped_line_keeps_later_lines_on_their_own_prompts(
    tmp_path: Path, byte_server: Callable, transport: str
) -> None:
    # One connection, a backlog of one and a server that takes 0.2 s: line 0 goes at once, line 1 waits in
    # the backlog, lines 2 to 4 are dropped; lines 5 and 6 (0.8 s on) go as line 0 did. Line j asks 20 + j.
    got: list[tuple[int, dict]] = []
    port = byte_server(recording(got, delay=0.2))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    path = tmp_path / "t.jsonl"
    offsets = [0.0, 0.01, 0.02, 0.03, 0.04, 0.8, 0.81]
    rows = [
        {"timestamp": t * 1000, "input_length": 20 + j, "output_length": 1} for j, t in enumerate(offsets)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = llm_spec(url, LlmFlags(trace=path), seed=0)
    flags = LoadFlags(workers=1, quiet=True, transport=transport)
    plan = build(RequestSpec(url=url, method="POST"), flags, llm=spec, argv=[], connections=1, max_backlog=1)
    s = run(plan).summary
    assert (s["requests"], s["ok"], s["dropped"]) == (4, 4, 3)
    count = make_counter()
    assert [count(body["messages"][0]["content"]) for _, body in got] == [20, 21, 25, 26]
