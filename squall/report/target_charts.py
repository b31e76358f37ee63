"""The report's charts of the target's own metrics (--scrape), on the same chart points as the others.

A point's `target_metrics` names each series as the scraper does: `[HOST:PORT ]metric{labels}[ p50|p99]`
(the prefix when a second URL gave the same name; p50 and p99 for a histogram); its kind is the scraper's
(the result's `target_metrics.series[NAME].kind`), guessed from the name only for a series not listed
there (a hunt's earlier levels, a document without it). One chart per metric, or
per few gauges (or counters) that differ only in their last word (`vllm:num_requests_running`, `_waiting`);
a histogram named like a TTFT is drawn beside squall's own TTFT, in ms.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

MAX_CHARTS = 8
MAX_TRACES = 10
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _parse(name: str) -> tuple[str, str, dict[str, str], str]:
    """(host prefix, metric, labels, stat) of a series name; stat is 'p50', 'p99' or ''."""
    stat = ""
    if name.endswith((" p50", " p99")):
        name, stat = name[:-4], name[-3:]
    head, brace, rest = name.partition("{")
    host, _, metric = head.rpartition(" ")
    return host, metric, dict(_LABEL.findall(rest)) if brace else {}, stat


def _kind(name: str, metric: str, stat: str, kinds: dict[str, str]) -> str:
    """The series' kind as the scraper said (`kinds`), else as its name suggests."""
    return kinds.get(name) or ("histogram" if stat else "counter" if metric.endswith("_total") else "gauge")


def series_kinds(target_metrics: Any) -> dict[str, str]:
    """{series name: kind} from a result's `target_metrics` ({} for none or a malformed one)."""
    series = target_metrics.get("series") if isinstance(target_metrics, dict) else None
    if not isinstance(series, dict):
        return {}
    return {n: s["kind"] for n, s in series.items() if isinstance(s, dict) and isinstance(s.get("kind"), str)}


def _unit(metric: str, kind: str) -> str:
    if kind == "counter":
        return "per second"
    if "seconds" in metric:
        return "s"
    return "bytes" if "bytes" in metric else "value"


def _is_ttft(metric: str) -> bool:
    return fnmatch.fnmatchcase(metric, "*time_to_first_token*")


def _to_ms(metric: str) -> float:
    """The factor from a TTFT histogram's unit to ms: its name says ms, or it is in seconds (Prometheus')."""
    return 1.0 if re.search(r"(_ms|milliseconds)(_|$)", metric) else 1000.0


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def target_charts(points: list[dict[str, Any]], target_metrics: Any = None) -> list[dict[str, Any]]:
    """Charts of the scraped series in `points` (the report's chart points, each a series entry or the mean
    of several), their kinds from the result's `target_metrics`: [{title, ytitle, traces: [{name, y: [value
    per point], dash?}]}]; a server's own TTFT histogram is drawn beside squall's TTFT."""
    names = list(dict.fromkeys(n for p in points for n in (p.get("target_metrics") or {})))
    if not names:
        return []
    kinds = series_kinds(target_metrics)
    groups: dict[tuple[str, str, str], list[str]] = {}  # (host, kind, key) -> series, in order of appearance
    ttft: list[str] = []
    for name in names:
        host, metric, _, stat = _parse(name)
        kind = _kind(name, metric, stat, kinds)
        if kind == "histogram" and _is_ttft(metric):
            ttft.append(name)
            continue
        # Gauges (counters) that differ in their last word share a chart; a histogram has its own.
        key = metric if kind == "histogram" else metric.removesuffix("_total").rpartition("_")[0] or metric
        groups.setdefault((host, kind, key), []).append(name)
    charts = [_ttft_chart(points, ttft)] if ttft else []
    room = MAX_CHARTS - len(charts)
    for (host, kind, _), series in list(groups.items())[:room]:
        charts.append(_chart(points, host, kind, series))
    if len(groups) > room:
        charts[-1]["title"] += f" ({len(groups) - room} more not charted: see target_metrics in the result)"
    return charts


def _column(points: list[dict[str, Any]], name: str, scale: float = 1.0) -> list[float | None]:
    out = []
    for p in points:
        v = (p.get("target_metrics") or {}).get(name)
        out.append(round(v * scale, 6) if isinstance(v, (int, float)) else None)
    return out


def _chart(points: list[dict[str, Any]], host: str, kind: str, series: list[str]) -> dict[str, Any]:
    parsed = [_parse(n) for n in series]
    metrics = list(dict.fromkeys(m for _, m, _, _ in parsed))
    common = {k: v for k, v in parsed[0][2].items() if all(lb.get(k) == v for _, _, lb, _ in parsed)}
    if len(metrics) == 1:
        what = metrics[0] + (" p50 and p99" if kind == "histogram" else "")
        stem = metrics[0]
    else:  # gauges (or counters) that differ in their last word: NAME_* and each trace its word
        stem = metrics[0].removesuffix("_total").rpartition("_")[0] + "_"
        what = stem + "*"
    title = " ".join(
        p for p in (host, what, _labels(common), "(per second)" if kind == "counter" else "") if p
    )
    traces = []
    for name, (_, metric, labels, stat) in zip(series, parsed, strict=True):
        word = metric.removeprefix(stem) if len(metrics) > 1 else ""
        own = _labels({k: v for k, v in labels.items() if k not in common})
        trace: dict[str, Any] = {"name": " ".join(p for p in (word, own, stat) if p) or metric}
        trace["y"] = _column(points, name)
        if stat == "p99":
            trace["dash"] = "dash"
        traces.append(trace)
    if len(traces) > MAX_TRACES:
        title += f" (the first {MAX_TRACES} of {len(traces)} series)"
    return {"title": title, "ytitle": _unit(metrics[0], kind), "traces": traces[:MAX_TRACES]}


def _ttft_chart(points: list[dict[str, Any]], series: list[str]) -> dict[str, Any]:
    """squall's TTFT p50/p99 (the points' ttft_p50, ttft_p99, in ms) beside the server's histogram's."""
    traces: list[dict[str, Any]] = [
        {"name": "squall TTFT p50", "y": [p.get("ttft_p50") for p in points]},
        {"name": "squall TTFT p99", "y": [p.get("ttft_p99") for p in points], "dash": "dash"},
    ]
    parsed = [_parse(n) for n in series]
    several = len({(h, m, _labels(lb)) for h, m, lb, _ in parsed}) > 1
    for name, (host, metric, labels, stat) in list(zip(series, parsed, strict=True))[: MAX_TRACES - 2]:
        which = " ".join(p for p in (host, metric, _labels(labels)) if p) if several else ""
        trace: dict[str, Any] = {"name": " ".join(p for p in ("server TTFT", stat, which) if p)}
        trace["y"] = _column(points, name, _to_ms(metric))
        trace["dash"] = "dash" if stat == "p99" else "dot"
        traces.append(trace)
    return {"title": "TTFT: squall vs the server", "ytitle": "ms", "traces": traces}
