"""Whether squall sends a trace on schedule: a 2,000-line trace compressed to 60 s against the built-in mock.

A seeded Mooncake-style trace (bursty arrivals over ten minutes, input lengths from 100 to 4,000 tokens in
512-token blocks shared between lines, 20 to 300 output tokens) is written to a temp file and replayed with
`--trace-speed` set so it takes 60 s. The built-in mock (pinned to CPU 1, recording when each request
arrived) answers; squall (its workers on CPU 0) replays the trace. It passes when squall's schedule lag p99 is
at most 2 ms and exactly one request per line was sent and answered.
Run: `python3 bench/trace.py [--lines 2000] [--seconds 60] [--workers 1]` (writes bench/trace.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from streams import serve_mock

from squall import __version__
from squall.engine import run
from squall.plan.build import LoadFlags, build
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.specs import RequestSpec
from squall.targets.mock_llm import MockOptions, MockState

HERE = Path(__file__).resolve().parent
QUIET_PCT = 20.0  # the host's CPU (% of one core) under which it counts as quiet before the run


def host_cpu_s() -> float:
    """CPU seconds the whole host has used (all cores)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (squall's workers, collector, the mock)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def wait_quiet(limit_s: float) -> float:
    """Wait (at most limit_s) until the host has been near idle for a second; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() < t0 + limit_s:
        h0 = host_cpu_s()
        time.sleep(1.0)
        if (host_cpu_s() - h0) * 100 < QUIET_PCT:
            break
    return time.monotonic() - t0


def make_trace(path: Path, lines: int, seed: int) -> float:
    """A seeded Mooncake-style JSONL trace of `lines` lines; returns its span in seconds."""
    rng = random.Random(seed)
    t, rows = 0.0, []
    shared = [list(range(i * 8, i * 8 + 8)) for i in range(20)]  # 20 "documents" of 8 blocks each
    next_block = 20 * 8
    for _ in range(lines):
        # Bursts: mostly short gaps, now and then a pause (mean 0.3 s: ten minutes for 2,000 lines).
        t += rng.expovariate(1 / 0.1) if rng.random() < 0.8 else rng.expovariate(1 / 1.1)
        n = min(4000, max(100, round(rng.lognormvariate(6.8, 0.7))))
        blocks = -(-n // 512)
        doc = rng.choice(shared)
        reuse = min(blocks, rng.randint(0, len(doc)))
        ids = doc[:reuse] + list(range(next_block, next_block + blocks - reuse))
        next_block += blocks - reuse
        out = rng.randint(20, 300)
        rows.append({"timestamp": round(t * 1000), "input_length": n, "output_length": out, "hash_ids": ids})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000


def mock_arrivals(state: MockState) -> dict[str, Any]:
    """What the mock saw: its request count and the arrival times."""
    return {"requests": state.requests, "arrivals": sorted(state.arrivals)}


def git_describe() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def measure(a: argparse.Namespace) -> dict[str, Any]:
    """One replay: squall's counts and schedule lag, and the mock's view of when the requests came."""
    with tempfile.TemporaryDirectory(prefix="squall-trace-") as tmp:
        path = Path(tmp) / "trace.jsonl"
        span = make_trace(path, a.lines, a.seed)
        speed = span / a.seconds
        ctx = mp.get_context("fork")
        here, there = ctx.Pipe()
        opts = MockOptions(port=0, ttft_s=a.ttft, itl_s=a.itl, tokens=a.tokens, record_sends=True)
        proc = ctx.Process(target=serve_mock, args=(there, opts, mock_arrivals), daemon=True)
        proc.start()
        try:
            port = here.recv()
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            spec = llm_spec(url, LlmFlags(trace=path, trace_speed=speed), seed=a.seed)
            flags = LoadFlags(workers=a.workers, quiet=True, timeout="60s")
            plan = build(
                RequestSpec(url=url, method="POST"), flags, connections=a.connections, llm=spec, argv=[]
            )
            offsets = plan.llm.trace_offsets  # type: ignore[union-attr]
            waited = wait_quiet(a.wait_quiet)
            t0, host0, own0 = time.monotonic(), host_cpu_s(), own_cpu_s()
            res = run(plan)
            wall = time.monotonic() - t0
            here.send("stop")
            server = here.recv()
        finally:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        others = (host_cpu_s() - host0 - (own_cpu_s() - own0)) / wall * 100
    s = res.summary
    arrivals = server["arrivals"]
    late: list[float] = []
    if len(arrivals) == len(offsets):
        # The mock's clock: the k-th arrival against the k-th offset, from the earliest (arrival - offset).
        base = min(t - o * 1e9 for t, o in zip(arrivals, offsets, strict=True))
        late = sorted((t - base) / 1e6 - o * 1000 for t, o in zip(arrivals, offsets, strict=True))
    lag = s["schedule_lag_ms"]
    exact = s["requests"] == s["ok"] == server["requests"] == a.lines and not s["dropped"] and not s["unsent"]
    return {
        "lines": a.lines,
        "trace_span_s": round(span, 3),
        "trace_speed": round(speed, 4),
        "replay_s": round(offsets[-1], 3),
        "wall_s": round(wall, 2),
        "requests": s["requests"],
        "ok": s["ok"],
        "errors": s["errors"],
        "dropped": s["dropped"],
        "unsent": s["unsent"],
        "server_requests": server["requests"],
        "schedule_lag_ms": lag,
        "server_late_ms_p50": round(late[len(late) // 2], 3) if late else None,
        "server_late_ms_p99": round(late[int(len(late) * 0.99)], 3) if late else None,
        "ttft_ms_p50": s["llm"]["ttft_ms"]["p50"],
        "input_tokens": s["llm"].get("input_tokens"),
        "squall_valid": res.doc["valid"],
        "warnings": res.warnings,
        "waited_for_quiet_s": round(waited, 1),
        "other_cpu_pct": round(others, 1),  # what the rest of the host used meanwhile, in % of one core
        "exact_count": exact,
        "pass": exact and lag["p99"] <= 2.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=60.0, help="the replay's length (sets --trace-speed)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--ttft", type=float, default=0.05)
    p.add_argument("--itl", type=float, default=0.005)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-quiet", type=float, default=60.0, help="at most this long for a quiet host first")
    a = p.parse_args(argv)
    os.sched_setaffinity(0, {0})
    print(f"[trace] {a.lines} lines in {a.seconds:g} s ...", file=sys.stderr, flush=True)
    row = measure(a)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "squall": __version__,
        "git": git_describe(),
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }
    (HERE / "trace.json").write_bytes(
        orjson.dumps({"args": vars(a), "machine": machine, "result": row}, option=orjson.OPT_INDENT_2)
    )
    lag = row["schedule_lag_ms"]
    print(
        f"{machine['date']}, `bench/trace.py --lines {a.lines} --seconds {a.seconds:g} "
        f"--workers {a.workers}`: "
        f"{row['requests']:,} requests ({row['ok']:,} ok, {row['server_requests']:,} at the mock) for "
        f"{a.lines:,} lines; schedule lag p50 {lag['p50']:.3f} ms, p99 {lag['p99']:.3f} ms, max "
        f"{lag['max']:.3f} ms; mock-side lateness p99 {row['server_late_ms_p99']} ms; the rest of the host "
        f"used {row['other_cpu_pct']} % of a core meanwhile; "
        f"{'pass' if row['pass'] else 'FAIL'}"
    )
    return 0 if row["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
