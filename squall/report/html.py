"""One self-contained HTML report from a result document (a run, a hunt, a soak) or a `--param` matrix.

Python decides what the page shows: every table as rows of text (the figures the console prints, status
codes and error kinds, the run's configuration, hunt levels, matrix cells), the verdict cards, and the chart
data as columns (a second with no completions is null, drawn as a gap). The page (page.html) only draws it.
plotly.js is the basic bundle (scatter, bar) shipped beside this module and inlined once, so the file opens
offline and nothing is fetched.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from squall.hist import BadHistogram, decode, values_at
from squall.report.invalid import why_not_valid
from squall.report.sections import (
    Cell,
    Table,
    by_turn_chart,
    config_table,
    figure_tables,
    hunt_card,
    hunt_table,
    soak_card,
    text_ms,
)
from squall.report.target_charts import target_charts
from squall.units import PlanError

# Percentiles for the HDR percentile plot: denser towards the tail (x is 1 / (1 - p) on a log axis).
_TAIL = (0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99, 99.25, 99.5)
PERCENTILES = (*_TAIL, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100)
DISTRIBUTIONS = ("latency", "service", "ttfb", "ttft", "ttfat", "itl", "tpot", "e2e")
CHART_POINTS = 2000  # at most this many points per time chart: a 30,000-second run charts as 2,000
_WORST = ("p50", "p99", "ttft_p50", "ttft_p99")  # a group of seconds charts its worst second's value
_HIST_FIELDS = ("latency_hist", "ttft_hist")
PLOTLY_ASSET = "plotly-basic.min.js"  # plotly.js's basic bundle (MIT), shipped as package data
MATRIX_SCHEMA = "squall/matrix@1"


def plotly_js() -> str:
    """plotly.js (its basic bundle: scatter and bar traces, every axis type), to inline once."""
    return files("squall.report").joinpath(PLOTLY_ASSET).read_text(encoding="utf-8")


def distributions(doc: dict[str, Any]) -> dict[str, list[list[float]]]:
    """{histogram: [[percentile, ms], ...]} from the result's encoded cumulative histograms."""
    out = {}
    hists = doc.get("histograms", {})
    for name in DISTRIBUTIONS:
        if name not in hists:
            continue
        try:
            h = decode(hists[name])
        except BadHistogram as e:
            raise PlanError(f"histograms.{name}: {e}") from None
        if not h.get_total_count():
            continue
        values = values_at(h, PERCENTILES)
        out[name] = [[p, values[p] / 1000.0] for p in PERCENTILES]
    return out


def with_gaps(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries with each percentile of a second that had no answer set to None (a gap on the chart).

    New results already carry null there; older ones carry 0 in a second with no requests, or 0 in a second
    where nothing was ok (an empty histogram's percentile), and a worker's RSS as 0 once it had exited.
    """
    out = []
    for e in series:
        if not isinstance(e, dict):
            continue
        e = dict(e)
        nothing = not e.get("requests")
        for key in _WORST:
            if key in e and (nothing or e[key] is None or (e[key] == 0 and not e.get("ok"))):
                e[key] = None
        if isinstance(e.get("worker_rss_mb"), dict):
            e["worker_rss_mb"] = {w: v or None for w, v in e["worker_rss_mb"].items()}
        out.append(e)
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
    for key in dict.fromkeys(k for e in entries for k in e):
        if key in _HIST_FIELDS:
            continue
        values = [e[key] for e in entries if key in e and e[key] is not None]
        if key == "t" or not values:
            out[key] = entries[-1].get(key)
        elif key in _WORST:
            out[key] = max(values)
        elif all(_number(v) for v in values):
            out[key] = round(sum(values) / len(values), 3)  # (a second with no sample is not a 0)
        elif all(isinstance(v, dict) for v in values):  # per worker, per error kind: each key's mean
            names = dict.fromkeys(k for v in values for k in v)
            out[key] = {k: _mean(v.get(k) for v in values) for k in names}
        else:
            out[key] = values[-1]
    out["partial"] = False
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _mean(values: Any) -> float | None:
    got = [v for v in values if _number(v)]
    return float(f"{sum(got) / len(got):.6g}") if got else None  # (six digits: a histogram's seconds stay)


# The chart columns: name -> how to read it from a per-second entry (None when absent).
_COLUMNS = {
    "t": lambda e: e.get("t"),
    "rps": lambda e: e.get("rps"),
    "ok_rps": lambda e: e.get("ok_rps", _per_s(e, "ok")),
    "target_rps": lambda e: e.get("target_rps"),
    "output_tokens_per_s": lambda e: e.get("output_tokens_per_s"),
    "p50": lambda e: e.get("p50"),
    "p99": lambda e: e.get("p99"),
    "ttft_p50": lambda e: e.get("ttft_p50"),
    "ttft_p99": lambda e: e.get("ttft_p99"),
    "inflight": lambda e: e.get("inflight"),
    "users": lambda e: e.get("users"),
    "target_users": lambda e: e.get("target_users"),
    "collector_cpu": lambda e: e.get("collector_cpu"),
    "collector_rss_mb": lambda e: e.get("collector_rss_mb") or None,
    "host_cpu": lambda e: e.get("host_cpu"),
    "target_cpu": lambda e: (e.get("target") or {}).get("cpu"),
    "target_rss_mb": lambda e: (e.get("target") or {}).get("rss_mb"),
}
_KEYED = {"error_kinds": 0, "worker_cpu": None, "worker_rss_mb": None}  # {name: column}; a missing name: this


def _per_s(e: dict[str, Any], key: str) -> float | None:
    if not _number(e.get(key)):
        return None
    span = e.get("span_s")
    return round(e[key] / span, 3) if _number(span) and span > 0 else e[key]


def columns(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart points as columns ({name: [value per point]}), leaving out the columns with no value;
    error kinds, worker CPU and worker RSS as {name: column}."""
    out: dict[str, Any] = {}
    for name, read in _COLUMNS.items():
        col = [read(e) for e in points]
        if any(v is not None for v in col):
            out[name] = col
    for key, missing in _KEYED.items():
        names = sorted(dict.fromkeys(k for e in points for k in (e.get(key) or {})), key=_natural)
        if names:  # (a document still in memory names its workers by number; read back, by text)
            out[key] = {str(n): [(e.get(key) or {}).get(n, missing) for e in points] for n in names}
    return out


def _natural(name: Any) -> tuple[int, str]:
    return (int(name), "") if str(name).isdigit() else (1 << 30, str(name))


def page_data(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows for one result document (a run, a hunt, a soak), ready to draw."""
    meta, summary = doc.get("meta") or {}, doc.get("summary") or {}
    points, per_point = chart_series(with_gaps(doc.get("timeseries") or []))
    grouped = (
        [f"charts: each point is {per_point} seconds (their mean; p50 and p99 their worst second)"]
        if per_point > 1
        else []
    )
    valid = bool(doc.get("valid", True))
    cards = _cards(summary, meta, doc.get("thresholds") or [])
    verdicts = []
    if doc.get("hunt"):
        verdicts.append(hunt_card(doc["hunt"]))
    if doc.get("soak"):
        verdicts.append(soak_card(doc["soak"]))
    tables: list[Table] = figure_tables(doc)
    if doc.get("hunt") and doc["hunt"].get("steps"):
        tables.insert(0, hunt_table(doc["hunt"]))
    tables.append(config_table(doc))
    return {
        "kind": "run",
        "title": _title(meta),
        "subtitle": _subtitle(meta, valid),
        "valid": valid,
        # A result that is not valid says why first, then its warnings.
        "warnings": [f"not valid: {why}" for why in (why_not_valid(doc) if not valid else [])]
        + _stopped(doc)
        + list(doc.get("warnings") or [])
        + grouped,
        "cards": cards,
        "verdicts": verdicts,
        "tables": tables,
        "series": columns(points),
        "extra": target_charts(points, doc.get("target_metrics")),
        "changes": changes(meta),
        "per_point": per_point,
        "distributions": distributions(doc),
        "error_samples": doc.get("error_samples") or {},
        "hunt": _hunt_chart(doc["hunt"]) if doc.get("hunt") and doc["hunt"].get("steps") else None,
        "soak": _soak_chart(doc["soak"]) if doc.get("soak") and doc["soak"].get("series") else None,
        "by_turn": by_turn_chart(summary.get("llm")),
    }


def changes(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The changes of users or rate made while the run went on (meta.changes), as marks on the time
    charts: {t, label}."""
    out = []
    for c in meta.get("changes") or []:
        if not isinstance(c, dict) or not _number(c.get("t")):
            continue
        if _number(c.get("users")):
            label = f"{c['users']:g} users"
        elif _number(c.get("rate")):
            label = f"{c['rate']:g} req/s"
        else:
            continue
        by = f" ({c['by']})" if c.get("by") and c.get("by") != "dashboard" else ""
        out.append({"t": c["t"], "label": label + by})
    return out


_STOPPED = {"interrupted": "Ctrl-C", "terminated": "SIGTERM", "supervisor lost": "the main process died"}


def _stopped(doc: dict[str, Any]) -> list[str]:
    """A run cut short says so first, as the console does."""
    meta, s = doc.get("meta") or {}, doc.get("summary") or {}
    why = _STOPPED.get(str(meta.get("stop_reason") or ""))
    if why is None:
        return []
    how = "from the dashboard" if meta.get("stopped_by") == "dashboard" else f"by {why}"
    series = doc.get("timeseries") or [{}]
    ran = max(s.get("duration_s") or 0.0, series[-1].get("t") or 0.0)
    asked = f" of the {meta['duration_s']:g} s asked for" if _number(meta.get("duration_s")) else ""
    cut = f"; {s['interrupted']:,} in flight were not counted" if s.get("interrupted") else ""
    return [f"stopped early {how}, after {ran:.1f} s{asked}{cut}"]


def _title(meta: dict[str, Any]) -> str:
    words = str(meta.get("command") or "squall").split()
    command = words[1] if len(words) > 1 and not words[1].startswith("-") else ""
    what = meta.get("scenario") or meta.get("url") or ""
    return " — ".join(p for p in (f"squall {command}".strip(), what) if p)


def _subtitle(meta: dict[str, Any], valid: bool) -> str:
    slots = "users" if meta.get("scenario") or meta.get("py") else "connections"
    parts = [
        meta.get("started_at"),
        f"{meta['model']} model" if meta.get("model") else None,
        _n(meta.get("workers"), "worker"),
        _n(meta.get("connections"), slots[:-1]),
        meta.get("transport"),
        f"{meta['rate']:g} req/s {meta.get('arrival') or ''}".strip() if _number(meta.get("rate")) else None,
        "valid" if valid else "NOT VALID",
    ]
    return " · ".join(str(p) for p in parts if p)


def _n(count: Any, noun: str) -> str | None:
    """'1 worker', '2 workers'; None for no count."""
    return None if not _number(count) else f"{count:,} {noun}" + ("" if count == 1 else "s")


def _cards(summary: dict[str, Any], meta: dict[str, Any], thresholds: list[dict[str, Any]]) -> list[Cell]:
    """The headline figures: [label, text, class]."""
    n = summary.get("requests")
    lat = summary.get("latency_ms") or {}
    py = bool(meta.get("py"))
    cards: list[Cell] = [
        ["iterations" if py else "requests", f"{n:,}" if _number(n) else "—", ""],
        ["ok", f"{100 * summary.get('ok', 0) / n:.2f} %" if n else "—", ""],
        [
            "iterations/s" if py else "req/s",
            f"{summary['rps']:,.1f}" if _number(summary.get("rps")) else "—",
            "",
        ],
        ["p50", text_ms(lat.get("p50")), ""],
        ["p99", text_ms(lat.get("p99")), ""],
        ["errors", f"{summary.get('errors', 0):,}", "bad" if summary.get("errors") else ""],
    ]
    llm = summary.get("llm")
    if isinstance(llm, dict):
        tps = llm.get("output_tokens_per_s")
        cards.append(["tokens/s", f"{tps:,.1f}" if _number(tps) else "—", ""])
        cards.append(["TTFT p50", text_ms((llm.get("ttft_ms") or {}).get("p50")), ""])
    if thresholds:
        failed = sum(1 for t in thresholds if not t.get("ok"))
        cards.append(["thresholds", f"{failed} failed" if failed else "all pass", "bad" if failed else "ok"])
    return cards


def _hunt_chart(hunt: dict[str, Any]) -> dict[str, Any]:
    """The hunt's levels in level order (the search bisects back down), and its marks."""
    steps = sorted(hunt["steps"], key=lambda s: s["level"])
    marks = [
        [name, hunt.get(key)]
        for name, key in (("best", "best"), ("first failing", "first_failing"), ("knee", "knee"))
        if hunt.get(key) is not None
    ]
    return {
        "unit": "users" if hunt.get("mode") == "concurrency" else "req/s",
        "level": [s["level"] for s in steps],
        "rps": [s.get("rps") for s in steps],
        "p99": [s.get("p99_ms") for s in steps],
        "failed": [not s.get("ok") for s in steps],
        "marks": marks,
    }


def _soak_chart(soak: dict[str, Any]) -> dict[str, Any]:
    """The sampled RSS and, when there is a verdict, the least-squares trend through the samples' mean."""
    s = [p for p in soak["series"] if _number(p.get("rss_mb")) and _number(p.get("t"))]
    out: dict[str, Any] = {
        "who": "workload (squall workers)" if soak.get("subject") == "workers" else "target",
        "t": [p["t"] for p in s],
        "rss": [p["rss_mb"] for p in s],
        "fds": [p.get("fds") for p in s],
        "trend": None,
    }
    slope = soak.get("rss_slope_mb_per_h")
    if len(s) >= 3 and _number(slope):
        mt, my = sum(p["t"] for p in s) / len(s), sum(p["rss_mb"] for p in s) / len(s)
        ends = [s[0]["t"], s[-1]["t"]]
        out["trend"] = {
            "t": ends,
            "rss": [round(my + slope / 3600 * (t - mt), 3) for t in ends],
            "slope": slope,
        }
    return out


def render(doc: dict[str, Any]) -> str:
    """The report page for a result document or a --param matrix document."""
    if doc.get("schema") == MATRIX_SCHEMA:
        from squall.report.matrix_page import matrix_data

        data = matrix_data(doc)
    else:
        data = page_data(doc)
    return _page(data)


def live_page() -> str:
    """The dashboard's page: the report's page, drawn from the collector's API each second."""
    live = files("squall.report").joinpath("dashboard.html").read_text(encoding="utf-8")
    return _page({"title": "squall — live", "pending": True}, live)


_SLOTS = re.compile(r"__(TITLE|PLOTLY|DATA|LIVE)__")


def _page(data: dict[str, Any], live: str = "") -> str:
    """page.html with its slots filled, in one pass (what goes in is never read for slots again)."""
    # Every "<" escaped: no "</script>" nor "<!--" in the data can end or bend the script it sits in.
    payload = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode().replace("<", "\\u003c")
    page = files("squall.report").joinpath("page.html").read_text(encoding="utf-8")
    slots = {
        "TITLE": html.escape(str(data["title"])[:200]),
        "PLOTLY": plotly_js().replace("</script", "<\\/script"),
        "DATA": payload,
        "LIVE": live,
    }
    return _SLOTS.sub(lambda m: slots[m.group(1)], page)


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
