"""Leak and drift verdicts of a soak, from the result's per-second series (which leaves out --warmup).

The target's RSS slope (least squares, MB/hour, with a 95 % confidence interval), latency and error-rate drift
between the first and the last stretch of the run, the target's file-descriptor growth while squall's
connections were open, and squall's own RSS once it has settled.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squall.plan.specs import SoakSpec


def slope(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """Least-squares slope of y over x and its 95 % confidence interval, or None with fewer than 3 points.

    The interval uses Student's t for n - 2 degrees of freedom, approximated as 1.96 + 2.4 / df (within
    about 2 % of the table from df = 3 on).
    """
    n = len(points)
    if n < 3:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    a = my - b * mx
    sse = sum((y - (a + b * x)) ** 2 for x, y in points)
    se = math.sqrt(sse / (n - 2) / sxx)
    t = 1.96 + 2.4 / (n - 2)
    return b, b - t * se, b + t * se


def _stretch(series: list[dict[str, Any]]) -> int:
    return max(10, len(series) // 10)


# squall's own memory grows while it starts (allocator arenas, the collector's first minute of series and
# histograms) and then holds: its slope is judged from the first GENERATOR_SETTLE_S s (or the first tenth of
# the run, if longer) on, and given per hour only over GENERATOR_MIN_S s or more of what is left; a shorter
# stretch gives its growth in MB, not a rate that would extrapolate one step of the allocator to an hour.
GENERATOR_SETTLE_S = 60
GENERATOR_MIN_S = 300
GENERATOR_MIN_SAMPLES = 10


def _alive(e: dict[str, Any]) -> bool:
    """Every worker was running when this second was sampled (an RSS of 0 or None: a worker gone)."""
    rss = e.get("worker_rss_mb")
    return bool(rss) and all(v is not None and v > 0 for v in rss.values())


def open_seconds(full: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seconds in which squall's connections were surely open: up to the first second in which a
    worker was gone, and never the run's last second (its sample follows the workers closing their
    connections, which the target sees as FDs dropping)."""
    out = []
    for e in full[:-1]:
        if e.get("worker_rss_mb") and not _alive(e):
            break
        out.append(e)
    return out


def generator_rss(full: list[dict[str, Any]]) -> dict[str, Any]:
    """squall's own RSS (workers and collector) after it settled: its growth in MB over the judged
    seconds, and a slope in MB/h (with its 95 % interval) when they span GENERATOR_MIN_S or more."""
    points = [
        (e["t"], sum(e["worker_rss_mb"].values()) + (e.get("collector_rss_mb") or 0.0))
        for e in full
        if _alive(e)
    ]
    out: dict[str, Any] = {
        "generator_rss_slope_mb_per_h": None,
        "generator_rss_slope_ci_mb_per_h": None,
        "generator_rss_growth_mb": None,
        "generator_rss_from_s": None,
        "generator_rss_to_s": None,
    }
    if not points:
        return out
    settle = max(GENERATOR_SETTLE_S, (points[-1][0] - points[0][0]) / 10)
    judged = [(t, v) for t, v in points if t - points[0][0] >= settle]
    if len(judged) < GENERATOR_MIN_SAMPLES:
        # (seconds count from 1, and the last one, as workers exit, may hold no sample)
        need = math.ceil(points[0][0] + settle + GENERATOR_MIN_SAMPLES) + 1
        out["generator_rss_note"] = (
            f"too short to judge squall's own memory: it settles in its first {settle:g} s, and needs "
            f"{GENERATOR_MIN_SAMPLES} s after that (a soak of {need:g} s or more)"
        )
        return out
    (t0, v0), (t1, v1) = judged[0], judged[-1]
    out.update(generator_rss_growth_mb=round(v1 - v0, 2), generator_rss_from_s=t0, generator_rss_to_s=t1)
    fit = slope(judged) if t1 - t0 >= GENERATOR_MIN_S else None
    if fit is not None:
        b, lo, hi = (round(v * 3600, 3) for v in fit)
        out.update(generator_rss_slope_mb_per_h=b, generator_rss_slope_ci_mb_per_h=[lo, hi])
    return out


def verdicts(series: list[dict[str, Any]], spec: SoakSpec, in_process: bool = False) -> dict[str, Any]:
    """The `soak` section of a result from its per-second series (entries after warmup, not partial).

    `in_process`: the load is a Python workload running inside squall's workers (`--py`); unless a target
    process is sampled too, the leak verdict is on the workers' RSS, where the workload's memory lives.
    """
    full = [e for e in series if not e.get("partial")]
    out: dict[str, Any] = {"leak_threshold_mb_per_h": spec.leak_threshold_mb_h, "seconds": len(full)}
    target = [(e["t"], e["target"]) for e in full if e.get("target") and e["target"].get("rss_mb")]
    out["subject"] = "target"
    if not target and in_process:
        target = [(e["t"], {"rss_mb": sum(e["worker_rss_mb"].values())}) for e in full if _alive(e)]
        out["subject"] = "workers"  # the Python workload's own process memory
    fit = slope([(t, s["rss_mb"]) for t, s in target])
    if fit is None:
        out.update(rss_slope_mb_per_h=None, rss_slope_ci_mb_per_h=None, leak_suspected=None)
        out["note"] = "the target was not sampled (--target-pid or --target-cmd) or the run was too short"
    else:
        b, lo, hi = (round(v * 3600, 3) for v in fit)
        out["rss_slope_mb_per_h"] = b
        out["rss_slope_ci_mb_per_h"] = [lo, hi]
        out["leak_suspected"] = lo > 0 and b > spec.leak_threshold_mb_h
    # The target's FDs count squall's connections too: judged only while they were all open.
    fds = [
        (e["t"], e["target"]["fds"])
        for e in open_seconds(full)
        if e.get("target") and e["target"].get("fds") is not None
    ]
    out["fd_growth"] = fds[-1][1] - fds[0][1] if len(fds) >= 2 else None
    out["fd_seconds"] = [fds[0][0], fds[-1][0]] if len(fds) >= 2 else None
    out.update(generator_rss(full))
    k = _stretch(full)
    if len(full) >= 2 * k:
        first, last = full[:k], full[-k:]
        out["latency_drift"] = {
            "stretch_s": k,
            "p50_first_ms": _median(first, "p50"),
            "p50_last_ms": _median(last, "p50"),
            "p99_first_ms": _median(first, "p99"),
            "p99_last_ms": _median(last, "p99"),
        }
        d = out["latency_drift"]
        for p in ("p50", "p99"):
            first_ms, last_ms = d[f"{p}_first_ms"], d[f"{p}_last_ms"]
            d[f"{p}_ratio"] = round(last_ms / first_ms, 3) if first_ms and last_ms is not None else None
        e0, e1 = _error_pct(first), _error_pct(last)
        out["error_drift"] = {"first_pct": e0, "last_pct": e1, "change_pct": round(e1 - e0, 4)}
    else:
        out["latency_drift"] = out["error_drift"] = None
    out["series"] = [
        {"t": t, "rss_mb": s["rss_mb"], "cpu": s.get("cpu"), "fds": s.get("fds"), "threads": s.get("threads")}
        for t, s in target
    ]
    return out


def _median(entries: list[dict[str, Any]], key: str) -> float | None:
    values = [e[key] for e in entries if e.get(key) is not None]  # null: a second with no answer
    return round(statistics.median(values), 3) if values else None


def _error_pct(entries: list[dict[str, Any]]) -> float:
    requests = sum(e["requests"] for e in entries)
    return round(100.0 * sum(e["errors"] for e in entries) / requests, 4) if requests else 0.0
