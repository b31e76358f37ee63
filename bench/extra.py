#!/usr/bin/env python3
"""squall's own costs: recording share, RSS per connection, RSS over a soak, and the collector's merge cost.

Imported by run.py for the arithmetic and the tables; run as `python3 bench/extra.py merge` it simulates the
collector's per-second work for 64 workers and prints one JSON object (run.py starts it pinned to CPU 0).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

KB_PER_MB = 1024  # squall's sampler reports RSS in MiB
MEM_CONNS = 10_000
RECORD_N = {"raw": 600_000, "aiohttp": 50_000}  # about 10 s of work each on this machine
DISTINCT = 5  # distinct windows per simulated worker in the merge simulation
STATUSES = ((200, 0.98), (404, 0.01), (500, 0.005), (503, 0.005))


class RoundLike(Protocol):
    error: str | None
    extra: dict[str, Any]


class JobLike(Protocol):
    scenario: str
    client: str
    skip: str | None
    rounds: Sequence[RoundLike]

    def median(self, pick: Callable[[Any], float | None]) -> float | None: ...


def fmt(v: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if v is None else f"{v:{spec}}{suffix}"


# ---------------------------------------------------------------- reading squall's result documents


def worker_rss(doc: dict[str, Any]) -> list[tuple[float, float]]:
    """(t in s, RSS MB of worker 0) for every second in which the worker was sampled alive.

    The last second's sample can come after the worker exited: psutil then reads None, or 0 for a zombie.
    """
    out = []
    for entry in doc.get("timeseries", []):
        mb = (entry.get("worker_rss_mb") or {}).get("0")
        if mb:
            out.append((float(entry["t"]), float(mb)))
    return out


def rss_growth(series: list[tuple[float, float]], from_s: float = 60) -> dict[str, float] | None:
    """RSS at the first sample at or after `from_s` and at the last sample, and the growth between them."""
    later = [(t, mb) for t, mb in series if t >= from_s]
    if len(later) < 2:
        return None
    (t0, mb0), (t1, mb1) = later[0], later[-1]
    return {"from_t_s": t0, "to_t_s": t1, "from_mb": mb0, "to_mb": mb1, "growth_mb": round(mb1 - mb0, 2)}


# ---------------------------------------------------------------- the figures run.py derives from its jobs


def find(jobs: Sequence[JobLike], scenario: str, client: str) -> JobLike | None:
    return next((j for j in jobs if j.scenario == scenario and j.client == client and not j.skip), None)


def recording(jobs: Sequence[JobLike], on: str, off: str, client: str) -> dict[str, float | None]:
    """Median CPU µs/request with recording on and off, and the share recording takes of the 'on' cost.

    Recording is user-mode work (the only syscall it adds is one pipe write a second), so the share is the
    difference in *user* CPU over the whole 'on' CPU: the kernel's part of sending and receiving is the
    same either way and its round-to-round noise (several µs) would otherwise drown a ~1 µs difference.
    The difference in all CPU is reported next to it.
    """
    a, b = find(jobs, on, client), find(jobs, off, client)
    us_on = a.median(lambda r: r.cpu_us_per_request) if a else None
    us_off = b.median(lambda r: r.cpu_us_per_request) if b else None
    user_on = a.median(lambda r: r.user_us_per_request) if a else None
    user_off = b.median(lambda r: r.user_us_per_request) if b else None
    share = (user_on - user_off) / us_on * 100 if us_on and user_on and user_off is not None else None
    share_all = (us_on - us_off) / us_on * 100 if us_on and us_off is not None else None
    return {
        "cpu_us_on": us_on,
        "cpu_us_off": us_off,
        "user_us_on": user_on,
        "user_us_off": user_off,
        "share_pct": share,
        "share_all_cpu_pct": share_all,
    }


def per_connection(jobs: Sequence[JobLike], many: str, one: str, client: str) -> dict[str, float | None]:
    """Median worker RSS at the end of the many- and one-connection runs, and KB per added connection."""
    a, b = find(jobs, many, client), find(jobs, one, client)
    mb_many = a.median(lambda r: r.extra.get("rss_end_mb")) if a else None
    mb_one = b.median(lambda r: r.extra.get("rss_end_mb")) if b else None
    kb = (mb_many - mb_one) * KB_PER_MB / MEM_CONNS if mb_many and mb_one else None
    return {"rss_many_mb": mb_many, "rss_one_mb": mb_one, "kb_per_connection": kb}


def merge_figures(jobs: Sequence[JobLike], scenario: str) -> dict[str, float | None]:
    j = find(jobs, scenario, "squall-collector")
    ms = j.median(lambda r: r.extra.get("cpu_ms_per_second")) if j else None
    return {"cpu_ms_per_second": ms, "core_pct": ms / 10 if ms is not None else None}


# ---------------------------------------------------------------- tables


def rounds_of(j: JobLike | None, key: str, spec: str) -> str:
    if j is None:
        return "—"
    return ", ".join("failed" if r.error else fmt(r.extra.get(key), spec) for r in j.rounds)


def recording_table(jobs: Sequence[JobLike], on: str, off: str) -> list[str]:
    head = "| client | -n | CPU µs/request on | off | user µs/request on | off | recording share (user) |"
    out = [head + " share (all CPU) | all rounds CPU on | off |", "|---|" + "---:|" * 7 + "---|---|"]
    for client in ("squall-aiohttp", "squall-raw"):
        a, b = find(jobs, on, client), find(jobs, off, client)
        if a is None and b is None:
            continue
        f = recording(jobs, on, off, client)
        n = next((r.extra.get("n") for j in (a, b) if j for r in j.rounds), None)
        keys = ("cpu_us_on", "cpu_us_off", "user_us_on", "user_us_off")
        cells = [fmt(n)] + [fmt(f[k], ".2f") for k in keys]
        cells += [fmt(f["share_pct"], ".1f", " %"), fmt(f["share_all_cpu_pct"], ".1f", " %")]
        cells += [rounds_of(a, "cpu_us", ".2f"), rounds_of(b, "cpu_us", ".2f")]
        out.append(f"| {client} | " + " | ".join(cells) + " |")
    return out


def memory_table(jobs: Sequence[JobLike], many: str, one: str) -> list[str]:
    head = f"| client | worker RSS c=1 MB | worker RSS c={MEM_CONNS} MB | KB per connection |"
    out = [head + f" all rounds c=1 | all rounds c={MEM_CONNS} |", "|---|---:|---:|---:|---|---|"]
    if skipped := [j.skip for j in jobs if j.scenario == many and j.skip]:
        return [*out, f"| squall-raw | — | — | — | skipped: {skipped[0]} | |"]
    f = per_connection(jobs, many, one, "squall-raw")
    cells = [fmt(f["rss_one_mb"], ".1f"), fmt(f["rss_many_mb"], ".1f"), fmt(f["kb_per_connection"], ".2f")]
    a, b = find(jobs, many, "squall-raw"), find(jobs, one, "squall-raw")
    cells += [rounds_of(b, "rss_end_mb", ".1f"), rounds_of(a, "rss_end_mb", ".1f")]
    return [*out, "| squall-raw | " + " | ".join(cells) + " |"]


def merge_table(jobs: Sequence[JobLike], scenario: str) -> list[str]:
    j = find(jobs, scenario, "squall-collector")
    if j is None:
        return ["(not run)"]
    f = merge_figures(jobs, scenario)
    setup = next((r.extra for r in j.rounds if not r.error), {})
    out = [
        "| workers | responses/worker/s | simulated s | CPU ms per second | % of one core | all rounds ms |"
    ]
    out.append("|---:|---:|---:|---:|---:|---|")
    cells = [fmt(setup.get("workers")), fmt(setup.get("responses_per_window")), fmt(setup.get("seconds"))]
    cells += [fmt(f["cpu_ms_per_second"], ".2f"), fmt(f["core_pct"], ".2f", " %")]
    cells.append(rounds_of(j, "cpu_ms_per_second", ".2f"))
    return [*out, "| " + " | ".join(cells) + " |"]


def soak_table(soak: JobLike) -> list[str]:
    head = "| client | minutes | req/s | RSS at minute 1 MB | RSS at end MB | growth MB | max MB |"
    out = [head + " RSS each minute MB |"]
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in soak.rounds:
        g = r.extra.get("growth") or {}
        minutes = fmt(g["to_t_s"] / 60, ".1f") if g else "—"
        cells = [minutes, "failed" if r.error else fmt(r.rps), fmt(g.get("from_mb"), ".2f")]
        cells += [fmt(g.get("to_mb"), ".2f"), fmt(g.get("growth_mb"), "+.2f")]
        cells.append(fmt(r.extra.get("rss_max_mb"), ".2f"))
        cells.append(", ".join(fmt(mb, ".1f") for _, mb in r.extra.get("rss_per_minute", [])))
        out.append("| squall-raw | " + " | ".join(cells) + " |")
    return out


# ---------------------------------------------------------------- the collector's merge cost, simulated


def feed(rec: Any, responses: int, rng: random.Random) -> None:
    """One second of a worker's traffic: lognormal latencies, a few error statuses and failures."""
    codes, weights = zip(*STATUSES, strict=True)
    statuses = rng.choices(codes, weights, k=responses)
    for status in statuses:
        latency_ns = int(rng.lognormvariate(7.6, 0.6) * 1000)  # median ≈ 2 ms
        first_ns = latency_ns - int(latency_ns * rng.uniform(0.01, 0.1))
        rec.response(status, 0, 0, first_ns, latency_ns, 150)
    for _ in range(rng.randrange(3)):
        rec.failure(rng.choice(("timeout", "connect")))
    for _ in range(100):  # the worker's loop-lag probe runs every 10 ms
        rec.loop_lag(int(rng.lognormvariate(5.0, 0.8)))


def merge_cost(workers: int = 64, seconds: int = 30, responses: int = 2000, seed: int = 1) -> dict[str, Any]:
    """The collector's CPU per second for `workers` windows: decode, Aggregate.add, pop_seconds, second_entry.

    The windows are built and encoded first, outside the timing. Per window the timed part also takes the
    loop-lag p99, as the collector does; receiving the bytes from the pipes is not included.
    """
    from squall.collector.aggregate import Aggregate, second_entry
    from squall.engine.recorder import LOOP_LAG_P99, Recorder
    from squall.wire import Window, decode, encode

    rng = random.Random(seed)
    t0 = time.process_time()
    # Each worker's windows cycle through DISTINCT differently fed seconds (feeding 64 x 30 seconds one by
    # one would take a minute); every window is encoded with its own seq and times, as a worker sends it.
    recorders = [Recorder(w, 0) for w in range(workers)]
    fed: list[list[Window]] = []
    for k in range(DISTINCT):
        for rec in recorders:
            feed(rec, responses, rng)
        fed.append([rec.snapshot(k, 0, 10**9, 64) for rec in recorders])
    blobs = [
        [
            encode(replace(w, seq=seq, t_start=(seq - 1) * 10**9, t_end=seq * 10**9))
            for w in fed[seq % DISTINCT]
        ]
        for seq in range(1, seconds + 1)
    ]
    setup_s = time.process_time() - t0
    # The collector holds no recorders: drop the simulated workers' state so the timed part's garbage
    # collections do not walk 64 workers' histogram buckets (a cost the real collector never has).
    del recorders, fed
    gc.collect()

    agg, entries, clock = Aggregate(), [], time.process_time
    add_s = lag_s = pop_s = 0.0
    for seq, second in enumerate(blobs, 1):
        t0 = clock()
        windows = [decode(blob) for blob in second]
        for w in windows:  # as the collector does: the worker's loop-lag p99 comes out before the merge
            w.counters.pop(LOOP_LAG_P99, None)
            agg.add(w)
        t1 = t2 = clock()
        entries += [second_entry(sec, 1.0) for sec in agg.pop_seconds(seq)]
        t3 = clock()
        add_s, lag_s, pop_s = add_s + t1 - t0, lag_s + t2 - t1, pop_s + t3 - t2
    assert len(entries) == seconds and agg.counters["requests"] >= workers * seconds * responses
    cpu_s = add_s + lag_s + pop_s
    return {
        "workers": workers,
        "seconds": seconds,
        "responses_per_window": responses,
        "window_bytes_median": statistics.median(len(b) for s in blobs for b in s),
        "setup_cpu_s": round(setup_s, 3),
        "cpu_s": round(cpu_s, 4),
        "cpu_ms_per_second": round(cpu_s / seconds * 1000, 3),
        "ms_per_second_decode_add": round(add_s / seconds * 1000, 3),
        "ms_per_second_loop_lag_p99": round(lag_s / seconds * 1000, 3),
        "ms_per_second_pop_entry": round(pop_s / seconds * 1000, 3),
        "requests_merged": agg.counters["requests"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description="Simulate the collector's per-second merge; print JSON.")
    p.add_argument("what", choices=["merge"])
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--responses", type=int, default=2000)
    a = p.parse_args()
    if not (1 <= a.workers <= 512 and 1 <= a.seconds <= 600 and 1 <= a.responses <= 100_000):
        p.error("--workers 1..512, --seconds 1..600, --responses 1..100000")
    print(json.dumps(merge_cost(a.workers, a.seconds, a.responses)))


if __name__ == "__main__":
    main()
