"""Judgements over aggregates: pure functions, no I/O.

The self-check tells two things apart. *squall was the limit*: a worker's own CPU stayed at its limit, or
its event loop ran late while its own CPU was high (or the box was quiet, so the delay was its own); the run
is not valid. *The box was busy*: other processes held the CPU and squall's loop waited for a core while its
own CPU stayed low; squall was not the limit, so the run stays valid, with its timings marked unreliable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BUSY_PCT = 20.0  # other processes' mean share of the host's CPU (%) from which the box counts as busy
OWN_CPU_PCT = 50.0  # a worker whose mean CPU stays under this did not make its own loop late


def sustained(values: Sequence[float | None], limit: float, span: int) -> bool:
    """True when at least `span` consecutive values are at or above `limit` (None breaks a run)."""
    run = 0
    for v in values:
        run = run + 1 if v is not None and v >= limit else 0
        if run >= span:
            return True
    return False


def over_limits(
    cpu: dict[int, list[float | None]],
    loop_lag_p99_ms: dict[int, list[float | None]],
    cpu_limit: float,
    lag_limit_ms: float,
    span: int,
) -> dict[str, list[int]]:
    """The workers whose CPU, and whose event-loop lateness, stayed over its limit for `span` seconds."""
    return {
        "cpu": [w for w in sorted(cpu) if sustained(cpu[w], cpu_limit, span)],
        "loop_lag": [w for w in sorted(loop_lag_p99_ms) if sustained(loop_lag_p99_ms[w], lag_limit_ms, span)],
    }


def self_check(
    cpu: dict[int, list[float | None]],
    loop_lag_p99_ms: dict[int, list[float | None]],
    cpu_limit: float,
    lag_limit_ms: float,
    span: int,
    excused: Sequence[int] = (),
) -> list[str]:
    """Reasons the generator, not the target, limited the run (empty when it did not); the loop lag of the
    `excused` workers was the busy box's doing (see `box_delayed`), not squall's."""
    over = over_limits(cpu, loop_lag_p99_ms, cpu_limit, lag_limit_ms, span)
    reasons = [f"worker {w} CPU stayed at or above {cpu_limit:g}% for {span} s" for w in over["cpu"]]
    reasons += [
        f"worker {w} event loop ran late (timer lateness p99 > {lag_limit_ms:g} ms) for {span} s"
        for w in over["loop_lag"]
        if w not in excused
    ]
    return reasons


def box_delayed(
    cpu: dict[int, list[float | None]], lagging: Sequence[int], others_pct: float | None
) -> list[int]:
    """The lagging workers whose loop was late because other processes held the CPU: the box was busy
    (others used at least BUSY_PCT of it) while the worker's own mean CPU stayed under OWN_CPU_PCT, so the
    worker had room to spare and only waited for a core."""
    if others_pct is None or others_pct < BUSY_PCT:
        return []
    out = []
    for w in lagging:
        seen = [v for v in cpu.get(w, ()) if v is not None]
        if seen and sum(seen) / len(seen) < OWN_CPU_PCT:
            out.append(w)
    return out


def others_cpu_pct(series: Sequence[dict[str, Any]], cpus: int) -> float | None:
    """The mean share of the host's CPU (%) used over the series by processes other than squall's and the
    sampled target's.

    Host CPU is a share of every core; a process's CPU is a share of one core, hence the division.
    """
    shares = []
    for e in series:
        host = e.get("host_cpu")
        if host is None:
            continue
        mine = sum(v for v in (e.get("worker_cpu") or {}).values() if v is not None)
        mine += e.get("collector_cpu") or 0.0
        mine += (e.get("target") or {}).get("cpu") or 0.0  # a sampled target (--target-pid) is not "other"
        shares.append(max(0.0, host - mine / max(cpus, 1)))
    return round(sum(shares) / len(shares), 1) if shares else None


def host_busy(others_pct: float | None) -> bool:
    """Other processes used at least BUSY_PCT of the host's CPU over the run."""
    return others_pct is not None and others_pct >= BUSY_PCT


def name_processes(top: Sequence[dict[str, Any]]) -> str:
    """`python3 (pid 123) 95 %, node (pid 9) 40 %`: the other processes a busy box's warning names."""
    return ", ".join(f"{p['name']} (pid {p['pid']}) {p['cpu_pct']:.0f} %" for p in top)


def busy_box_warning(
    others_pct: float, top: Sequence[dict[str, Any]], delayed: Sequence[int], lag_limit_ms: float, span: int
) -> str:
    """The warning of a run whose loop lag the busy box caused: timings unreliable, squall not the limit."""
    most = f" (the busiest, in % of one core: {name_processes(top)})" if top else ""
    workers = ("worker " if len(delayed) == 1 else "workers ") + ", ".join(str(w) for w in delayed)
    return (
        f"timings unreliable: the box was busy, not squall: other processes used {others_pct:.0f}% of all "
        f"its cores{most}, and squall's event loop waited for a core ({workers}: timer lateness p99 over "
        f"{lag_limit_ms:g} ms for {span} s or more while its own CPU stayed under {OWN_CPU_PCT:g}%). squall "
        "was not the limit, so the run stays valid, but its latencies include that wait: run on a quieter "
        "box for clean numbers"
    )


def limit_warning(reason: str, in_process: bool) -> str:
    """The warning of one reason squall was the limit (a `self_check.reasons` entry)."""
    if in_process:  # the workload shares the worker's loop: its own blocking counts here
        return (
            f"generator-limited: {reason}; the workload runs in squall's loop, so blocking calls in it "
            "(or --tracemalloc's cost) show here too: the numbers describe this process's ceiling"
        )
    return (
        f"generator-limited: {reason}; squall was the limit, so the numbers describe squall's ceiling, not "
        "the target's, and its timings are unreliable (they include squall's own delay)"
    )
