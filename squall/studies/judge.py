"""How a hunt level is judged: enough answers for each SLO, and error rates by their 95 % Wilson interval.

Pure functions over a level's result document; the hunt (studies/hunt.py) runs the levels.
"""

from __future__ import annotations

import math
from typing import Any

from squall.plan.thresholds import Threshold

Z95 = 1.959964  # the two-sided 95 % normal quantile
TAIL_SAMPLES = 10  # answers a percentile SLO needs beyond its percentile
_QUANTILE = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def wilson(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate `errors / n`, in % ((0, 100) when n is 0)."""
    if n <= 0:
        return 0.0, 100.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def samples_needed(t: Threshold, floor: int) -> int:
    """Answers a level needs before `t` is judged: ~10 beyond a percentile's rank (n >= 10 / (1 - q)); for an
    error rate limit X, enough that a true X/2 or 2X lies outside the 95 % interval (n >= z^2 (1 - X/2) /
    (X/2)); `floor` for anything else."""
    if t.path == ("errors%",):
        half = t.limit / 200  # X/2 as a fraction
        if not 0 < half < 0.5:
            return floor  # errors<0% or <100%: the count alone decides
        return max(floor, math.ceil(Z95 * Z95 * (1 - half) / half))
    q = _QUANTILE.get(t.path[-1])
    return floor if q is None else max(floor, math.ceil(round(TAIL_SAMPLES / (1 - q), 6)))


def _scoped(summary: dict[str, Any], t: Threshold) -> dict[str, Any] | None:
    node: Any = summary
    for key in t.scope:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _answers(doc: dict[str, Any], t: Threshold) -> int:
    """How many samples `t`'s value rests on: its histogram's count when the document has it, else the
    requests of its scope."""
    summary = _scoped(doc["summary"], t)
    if summary is None:
        return 0
    if t.path != ("errors%",) and not t.scope and t.path[-1] in _QUANTILE:
        blob = (doc.get("histograms") or {}).get(t.path[-2].removesuffix("_ms"))
        if blob:
            from squall.hist import BadHistogram, decode

            try:
                return int(decode(blob).get_total_count())
            except BadHistogram:
                pass
    return int(summary.get("requests", 0))


def check_slo(doc: dict[str, Any], t: Threshold, floor: int) -> dict[str, Any]:
    """One SLO on one level: {expr, verdict (ok | fail | too_few | undecided), value, n, need, and for an
    error rate its 95 % interval `bound` [lo, hi] in %}."""
    summary = _scoped(doc["summary"], t)
    value = t.value(doc["summary"])
    need = samples_needed(t, floor)
    n = _answers(doc, t)
    out: dict[str, Any] = {"expr": t.expr, "value": value, "n": n, "need": need}
    if t.path == ("errors%",) and summary is not None:
        errors = int(summary.get("errors", 0))
        lo, hi = wilson(errors, n)
        out["bound"] = [round(lo, 4), round(hi, 4)]
        if n < need:
            out["verdict"] = "too_few"
        elif 0 < t.limit < 100:
            below, above = hi < t.limit, lo > t.limit  # the whole interval on one side of the limit
            if t.op in (">", ">="):
                below, above = above, below
            out["verdict"] = "ok" if below else "fail" if above else "undecided"
        else:
            out["verdict"] = "ok" if value is not None and t.holds(value) else "fail"
        return out
    if n < need:
        out["verdict"] = "too_few"
    else:
        out["verdict"] = "ok" if value is not None and t.holds(value) else "fail"
    return out


def level_verdict(checks: list[dict[str, Any]]) -> str:
    """A level fails on any SLO judged failing; else it is not judged while any lacks answers or its
    interval straddles the limit; else it passes."""
    verdicts = {c["verdict"] for c in checks}
    for v in ("fail", "too_few", "undecided"):
        if v in verdicts:
            return v
    return "ok"


def decisive(check: dict[str, Any], limit: float, most: float) -> float:
    """How many times its answers an undecided error-rate check needs for the 95 % interval at the same rate
    to miss `limit` (in %), up to `most`."""
    n, p = max(int(check["n"]), 1), (check["value"] or 0.0) / 100
    share = 1.0
    while share < most:
        share *= 1.1
        lo, hi = wilson(round(p * n * share), round(n * share))
        if hi < limit or lo > limit:
            break
    return min(share, most)
