"""`squall merge`: results from several boxes (or shards) combined exactly.

Counters add, histograms add bucket by bucket (so every merged percentile is the union's), per-second entries
align on wall-clock seconds, and thresholds are judged again on the merged summary.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from hdrh.histogram import HdrHistogram

from squall.collector.aggregate import Aggregate, add_part_doc, part_key
from squall.collector.recovery import meta_shape, spike_recovery
from squall.collector.result import Outline, Verdict, build_result, split_counters
from squall.hist import BadHistogram, Merger, clear, encode, new_histogram, percentiles_ms
from squall.plan.thresholds import parse_threshold
from squall.result.compare import mismatches
from squall.result.document import SCHEMA
from squall.units import PlanError

# Older results carry no raw counters: these summary keys hold them.
_FROM_SUMMARY = {
    "requests": "requests",
    "ok": "ok",
    "errors": "errors",
    "bytes_in": "bytes_in",
    "bytes_out": "bytes_out",
    "warmup": "warmup_requests",
    "dropped": "dropped",
    "unsent": "unsent",
    "interrupted": "interrupted",
    "overflow": "overflow",
}
_SUMMED_SERIES = ("requests", "ok", "errors", "inflight", "users", "target_users", "output_tokens")
_SUMMED_RATES = ("target_rps",)


def _start(doc: dict[str, Any]) -> float:
    """Wall-clock epoch seconds at which the measured period began."""
    m = doc["meta"]
    epoch = m.get("started_at_epoch")
    if epoch is None:
        epoch = datetime.strptime(m["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return float(epoch) + float(m.get("warmup_s") or 0.0)


def check(doc: Any, name: str) -> dict[str, Any]:
    """The document, or PlanError when it is not a squall result this version can merge."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise PlanError(f"{name} is not a squall result ({SCHEMA})")
    for key in ("meta", "summary", "histograms", "timeseries"):
        if key not in doc:
            raise PlanError(f"{name} has no {key!r}: not a complete squall result")
    return doc


def merge(docs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One result document from several; exact for counters and histograms."""
    if len(docs) < 2:
        raise PlanError("merge needs at least two results")
    return combine([check(d, n) for d, n in zip(docs, names, strict=True)], names)


def combine(docs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The documents (one or more, already checked) as one, assembled by the collector's build_result."""
    agg = Aggregate(seconds=False)
    for doc, doc_name in zip(docs, names, strict=True):
        counters = doc.get("counters") or {k: doc["summary"].get(v, 0) for k, v in _FROM_SUMMARY.items()}
        split_counters(counters, agg)
        for code, n in doc["summary"].get("status_codes", {}).items():
            agg.status_codes[int(code)] = agg.status_codes.get(int(code), 0) + n
        for kind, n in doc["summary"].get("error_kinds", {}).items():
            agg.error_kinds[kind] = agg.error_kinds.get(kind, 0) + n
        for name, blob in doc["histograms"].items():
            total = agg.hists.get(name)
            if total is None:
                total = agg.hists[name] = new_histogram()
            _add(agg.merger, blob, total, f"{doc_name}: histograms.{name}")
    starts = [_start(d) for d in docs]
    ends = [s + float(d["summary"]["duration_s"]) for s, d in zip(starts, docs, strict=True)]
    t0 = min(starts)
    # (one document: its own duration, not the same number through a sum and a difference of floats)
    duration = max(ends) - t0 if len(docs) > 1 else float(docs[0]["summary"]["duration_s"])
    parts, notes = _parts(docs, names)
    notes = mismatches(docs, names) + notes if len(docs) > 1 else notes
    outline = Outline(
        open_model=all(d["meta"].get("model") == "open" for d in docs),
        llm=any("llm" in d["summary"] for d in docs),
        steps=tuple(dict.fromkeys(n for d in docs for n in d["summary"].get("steps", {}))),
        journeys=tuple(
            {j: v["weight"] for d in docs for j, v in d["summary"].get("scenarios", {}).items()}.items()
        ),
    )
    first = docs[0]
    meta = dict(first["meta"])
    meta.update(
        command="squall merge " + " ".join(names),
        started_at=min((d["meta"]["started_at"] for d in docs), key=lambda s: _start_of(s)),
        started_at_epoch=round(t0 - float(meta.get("warmup_s") or 0.0), 6),
        workers=sum(d["meta"].get("workers", 0) for d in docs),
        connections=sum(d["meta"].get("connections", 0) for d in docs),
        rate=sum(d["meta"]["rate"] for d in docs) if all(d["meta"].get("rate") for d in docs) else None,
        duration_s=round(duration, 6),
        merged_from=[
            {
                "file": n,
                "host": d["meta"].get("host"),
                "shard": d["meta"].get("shard"),
                "started_at": d["meta"]["started_at"],
            }
            for n, d in zip(names, docs, strict=True)
        ],
        shard=None,
    )
    series, approximate = _series(docs, names, starts, t0)
    if approximate:
        notes.append(
            f"{approximate} merged seconds have p50/p99 taken as the highest input's: an input kept no "
            "per-second histograms (a soak run, or a result of an older squall)"
        )
    verdict = Verdict(
        valid=all(d.get("valid", False) for d in docs),
        generator_limited=any(d.get("generator_limited") for d in docs),
        workers_lost={
            f"{i}:{w}": why for i, d in enumerate(docs) for w, why in d.get("workers_lost", {}).items()
        },
        warnings=[f"{n}: {w}" for n, d in zip(names, docs, strict=True) for w in d.get("warnings", [])]
        + notes,
    )
    exprs = list(dict.fromkeys(t["expr"] for d in docs for t in d.get("thresholds", [])))
    if parts is None:  # without the step and phase histograms, their thresholds cannot be judged again
        exprs = [e for e in exprs if not e.startswith(("step.", "phase."))]
    thresholds = tuple(parse_threshold(e) for e in exprs)
    # `parts` None: left out when an input had none, so a merge of this merge is not misled.
    target = _targets([(end, d["summary"].get("target")) for end, d in zip(ends, docs, strict=True)])
    doc = build_result(
        meta, agg, parts, duration, outline, series, first.get("host", {}), verdict, thresholds, target
    )
    # The spike's recovery again, from the merged seconds and the load shape as the first input ran it.
    recovery = spike_recovery(doc["timeseries"], meta_shape(meta), float(meta.get("warmup_s") or 0.0))
    if recovery is not None:
        doc["summary"]["recovery"] = recovery
    return doc


def _targets(inputs: list[tuple[float, dict[str, Any] | None]]) -> dict[str, Any] | None:
    """The inputs' `summary.target` as one: the mean CPU over all their samples, the highest CPU and RSS,
    the last RSS of the input that ended last; None when no input sampled a target."""
    had = sorted(((end, t) for end, t in inputs if t), key=lambda et: et[0])
    if not had:
        return None
    cpu = [(t["samples"], t["cpu_mean_pct"]) for _, t in had if t.get("cpu_mean_pct") is not None]
    weight = sum(n for n, _ in cpu)
    out: dict[str, Any] = {
        "samples": sum(t.get("samples", 0) for _, t in had),
        "cpu_mean_pct": round(sum(n * v for n, v in cpu) / weight, 1) if weight else None,
    }
    for key in ("cpu_max_pct", "rss_max_mb"):
        values = [t[key] for _, t in had if t.get(key) is not None]
        out[key] = max(values) if values else None
    last = [t["rss_last_mb"] for _, t in had if t.get("rss_last_mb") is not None]
    out["rss_last_mb"] = last[-1] if last else None
    return {k: out[k] for k in ("samples", "cpu_mean_pct", "cpu_max_pct", "rss_max_mb", "rss_last_mb")}


def _parts(
    docs: list[dict[str, Any]], names: list[str]
) -> tuple[dict[tuple[str, str], Aggregate] | None, list[str]]:
    """The steps', phases' and journeys' totals of every document added up; None when one lacks them."""
    lacking = [n for n, d in zip(names, docs, strict=True) if "parts" not in d]
    if lacking:
        had = any(d["summary"].get(k) for d in docs for k in ("steps", "phases"))
        why = f"step and phase summaries not merged: {', '.join(lacking)} keeps no part histograms"
        return None, [why] if had else []
    parts: dict[tuple[str, str], Aggregate] = {}
    merger = Merger()  # one scratch for every part
    for doc, name in zip(docs, names, strict=True):
        for key, part in doc["parts"].items():
            into = parts.get(part_key(key))
            if into is None:
                into = parts[part_key(key)] = Aggregate(seconds=False, merger=merger)
            try:
                add_part_doc(into, part)
            except BadHistogram as e:
                raise PlanError(f"{name}: parts.{key}: {e}") from None
    return parts, []


def _start_of(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def _series(
    docs: list[dict[str, Any]], names: list[str], starts: list[float], t0: float
) -> tuple[list[dict[str, Any]], int]:
    """Per-second entries keyed by the wall-clock second they ended in, relative to the earliest start.

    Counts add and the seconds' histograms merge, so a merged second's p50/p99 are those of the union.
    Where an input entry kept no histogram, the p50/p99 are the highest of the entries merged; the second
    return value counts those seconds. Linear in the entries, with two histograms in memory whatever the
    length: the seconds' blobs are gathered first, then each second is added up, read and encoded in turn.
    """
    by_second: dict[int, dict[str, Any]] = {}
    # A second's latency histograms, (input, blob) each; None: an input kept none for it.
    blobs: dict[int, list[tuple[str, Any]] | None] = {}
    ttft_blobs: dict[int, list[tuple[str, Any]]] = {}
    for doc, name, start in zip(docs, names, starts, strict=True):
        for i, e in enumerate(doc["timeseries"]):
            sec = math.ceil(round(start + e["t"] - t0, 3))
            m = by_second.get(sec)
            if m is None:
                m = by_second[sec] = {
                    "t": float(sec),
                    "span_s": e.get("span_s", 1.0),
                    "partial": False,
                    "rps": 0.0,
                }
                m.update({k: 0 for k in _SUMMED_SERIES if k in e})
                m["error_kinds"], m["p50"], m["p99"], m["sources"] = {}, None, None, 0
                blobs[sec] = []
            m["sources"] += 1
            m["partial"] = m["partial"] or bool(e.get("partial"))
            for k in _SUMMED_SERIES:
                if k in e:
                    m[k] = m.get(k, 0) + e[k]
            for k in (*_SUMMED_RATES, "rps", "output_tokens_per_s"):
                if e.get(k) is not None:
                    m[k] = round(m.get(k, 0.0) + e[k], 3)
            for kind, n in (e.get("error_kinds") or {}).items():
                m["error_kinds"][kind] = m["error_kinds"].get(kind, 0) + n
            for k in ("p50", "p99", "ttft_p50", "ttft_p99"):  # null: nothing answered in that second
                if k in e or k in m:
                    m[k] = _highest(m.get(k), e.get(k))
            kept = blobs[sec]
            if kept is None:
                continue
            if "latency_hist" not in e:
                blobs[sec] = None
                continue
            kept.append((f"{name}: timeseries[{i}].latency_hist", e["latency_hist"]))
            if "ttft_hist" in e:
                ttft_blobs.setdefault(sec, []).append((f"{name}: timeseries[{i}].ttft_hist", e["ttft_hist"]))
    approximate = 0
    merger, latency, ttft = Merger(), new_histogram(), new_histogram()
    for sec, m in by_second.items():
        kept = blobs[sec]
        if kept is None:
            approximate += 1
            continue
        m["p50"], m["p99"], m["latency_hist"] = _second(merger, latency, kept)
        if sec in ttft_blobs:
            m["ttft_p50"], m["ttft_p99"], m["ttft_hist"] = _second(merger, ttft, ttft_blobs[sec])
    return [by_second[k] for k in sorted(by_second)], approximate


def _highest(a: float | None, b: float | None) -> float | None:
    """The larger of two per-second percentiles, either of which may be None (no answer in the second)."""
    return b if a is None else a if b is None else max(a, b)


def _second(
    merger: Merger, into: HdrHistogram, blobs: list[tuple[str, Any]]
) -> tuple[float | None, float | None, str]:
    """p50, p99 and the encoding of one second's histograms added up (`into` is emptied and reused)."""
    clear(into)
    for where, blob in blobs:
        _add(merger, blob, into, where)
    pct = percentiles_ms(into)
    return pct[50.0], pct[99.0], encode(into)


def _add(merger: Merger, blob: Any, into: HdrHistogram, where: str) -> None:
    """Add an input's encoded histogram; PlanError naming where it sits when it cannot be read."""
    try:
        merger.add(blob, into)
    except BadHistogram as e:
        raise PlanError(f"{where}: {e}") from None
