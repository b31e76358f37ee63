"""`squall compare`: per-metric deltas between two results, with a verdict that knows about noise.

Two runs of the same command differ by more than the sampling noise inside one run: a busy second (the box,
the collector, a GC pause) moves every request in flight at once, so a run's requests are not independent
and the order-statistic interval of a percentile is too narrow. So a percentile is judged across time:

- it needs enough answers: at least 10 beyond it in each run (p99 needs 1,000, p999 10,000), else its row
  says "too few samples" and is never a regression;
- each run's seconds are grouped into blocks of whole seconds, each with enough answers for the
  percentile (two beyond it), and the percentile of each block is one sample; the two runs' block values
  are compared with Welch's t-test, one-sided at 5 %, in the direction of the change. With fewer than 3
  blocks in a run (or results without per-second histograms), the order-statistic intervals of the two
  whole runs are used instead, and the row says so;
- a difference is a regression only when it is also worse by more than `max_regression_pct` (the floor
  that back-to-back runs of one command stay within).

Rates (req/s, tokens/s) are judged the same way on their per-second values, with `noise_pct` as their
floor for "differs". Error rates use a two-proportion z-test. With `summary.by_key` in both results, each key
in both gets rows of its own (p99, TTFT p99, error rate, 429 share), judged the same way.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from hdrh.histogram import HdrHistogram

from squall.hist import BadHistogram, Merger, clear, decode, new_histogram, values_at
from squall.units import PlanError

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
LLM_HISTS = (
    ("ttft", (("p50", 50.0), ("p99", 99.0))),
    ("ttfat", (("p50", 50.0), ("p99", 99.0))),
    ("itl", (("p50", 50.0), ("p99", 99.0))),
    ("tpot", (("p50", 50.0),)),
)
SERIES_HISTS = {"latency": "latency_hist", "ttft": "ttft_hist"}  # per-second histograms a result keeps
TAIL_SAMPLES = 10  # answers beyond a percentile, in each run, before it is judged
BLOCK_TAIL = 2  # answers beyond a percentile in each block of seconds
MIN_BLOCKS = 3  # blocks (seconds for rates) each run needs for the test across time
KEY_NOISE = "within each run only (a key keeps no seconds): shown, never a regression"
FEW_BLOCKS = 8  # under this many blocks, a change past the floor the test cannot confirm is "inconclusive"
NAMES = ["baseline", "current"]
BUSIER_PCT = 25.0  # host CPU (mean, %) two runs differ by before compare warns that the box differed
MAX_BLOCKS = 300  # a longer run gives one block from each of this many equal stretches
# Student's t, one-sided 95 %, for 1..30 degrees of freedom (a fractional df rounds down: conservative).
_T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761)
_T95 += (1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701)
_T95 += (1.699, 1.697)


def t95(df: float) -> float:
    """Student's t one-sided 95 % quantile for `df` degrees of freedom."""
    if df < 1:
        return math.inf
    if df < len(_T95) + 1:
        return _T95[int(df) - 1]
    z = 1.644854  # above 30: the Cornish-Fisher expansion, within 0.001 of the exact value
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def welch_shift(base: list[float], cur: list[float]) -> float:
    """Welch's t statistic of `cur`'s mean over `base`'s, divided by the one-sided 95 % critical value:
    above 1, `cur` is significantly higher; below -1, significantly lower; NaN with fewer than 2 each."""
    if len(base) < 2 or len(cur) < 2:
        return math.nan
    vb, vc = statistics.variance(base) / len(base), statistics.variance(cur) / len(cur)
    diff = statistics.fmean(cur) - statistics.fmean(base)
    if vb + vc == 0:
        return math.inf if diff > 0 else -math.inf if diff < 0 else 0.0
    df = (vb + vc) ** 2 / (vb * vb / (len(base) - 1) + vc * vc / (len(cur) - 1))
    return diff / math.sqrt(vb + vc) / t95(df)


def percentile_interval(h: HdrHistogram, pct: float, z: float = 1.96) -> tuple[float, float, float]:
    """(value, low, high) in ms for a percentile, with the order-statistic confidence interval."""
    n = h.get_total_count()
    p = pct / 100.0
    half = z * math.sqrt(n * p * (1 - p))
    lo = max(0.0, (n * p - half) / n * 100.0)
    hi = min(100.0, (n * p + half) / n * 100.0)
    values = values_at(h, (pct, lo, hi))
    return values[pct] / 1000.0, values[lo] / 1000.0, values[hi] / 1000.0


def block_percentiles(
    doc: dict[str, Any], key: str, pcts: tuple[float, ...], which: str
) -> dict[float, list[float]]:
    """Per percentile, its value (ms) in each block of whole seconds of `doc`'s series (histograms under
    `key`): consecutive full seconds added up until the block has two answers beyond that percentile.
    Empty when the series keeps no per-second histograms.

    A run of more than MAX_BLOCKS seconds is cut into MAX_BLOCKS equal stretches and gives one block per
    stretch, from its start: the test needs no more, and decoding every second of a day-long run would cost
    many times what the rest of the comparison does."""
    seconds = [(i, e) for i, e in enumerate(doc.get("timeseries", ())) if not e.get("partial") and e.get(key)]
    if not seconds:
        return {}
    n, long_run = len(seconds), len(seconds) > MAX_BLOCKS
    stretches = (
        [seconds[k * n // MAX_BLOCKS : (k + 1) * n // MAX_BLOCKS] for k in range(MAX_BLOCKS)]
        if long_run
        else [seconds]
    )
    need = {p: math.ceil(round(BLOCK_TAIL / (1 - p / 100), 6)) for p in pcts}
    sizes = sorted(set(need.values()))
    totals = {size: new_histogram() for size in sizes}
    out: dict[int, list[dict[float, int]]] = {size: [] for size in sizes}
    merger = Merger()
    for stretch in stretches:
        filling = list(sizes)
        for i, e in stretch:
            if not filling:
                break
            try:
                merger.add(e[key], *(totals[size] for size in filling))
            except BadHistogram as err:
                raise PlanError(f"the {which} result's timeseries[{i}].{key}: {err}") from None
            for size in list(filling):
                if totals[size].get_total_count() >= size:
                    out[size].append(values_at(totals[size], pcts))
                    clear(totals[size])
                    if long_run:  # one block per stretch
                        filling.remove(size)
        for h in totals.values():  # a block left short at the end of a stretch is not a sample
            clear(h)
    return {p: [v[p] / 1000.0 for v in out[need[p]]] for p in pcts}


def _decode(blob: Any, which: str, name: str) -> HdrHistogram:
    """A result's histogram; PlanError naming it when it cannot be read."""
    try:
        return decode(blob)
    except BadHistogram as e:
        raise PlanError(f"the {which} result's histograms.{name}: {e}") from None


def _change(base: float, cur: float) -> float | None:
    return None if base == 0 else round(100.0 * (cur - base) / base, 3)


def _row(
    metric: str, base: float, cur: float, lower_is_better: bool, differs: bool, limit: float, how: str
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
        "noise": how,
    }


def _unjudged(metric: str, base: float | None, cur: float | None, verdict: str, how: str) -> dict[str, Any]:
    """A row with no verdict on the change: too few samples, or no data in one of the results."""
    change = _change(base, cur) if base is not None and cur is not None else None
    return {
        "metric": metric,
        "baseline": None if base is None else round(base, 4),
        "current": None if cur is None else round(cur, 4),
        "change_pct": change,
        "verdict": verdict,
        "regression": False,
        "noise": how,
    }


def _percentile_rows(
    base: dict[str, Any], cur: dict[str, Any], name: str, label: str, pcts: Any, limit: float
) -> list[dict[str, Any]]:
    hb = _decode(base["histograms"][name], "baseline", name)
    hc = _decode(cur["histograms"][name], "current", name)
    key_of = SERIES_HISTS.get(name)
    if not hb.get_total_count() or not hc.get_total_count():
        key_of = None  # (no data: the seconds are not read)
    wanted = tuple(p for _, p in pcts)
    bb = block_percentiles(base, key_of, wanted, "baseline") if key_of else {}
    bc = block_percentiles(cur, key_of, wanted, "current") if key_of else {}
    return _judge_percentiles(hb, hc, label, pcts, limit, bb, bc)


def _judge_percentiles(
    hb: HdrHistogram,
    hc: HdrHistogram,
    label: str,
    pcts: Any,
    limit: float,
    bb: dict[float, list[float]],
    bc: dict[float, list[float]],
) -> list[dict[str, Any]]:
    """Rows for the percentiles of two histograms: across time on the block values `bb` and `bc` when each
    has enough, else on the whole runs' order-statistic intervals."""
    nb, nc = hb.get_total_count(), hc.get_total_count()
    if not nb or not nc:  # nothing answered in one of them: no data, never a regression
        return [_unjudged(f"{label} {key} ms", None, None, "no data", "") for key, _ in pcts]
    rows = []
    for key, pct in pcts:
        metric = f"{label} {key} ms"
        vb, lb, ub = percentile_interval(hb, pct)
        vc, lc, uc = percentile_interval(hc, pct)
        need = math.ceil(round(TAIL_SAMPLES / (1 - pct / 100), 6))
        if min(nb, nc) < need:
            how = f"needs {need:,} answers in each run (has {nb:,} and {nc:,})"
            rows.append(_unjudged(metric, vb, vc, "too few samples", how))
            continue
        xb, xc = bb.get(pct, []), bc.get(pct, [])
        if len(xb) >= MIN_BLOCKS and len(xc) >= MIN_BLOCKS:
            shift = welch_shift(xb, xc)
            differs = (shift > 1 and vc > vb) or (shift < -1 and vc < vb)
            how = f"across time: {len(xb)} and {len(xc)} blocks of seconds"
            change = _change(vb, vc)
            if not differs and change is not None and change > limit and min(len(xb), len(xc)) < FEW_BLOCKS:
                # Worse beyond the floor, but too few seconds for the test to tell it from noise: not "same".
                how += f": run longer (-d 10s or more) to tell a {change:+.1f}% change from noise"
                rows.append(_unjudged(metric, vb, vc, "inconclusive", how))
                continue
        else:
            differs = ub < lc or uc < lb
            how = "within each run only (too few seconds to judge across time)"
        rows.append(_row(metric, vb, vc, True, differs, limit, how))
    return rows


def _per_second(doc: dict[str, Any], path: tuple[str, ...]) -> list[float]:
    out = []
    for e in doc.get("timeseries", ()):
        if e.get("partial"):
            continue
        value: Any = e
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out.append(float(value))
    return out


def _rate_row(
    metric: str, b: float, c: float, xb: list[float], xc: list[float], noise_pct: float, limit: float
) -> dict[str, Any]:
    change = _change(b, c)
    differs = change is None or abs(change) > noise_pct
    how = f"beyond {noise_pct:g}%"
    if differs and change is not None and len(xb) >= MIN_BLOCKS and len(xc) >= MIN_BLOCKS:
        shift = welch_shift(xb, xc)
        differs = (shift > 1 and c > b) or (shift < -1 and c < b)
        how += f", across time: {len(xb)} and {len(xc)} seconds"
    return _row(metric, b, c, False, differs, limit, how)


def compare(
    base: dict[str, Any], cur: dict[str, Any], max_regression_pct: float = 10.0, noise_pct: float = 5.0
) -> dict[str, Any]:
    """Rows for every metric both results have, and whether any is a regression."""
    rows = []
    for hist_name, label, pcts in (("latency", "latency", PERCENTILES), *((n, n, p) for n, p in LLM_HISTS)):
        b_hists, c_hists = base.get("histograms", {}), cur.get("histograms", {})
        if hist_name not in b_hists or hist_name not in c_hists:  # (present but empty: an error below)
            continue
        rows += _percentile_rows(base, cur, hist_name, label, pcts, max_regression_pct)
    sb, sc = base["summary"], cur["summary"]
    rows.append(
        _rate_row(
            "req/s",
            sb.get("rps", 0.0),
            sc.get("rps", 0.0),
            _per_second(base, ("rps",)),
            _per_second(cur, ("rps",)),
            noise_pct,
            max_regression_pct,
        )
    )
    if "llm" in sb and "llm" in sc:
        rows.append(
            _rate_row(
                "output tokens/s",
                sb["llm"]["output_tokens_per_s"],
                sc["llm"]["output_tokens_per_s"],
                _per_second(base, ("output_tokens_per_s",)),
                _per_second(cur, ("output_tokens_per_s",)),
                noise_pct,
                max_regression_pct,
            )
        )
    nb, nc = sb.get("requests", 0), sc.get("requests", 0)
    if nb and nc:
        rows.append(
            _share_row("error rate %", sb.get("errors", 0), nb, sc.get("errors", 0), nc, max_regression_pct)
        )
    kb, kc = sb.get("by_key") or {}, sc.get("by_key") or {}
    for name in sorted(kb.keys() & kc.keys()):
        rows += _key_rows(base, cur, name, max_regression_pct)
    out: dict[str, Any] = {
        "max_regression_pct": max_regression_pct,
        "noise_pct": noise_pct,
        "rows": rows,
        "regression": any(r["regression"] for r in rows),
        "warnings": mismatches([base, cur], NAMES) + busier([base, cur], NAMES),
    }
    if kb or kc:  # keys in one result only are listed, never compared
        out["keys_only"] = {
            "baseline": sorted(kb.keys() - kc.keys()),
            "current": sorted(kc.keys() - kb.keys()),
        }
    return out


def _share_row(metric: str, xb: int, nb: int, xc: int, nc: int, limit: float) -> dict[str, Any]:
    """A share of requests (errors, 429s) in % of each run, judged by a two-proportion z-test."""
    eb, ec = xb / nb, xc / nc
    pooled = (xb + xc) / (nb + nc)
    se = math.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / nc))
    differs = se > 0 and abs(ec - eb) / se > 1.96
    # A rate that starts at 0 has no relative change: any significant rise is a regression.
    return _row(metric, 100 * eb, 100 * ec, True, differs, limit, "two-proportion z")


def _key_rows(base: dict[str, Any], cur: dict[str, Any], name: str, limit: float) -> list[dict[str, Any]]:
    """One API key's rows (summary.by_key, histograms from the result's `parts`): latency p99, TTFT p99 in an
    LLM run, error rate and 429 share. A key keeps no per-second histograms, so its p99 can only be judged
    within each run, which is too narrow to fail a compare on: its verdict is shown, never a regression. Its
    shares are judged as the run's (a two-proportion z-test) and do fail it."""
    b, c = base["summary"]["by_key"][name], cur["summary"]["by_key"][name]
    label, rows = f"key {name}", []
    for hist, field in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
        if field not in b or field not in c:
            continue
        hb, hc = _key_hist(base, name, hist, "baseline"), _key_hist(cur, name, hist, "current")
        if hb is None or hc is None:
            how = "a result keeps no histograms per key (its parts)"
            pb, pc = (b[field] or {}).get("p99"), (c[field] or {}).get("p99")
            rows.append(_unjudged(f"{label} {hist} p99 ms", pb, pc, "not judged", how))
        else:
            for r in _judge_percentiles(hb, hc, f"{label} {hist}", (("p99", 99.0),), limit, {}, {}):
                judged = r["verdict"] in ("same", "better", "worse")  # (no blocks: within each run only)
                rows.append({**r, "regression": False, "noise": KEY_NOISE} if judged else r)
    nb, nc = b.get("requests", 0), c.get("requests", 0)
    if nb and nc:
        rows.append(
            _share_row(f"{label} error rate %", b.get("errors", 0), nb, c.get("errors", 0), nc, limit)
        )
        rb, rc = b.get("rate_limited", 0), c.get("rate_limited", 0)
        rows.append(_share_row(f"{label} 429 share %", rb, nb, rc, nc, limit))
    return [{**r, "key": name} for r in rows]


def _key_hist(doc: dict[str, Any], name: str, hist: str, which: str) -> HdrHistogram | None:
    """A key's histogram from the result's `parts` (empty when the key has none of that kind); None when
    the result keeps no part for the key."""
    part = (doc.get("parts") or {}).get(f"key:{name}")
    if not isinstance(part, dict):
        return None
    blob = (part.get("histograms") or {}).get(hist)
    if blob is None:
        return new_histogram()
    try:
        return decode(blob)
    except BadHistogram as e:
        raise PlanError(f"the {which} result's parts.key:{name}.histograms.{hist}: {e}") from None


def _host_cpu(doc: dict[str, Any]) -> float | None:
    values = _per_second(doc, ("host_cpu",))
    return statistics.fmean(values) if values else None


def busier(docs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """A warning when the box was much busier during one run than the other (its mean host CPU): then a
    difference can be the box's, not the target's."""
    cpu = [_host_cpu(d) for d in docs]
    if any(c is None for c in cpu) or abs(cpu[0] - cpu[1]) < BUSIER_PCT:  # type: ignore[operator]
        return []
    said = ", ".join(f"{n}: {c:.0f}%" for n, c in zip(names, cpu, strict=True))
    return [
        f"the box was much busier during one run (host CPU {said}): a difference may be the box's, not the "
        "target's; compare runs made on an equally quiet box"
    ]


def mismatches(docs: list[dict[str, Any]], names: list[str]) -> list[str]:
    """What differs between results that should describe the same test (target, method, model, kind)."""
    out = []
    for key, what in (("url", "target"), ("method", "method"), ("model", "load model"), ("llm", "LLM API")):
        if key == "llm":
            values = [(d.get("meta", {}).get("llm") or {}).get("api") for d in docs]
        else:
            values = [d.get("meta", {}).get(key) for d in docs]
        if len(set(map(str, values))) > 1:
            pairs = ", ".join(
                f"{n}: {'none' if v is None else v}" for n, v in zip(names, values, strict=True)
            )
            out.append(f"the inputs differ in {what} ({pairs}): are they the same test?")
    return out
