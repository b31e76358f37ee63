"""One self-contained HTML report from a result document: summary cards, linked time charts, distributions.

The chart library is plotly.js, taken from the installed `plotly` package and inlined, so the file works
offline and nothing is fetched from a CDN. The data goes in as one JSON object; the page draws it.
"""

from __future__ import annotations

import html
import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from squall.hist import BadHistogram, decode, values_at
from squall.report.invalid import why_not_valid
from squall.units import PlanError

# Percentiles for the HDR percentile plot: denser towards the tail (x is 1 / (1 - p) on a log axis).
_TAIL = (0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99, 99.25, 99.5)
PERCENTILES = (*_TAIL, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100)
DISTRIBUTIONS = ("latency", "service", "ttfb", "ttft", "itl", "tpot", "e2e")
CHART_POINTS = 2000  # at most this many points per time chart: a 30,000-second run charts as 2,000
_WORST = ("p50", "p99", "ttft_p50", "ttft_p99")  # a group of seconds charts its worst second's value
_HIST_FIELDS = ("latency_hist", "ttft_hist")


def plotly_js() -> str:
    """plotly.js from the installed plotly package (a dependency), to inline."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def distributions(doc: dict[str, Any]) -> dict[str, list[list[float]]]:
    """{histogram: [[percentile, ms], ...]} from the result's encoded cumulative histograms."""
    out = {}
    hists = doc.get("histograms", {})
    for name in DISTRIBUTIONS:
        if name not in hists:
            continue
        blob = hists[name]
        try:
            h = decode(blob)
        except BadHistogram as e:
            raise PlanError(f"histograms.{name}: {e}") from None
        if not h.get_total_count():
            continue
        values = values_at(h, PERCENTILES)
        out[name] = [[p, values[p] / 1000.0] for p in PERCENTILES]
    return out


def chart_series(series: list[dict[str, Any]], limit: int = CHART_POINTS) -> tuple[list[dict[str, Any]], int]:
    """The per-second entries to chart, and how many seconds each point stands for.

    Up to `limit` full seconds chart as they are. A longer run charts groups of consecutive seconds: counts
    and rates as the group's mean per second, p50/p99 as its worst second; one pass, linear in the entries.
    """
    full = [e for e in series if isinstance(e, dict) and not e.get("partial")]
    if len(full) <= limit:
        return [{k: v for k, v in e.items() if k not in _HIST_FIELDS} for e in full], 1
    size = -(-len(full) // limit)
    return [_group(full[i : i + size]) for i in range(0, len(full), size)], size


def _group(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One chart point for consecutive seconds."""
    out: dict[str, Any] = {}
    n = len(entries)
    for key in dict.fromkeys(k for e in entries for k in e):
        if key in _HIST_FIELDS:
            continue
        values = [e[key] for e in entries if key in e and e[key] is not None]
        if key == "t" or not values:
            out[key] = entries[-1].get(key)
        elif key in _WORST:
            out[key] = max(values)
        elif all(_number(v) for v in values):
            out[key] = round(sum(values) / n, 3)
        elif all(isinstance(v, dict) for v in values):  # per worker, per error kind: each key's mean
            names = dict.fromkeys(k for v in values for k in v)
            out[key] = {k: round(sum(_numbers(v.get(k) for v in values)) / n, 3) for k in names}
        else:
            out[key] = values[-1]
    out["partial"] = False
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(values: Any) -> list[float]:
    return [v for v in values if _number(v)]


def render(doc: dict[str, Any]) -> str:
    """The report page for one result document."""
    series, per_point = chart_series(doc.get("timeseries", []))
    grouped = (
        [f"charts: each point is {per_point} seconds (their mean; p50 and p99 their worst second)"]
        if per_point > 1
        else []
    )
    data = {
        "meta": doc.get("meta", {}),
        "summary": doc.get("summary", {}),
        "timeseries": series,
        "thresholds": doc.get("thresholds", []),
        # A result that is not valid says why first, then its warnings.
        "warnings": [
            f"not valid: {why}" for why in (why_not_valid(doc) if not doc.get("valid", True) else [])
        ]
        + doc.get("warnings", [])
        + grouped,
        "valid": doc.get("valid", True),
        "distributions": distributions(doc),
        "error_samples": doc.get("error_samples"),
        "tracemalloc": doc.get("tracemalloc"),
        "hunt": doc.get("hunt"),
        "soak": doc.get("soak"),
    }
    payload = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode().replace("</", "<\\/")
    m = doc.get("meta", {})
    title = f"squall {m.get('command', '')}".strip()
    page = files("squall.report").joinpath("page.html").read_text(encoding="utf-8")
    return (
        page.replace("__TITLE__", html.escape(title[:200]))
        .replace("__PLOTLY__", plotly_js().replace("</script", "<\\/script"))
        .replace("__DATA__", payload)
    )


def write_html(doc: dict[str, Any], path: str | Path) -> None:
    """Write the report atomically (a temporary file in the same directory, then rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".squall-report-", suffix=".html", dir=target.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
