"""Leak and drift verdicts of a soak, from the result's per-second series (which leaves out --warmup).

The target's RSS slope (least squares, MB/hour, with a 95 % confidence interval), latency and error-rate drift
between the first and the last stretch of the run, the target's file-descriptor growth, and squall's own
RSS slope.
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


GENERATOR_MIN_SAMPLES = 10


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
        target = [
            (e["t"], {"rss_mb": sum(e["worker_rss_mb"].values())})
            for e in full
            if e.get("worker_rss_mb") and all(v > 0 for v in e["worker_rss_mb"].values())  # 0: a worker gone
        ]
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
    fds = [s.get("fds") for _, s in target if s.get("fds") is not None]
    out["fd_growth"] = fds[-1] - fds[0] if len(fds) >= 2 else None
    # squall's own memory: its workers and its collector. A bare slope, so only from enough samples.
    gen = [
        (e["t"], sum(e["worker_rss_mb"].values()) + (e.get("collector_rss_mb") or 0.0))
        for e in full
        if e.get("worker_rss_mb") and all(v > 0 for v in e["worker_rss_mb"].values())  # 0: a worker gone
    ]
    gfit = slope(gen) if len(gen) >= GENERATOR_MIN_SAMPLES else None
    out["generator_rss_slope_mb_per_h"] = round(gfit[0] * 3600, 3) if gfit else None
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
        d["p50_ratio"] = round(d["p50_last_ms"] / d["p50_first_ms"], 3) if d["p50_first_ms"] else None
        d["p99_ratio"] = round(d["p99_last_ms"] / d["p99_first_ms"], 3) if d["p99_first_ms"] else None
        e0, e1 = _error_pct(first), _error_pct(last)
        out["error_drift"] = {"first_pct": e0, "last_pct": e1, "change_pct": round(e1 - e0, 4)}
    else:
        out["latency_drift"] = out["error_drift"] = None
    out["series"] = [
        {"t": t, "rss_mb": s["rss_mb"], "cpu": s.get("cpu"), "fds": s.get("fds"), "threads": s.get("threads")}
        for t, s in target
    ]
    return out


def _median(entries: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(e[key] for e in entries), 3)


def _error_pct(entries: list[dict[str, Any]]) -> float:
    requests = sum(e["requests"] for e in entries)
    return round(100.0 * sum(e["errors"] for e in entries) / requests, 4) if requests else 0.0
