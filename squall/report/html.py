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

from squall.hist import decode
from squall.report.invalid import why_not_valid

# Percentiles for the HDR percentile plot: denser towards the tail (x is 1 / (1 - p) on a log axis).
_TAIL = (0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99, 99.25, 99.5)
PERCENTILES = (*_TAIL, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100)
DISTRIBUTIONS = ("latency", "service", "ttfb", "ttft", "itl", "tpot", "e2e")


def plotly_js() -> str:
    """plotly.js from the installed plotly package (a dependency), to inline."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def distributions(doc: dict[str, Any]) -> dict[str, list[list[float]]]:
    """{histogram: [[percentile, ms], ...]} from the result's encoded cumulative histograms."""
    out = {}
    for name in DISTRIBUTIONS:
        blob = doc.get("histograms", {}).get(name)
        if not blob:
            continue
        h = decode(blob)
        if not h.get_total_count():
            continue
        values = h.get_percentile_to_value_dict(list(PERCENTILES))
        out[name] = [[p, values[p] / 1000.0] for p in PERCENTILES]
    return out


def render(doc: dict[str, Any]) -> str:
    """The report page for one result document."""
    data = {
        "meta": doc.get("meta", {}),
        "summary": doc.get("summary", {}),
        "timeseries": [
            {k: v for k, v in e.items() if k not in ("latency_hist", "ttft_hist")}
            for e in doc.get("timeseries", [])
        ],
        "thresholds": doc.get("thresholds", []),
        # A result that is not valid says why first, then its warnings.
        "warnings": [
            f"not valid: {why}" for why in (why_not_valid(doc) if not doc.get("valid", True) else [])
        ]
        + doc.get("warnings", []),
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
