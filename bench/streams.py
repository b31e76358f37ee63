"""How many concurrent token streams one squall worker tracks exactly.

The built-in mock (pinned to CPU 1) streams tokens at a fixed inter-token latency and records when it wrote
each content event; one squall worker (pinned to CPU 0) streams from it for a while; then squall's ITL and
TTFT medians are compared with the server's own. A stream count passes when squall's ITL p50 is within 1 ms
of the server's and its self-check found no generator limit.
Run: `python3 bench/streams.py [--streams 500,1000,2000]`.

`--turns N` runs conversations instead: each stream is a user in an N-turn session whose every turn carries
the history so far (user messages of `--input-tokens` tokens, the answers as streamed), so request bodies
grow turn by turn while the streams are read; its table goes in the "Conversations" section of streams.md
and under "turns" in streams.json, beside the single-turn rows.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import psutil
import uvloop

from squall import __version__
from squall.engine import run
from squall.plan.load import Closed
from squall.plan.plan import Client, Outputs, Plan
from squall.plan.prompts import synthetic
from squall.plan.shard import Spread
from squall.plan.specs import LlmSpec, RequestSpec
from squall.plan.stop import Stop
from squall.targets.mock_llm import MockOptions, MockState, start_mock

HERE = Path(__file__).resolve().parent


def serve_mock(conn: Connection, opts: MockOptions, report: Callable[[MockState], dict[str, Any]]) -> None:
    """Child process: the mock on CPU 1, serving until told to stop, then sending `report(state)` back."""
    os.sched_setaffinity(0, {1})

    async def main() -> None:
        state = MockState()
        server = await start_mock(opts, state)
        conn.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
        await stop.wait()
        conn.recv()
        conn.send(report(state))
        server.close()

    uvloop.run(main())


def server_medians(state: MockState) -> dict[str, Any]:
    """What the mock saw: streams, events, and its own TTFT and ITL medians (ms)."""
    ttft = [(sent[0] - arr) / 1e6 for arr, sent in zip(state.arrivals, state.sends, strict=True) if sent]
    itl = [(b - a) / 1e6 for sent in state.sends for a, b in itertools.pairwise(sent)]
    return {
        "streams": len(state.sends),
        "events": state.events_sent,
        "ttft_p50": statistics.median(ttft) if ttft else None,
        "itl_p50": statistics.median(itl) if itl else None,
    }


def measure(
    streams: int,
    duration: float,
    ttft: float,
    itl: float,
    tokens: int,
    turns: int = 1,
    input_tokens: int = 32,
) -> dict[str, Any]:
    """One stream count: squall against the mock, both medians, squall's verdict and both CPU loads (and
    with `turns` > 1, the turns reached and TTFT by turn)."""
    ctx = mp.get_context("fork")
    here, there = ctx.Pipe()
    opts = MockOptions(port=0, ttft_s=ttft, itl_s=itl, tokens=tokens, record_sends=True)
    proc = ctx.Process(target=serve_mock, args=(there, opts, server_medians), daemon=True)
    proc.start()
    port = here.recv()
    mock_ps = psutil.Process(proc.pid)
    mock_cpu0 = sum(mock_ps.cpu_times()[:2])
    t0 = time.monotonic()
    plan = Plan(
        RequestSpec(f"http://127.0.0.1:{port}/v1/chat/completions", "POST"),
        load=Closed(connections=streams),
        spread=Spread(workers=1),
        stop=Stop(duration_s=duration),
        client=Client(timeout_s=60.0),
        outputs=Outputs(quiet=True),
        llm=LlmSpec(api="chat")
        if turns == 1
        else LlmSpec(api="chat", turns=turns, prompts=synthetic(1000, (input_tokens, 0.0), None, 1)),
    ).validate()
    res = run(plan)
    wall = time.monotonic() - t0
    mock_cpu = 100 * (sum(mock_ps.cpu_times()[:2]) - mock_cpu0) / wall
    here.send("stop")
    server = here.recv()
    proc.join(5)
    s, llm = res.summary, res.summary["llm"]
    cpus = [v for e in res.doc["timeseries"] for v in (e.get("worker_cpu") or {}).values() if v is not None]
    itl_diff = None if server["itl_p50"] is None else llm["itl_ms"]["p50"] - server["itl_p50"]
    by_turn = llm.get("by_turn") or {}
    conversation = {
        "turns_reached": max((int(k.rstrip("+")) for k in by_turn), default=1),
        "by_turn": {
            k: {
                "requests": t["requests"],
                "ttft_p50": t["ttft_ms"]["p50"],
                "input_tokens": t["input_tokens_mean"],
            }
            for k, t in by_turn.items()
        },
    }
    return ({} if turns == 1 else conversation) | {
        "streams": streams,
        "events_per_s": round(server["events"] / wall),
        "requests": s["requests"],
        "errors": s["errors"],
        "client_itl_p50": llm["itl_ms"]["p50"],
        "server_itl_p50": server["itl_p50"],
        "itl_diff_ms": itl_diff,
        "client_ttft_p50": llm["ttft_ms"]["p50"],
        "server_ttft_p50": server["ttft_p50"],
        "squall_valid": res.doc["valid"],
        "warnings": res.warnings,
        "worker_cpu_median": statistics.median(cpus) if cpus else None,
        "mock_cpu": round(mock_cpu, 1),
        "pass": itl_diff is not None and abs(itl_diff) <= 1.0 and res.doc["valid"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    out = [
        "| streams | events/s | squall ITL p50 ms | server ITL p50 ms | diff ms | squall TTFT p50 ms "
        "| server TTFT p50 ms | worker CPU % | mock CPU % | squall valid | within 1 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r['streams']:,}",
            f"{r['events_per_s']:,}",
            f(r["client_itl_p50"]),
            f(r["server_itl_p50"]),
            f(r["itl_diff_ms"]),
            f(r["client_ttft_p50"]),
            f(r["server_ttft_p50"]),
            f(r["worker_cpu_median"]),
            str(r["mock_cpu"]),
            str(r["squall_valid"]),
            "yes" if r["pass"] else "no",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def turns_table(rows: list[dict[str, Any]]) -> str:
    """TTFT and input tokens by turn, one line per stream count."""
    out = []
    for r in rows:
        cells = [
            f"turn {k}: {t['requests']:,} req, TTFT p50 {t['ttft_p50'] or 0:.1f} ms, "
            f"{t['input_tokens'] or 0:,.0f} tokens in"
            for k, t in r["by_turn"].items()
        ]
        out.append(f"- {r['streams']:,} streams, {r['turns_reached']} turns reached: " + "; ".join(cells))
    return "\n".join(out)


SECTION = "\n## Conversations\n"


def record(a: argparse.Namespace, head: str, rows: list[dict[str, Any]]) -> str:
    """Write streams.md and streams.json, keeping the other mode's part; returns this mode's text."""
    md, js = HERE / "streams.md", HERE / "streams.json"
    old_md = md.read_text() if md.exists() else ""
    old_js = orjson.loads(js.read_bytes()) if js.exists() else {}
    passing = [r["streams"] for r in rows if r["pass"]]
    best = max(passing) if passing else "none"
    text = f"{head}\n\n{table(rows)}\n\nMost streams tracked within 1 ms: {best}.\n"
    single, _, turns = old_md.partition(SECTION)
    if a.turns > 1:
        text += "\n" + turns_table(rows) + "\n"
        md.write_text(single.rstrip("\n") + "\n" + SECTION + "\n" + text)
        old_js["turns"] = {"args": vars(a), "rows": rows}
        js.write_bytes(orjson.dumps(old_js, option=orjson.OPT_INDENT_2))
    else:
        md.write_text(text + (SECTION + turns if turns else ""))
        doc = {"args": vars(a), "rows": rows} | ({"turns": old_js["turns"]} if "turns" in old_js else {})
        js.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", default="500,1000,2000,3000", help="comma-separated stream counts")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of load per stream count")
    p.add_argument("--ttft", type=float, default=0.15)
    p.add_argument("--itl", type=float, default=0.02)
    p.add_argument("--tokens", type=int, default=200, help="tokens per answer (long streams keep N open)")
    p.add_argument("--turns", type=int, default=1, help="user turns per conversation (1: single requests)")
    p.add_argument("--input-tokens", type=int, default=300, help="tokens per user turn (with --turns)")
    a = p.parse_args(argv)
    os.sched_setaffinity(0, {0})
    rows = []
    for n in (int(x) for x in a.streams.split(",")):
        print(f"[streams] {n} concurrent streams for {a.duration:g} s ...", file=sys.stderr, flush=True)
        rows.append(measure(n, a.duration, a.ttft, a.itl, a.tokens, a.turns, a.input_tokens))
    conv = f" --turns {a.turns} --input-tokens {a.input_tokens}" if a.turns > 1 else ""
    what = f"{a.turns}-turn conversations, {a.input_tokens}-token user turns, " if a.turns > 1 else ""
    head = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `bench/streams.py --streams {a.streams}{conv}`: one worker "
        f"on CPU 0, the mock on CPU 1, {what}TTFT {a.ttft * 1000:g} ms, ITL {a.itl * 1000:g} ms, {a.tokens} "
        f"tokens per answer, {a.duration:g} s per row; squall {__version__}, "
        f"Python {platform.python_version()}."
    )
    print(record(a, head, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
