"""`squall compare`: per-metric deltas between two results, with a verdict that knows about noise.

Percentiles use the histograms: with n samples, the value at percentile p is uncertain by the values at ranks
n*p +- 1.96*sqrt(n*p*(1 - p)) (the order-statistic interval). Two runs differ on that percentile only when
their intervals do not overlap. Error rates use a two-proportion z-test. Rates without a noise model (req/s,
tokens/s) count as changed beyond `noise_pct`. A regression is a change for the worse beyond
`max_regression_pct`.
"""

from __future__ import annotations

import math
from typing import Any

from hdrh.histogram import HdrHistogram

from squall.hist import BadHistogram, decode, values_at
from squall.units import PlanError

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
LLM_HISTS = (
    ("ttft", (("p50", 50.0), ("p99", 99.0))),
    ("itl", (("p50", 50.0), ("p99", 99.0))),
    ("tpot", (("p50", 50.0),)),
)


def percentile_interval(h: HdrHistogram, pct: float, z: float = 1.96) -> tuple[float, float, float]:
    """(value, low, high) in ms for a percentile, with the order-statistic confidence interval."""
    n = h.get_total_count()
    p = pct / 100.0
    half = z * math.sqrt(n * p * (1 - p))
    lo = max(0.0, (n * p - half) / n * 100.0)
    hi = min(100.0, (n * p + half) / n * 100.0)
    values = values_at(h, (pct, lo, hi))
    return values[pct] / 1000.0, values[lo] / 1000.0, values[hi] / 1000.0


def _decode(blob: Any, which: str, name: str) -> HdrHistogram:
    """A result's histogram; PlanError naming it when it cannot be read."""
    try:
        return decode(blob)
    except BadHistogram as e:
        raise PlanError(f"the {which} result's histograms.{name}: {e}") from None


def _change(base: float, cur: float) -> float | None:
    return None if base == 0 else round(100.0 * (cur - base) / base, 3)


def _row(
    metric: str, base: float, cur: float, lower_is_better: bool, differs: bool, limit: float
) -> dict[str, Any]:
    change = _change(base, cur)
    if not differs or cur == base:
        verdict = "same"
    else:
        worse = cur > base if lower_is_better else cur < base
        verdict = "worse" if worse else "better"
    regression = verdict == "worse" and (change is None or abs(change) > limit)
    return {
        "metric": metric,
        "baseline": round(base, 4),
        "current": round(cur, 4),
        "change_pct": change,
        "verdict": verdict,
        "regression": regression,
    }


def compare(
    base: dict[str, Any], cur: dict[str, Any], max_regression_pct: float = 10.0, noise_pct: float = 5.0
) -> dict[str, Any]:
    """Rows for every metric both results have, and whether any is a regression."""
    rows = []
    for hist_name, label, pcts in (("latency", "latency", PERCENTILES), *((n, n, p) for n, p in LLM_HISTS)):
        b_hists, c_hists = base.get("histograms", {}), cur.get("histograms", {})
        if hist_name not in b_hists or hist_name not in c_hists:  # (present but empty: an error below)
            continue
        b_blob, c_blob = b_hists[hist_name], c_hists[hist_name]
        hb, hc = _decode(b_blob, "baseline", hist_name), _decode(c_blob, "current", hist_name)
        if not hb.get_total_count() or not hc.get_total_count():
            continue
        for key, pct in pcts:
            vb, lb, ub = percentile_interval(hb, pct)
            vc, lc, uc = percentile_interval(hc, pct)
            differs = ub < lc or uc < lb
            rows.append(_row(f"{label} {key} ms", vb, vc, True, differs, max_regression_pct))
    sb, sc = base["summary"], cur["summary"]
    for metric, b, c in (
        ("req/s", sb.get("rps", 0.0), sc.get("rps", 0.0)),
        *(
            (("output tokens/s", sb["llm"]["output_tokens_per_s"], sc["llm"]["output_tokens_per_s"]),)
            if "llm" in sb and "llm" in sc
            else ()
        ),
    ):
        change = _change(b, c)
        differs = change is None or abs(change) > noise_pct
        rows.append(_row(metric, b, c, False, differs, max_regression_pct))
    nb, nc = sb.get("requests", 0), sc.get("requests", 0)
    if nb and nc:
        eb, ec = sb.get("errors", 0) / nb, sc.get("errors", 0) / nc
        pooled = (sb.get("errors", 0) + sc.get("errors", 0)) / (nb + nc)
        se = math.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / nc))
        differs = se > 0 and abs(ec - eb) / se > 1.96
        row = _row("error rate %", 100 * eb, 100 * ec, True, differs, max_regression_pct)
        # A rate that starts at 0 has no relative change: any significant rise is a regression.
        rows.append(row)
    return {
        "max_regression_pct": max_regression_pct,
        "noise_pct": noise_pct,
        "rows": rows,
        "regression": any(r["regression"] for r in rows),
        "warnings": mismatches([base, cur], ["baseline", "current"]),
    }


def mismatches(docs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """What differs between results that should describe the same test (target, method, model, kind)."""
    out = []
    for key, what in (("url", "target"), ("method", "method"), ("model", "load model"), ("llm", "LLM API")):
        if key == "llm":
            values = [(d.get("meta", {}).get("llm") or {}).get("api") for d in docs]
        else:
            values = [d.get("meta", {}).get(key) for d in docs]
        if len(set(map(str, values))) > 1:
            pairs = ", ".join(f"{n}: {v}" for n, v in zip(names, values, strict=True))
            out.append(f"the inputs differ in {what} ({pairs}): are they the same test?")
    return out
