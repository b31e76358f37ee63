"""Pure merging of workers' windows into cumulative totals and a per-second series."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from squall.hist import Merger, merge_into, new_histogram, percentiles_ms, summary_ms
from squall.wire import Window

COUNTERS = (
    "requests",
    "ok",
    "errors",
    "bytes_in",
    "bytes_out",
    "warmup",
    "dropped",
    "unsent",
    "interrupted",
    "overflow",
)
REPORTED = ("latency", "service", "ttfb", "schedule_lag")


def _add(into: dict[Any, int], other: dict[Any, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


@dataclass
class Second:
    """The merged windows of one seq across workers."""

    seq: int
    t_start: int
    t_end: int
    counters: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    latency: HdrHistogram = field(default_factory=new_histogram)
    ttft: HdrHistogram | None = None
    inflight: int = 0
    users: int = 0


class Aggregate:
    """Cumulative counters and histograms, and per-second entries, from any grouping of windows.

    Adding windows is associative and commutative: totals equal one recorder that saw every sample.
    """

    def __init__(self, seconds: bool = True, merger: Merger | None = None) -> None:
        """`merger`: one to share (its 188 KB scratch), e.g. among the many parts of a scenario's steps."""
        self.seconds = seconds  # False: totals only (a scenario step's), no per-second entries
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.status_codes: dict[int, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.custom: dict[str, int] = {}  # squall.sdk.count() totals
        self.hists: dict[str, HdrHistogram] = {}
        self.pending: dict[int, Second] = {}
        self.merger = merger if merger is not None else Merger()
        self.t_first: int | None = None
        self.t_last = 0

    def add(self, w: Window) -> None:
        """Merge one window into the totals and into its second."""
        previous_max = self.counters.get("retry_after_max_ms", 0)
        _add(self.counters, w.counters)
        if "retry_after_max_ms" in w.counters:  # a maximum, not a sum
            self.counters["retry_after_max_ms"] = max(previous_max, w.counters["retry_after_max_ms"])
        _add(self.status_codes, w.status_codes)
        _add(self.error_kinds, w.error_kinds)
        if w.custom:
            _add(self.custom, w.custom)
        if not self.seconds:
            for name, blob in w.histograms.items():
                self.merger.add(blob, self._total(name))
            return
        sec = self.pending.get(w.seq)
        if sec is None:
            sec = self.pending[w.seq] = Second(w.seq, w.t_start, w.t_end)
        sec.t_start = min(sec.t_start, w.t_start)
        sec.t_end = max(sec.t_end, w.t_end)
        _add(sec.counters, w.counters)
        _add(sec.error_kinds, w.error_kinds)
        for name, blob in w.histograms.items():
            totals = [self._total(name)]
            if name == "latency":
                totals.append(sec.latency)
            elif name == "ttft":
                if sec.ttft is None:
                    sec.ttft = new_histogram()
                totals.append(sec.ttft)
            self.merger.add(blob, *totals)
        sec.inflight += w.inflight
        sec.users += w.users
        if w.counters.get("requests"):
            self.t_first = w.t_start if self.t_first is None else min(self.t_first, w.t_start)
            self.t_last = max(self.t_last, w.t_end)

    def _total(self, name: str) -> HdrHistogram:
        # (not setdefault: that would build a 188 KB histogram on every call only to drop it)
        total = self.hists.get(name)
        if total is None:
            total = self.hists[name] = new_histogram()
        return total

    def merge(self, other: Aggregate) -> None:
        """Add another aggregate's totals and pending seconds into this one."""
        _add(self.counters, other.counters)
        _add(self.status_codes, other.status_codes)
        _add(self.error_kinds, other.error_kinds)
        _add(self.custom, other.custom)
        for name, h in other.hists.items():
            merge_into(self._total(name), h)
        if "retry_after_max_ms" in other.counters:  # a maximum, not a sum
            self.counters["retry_after_max_ms"] = max(
                self.counters.get("retry_after_max_ms", 0) - other.counters["retry_after_max_ms"],
                other.counters["retry_after_max_ms"],
            )
        for seq, sec in other.pending.items():
            mine = self.pending.get(seq)
            if mine is None:
                self.pending[seq] = mine = Second(seq, sec.t_start, sec.t_end)
            mine.t_start, mine.t_end = min(mine.t_start, sec.t_start), max(mine.t_end, sec.t_end)
            _add(mine.counters, sec.counters)
            _add(mine.error_kinds, sec.error_kinds)
            merge_into(mine.latency, sec.latency)
            _merge_ttft(mine, sec)
            mine.inflight += sec.inflight
            mine.users += sec.users
        if other.t_first is not None:
            self.t_first = other.t_first if self.t_first is None else min(self.t_first, other.t_first)
        self.t_last = max(self.t_last, other.t_last)

    def carry_into(self, sec: Second, seq: int) -> None:
        """Add a popped second's counts into pending second `seq` (for late warmup boundaries)."""
        into = self.pending.get(seq)
        if into is None:
            into = self.pending[seq] = Second(seq, sec.t_start, sec.t_end)
        into.t_start = min(into.t_start, sec.t_start)
        _add(into.counters, sec.counters)
        _add(into.error_kinds, sec.error_kinds)
        merge_into(into.latency, sec.latency)
        _merge_ttft(into, sec)

    def pop_seconds(self, upto: int) -> list[Second]:
        """Remove and return the pending seconds with seq <= upto, oldest first."""
        done = sorted(s for s in self.pending if s <= upto)
        return [self.pending.pop(s) for s in done]

    def hist(self, name: str) -> HdrHistogram:
        return self.hists.get(name) or new_histogram()

    def llm_summary(self, duration_s: float, open_model: bool) -> dict[str, Any]:
        """The result's `summary.llm` object: TTFT (first token of any kind), TTFAT (first answer token), ITL
        and TPOT from streamed answers only; e2e and tokens from every answer (`streamed` and `unstreamed`
        count them); reasoning tokens, and the answers that had a reasoning phase."""
        c = self.counters
        per_s = (lambda n: round(n / duration_s, 3)) if duration_s > 0 else (lambda n: 0.0)
        usage, estimate = c.get("usage_answers", 0), c.get("estimate_answers", 0)
        source = "usage" if usage and not estimate else "estimate" if estimate and not usage else "mixed"
        out: dict[str, Any] = {
            "ttft_ms": summary_ms(self.hist("ttft")),
            "ttfat_ms": summary_ms(self.hist("ttfat")),
            "itl_ms": summary_ms(self.hist("itl")),
            "tpot_ms": summary_ms(self.hist("tpot")),
            "e2e_ms": summary_ms(self.hist("e2e")),
        }
        if open_model:
            out["ttft_from_intended_ms"] = summary_ms(self.hist("ttft_intended"))
        out.update(
            {
                "streamed": c.get("streamed_answers", 0),
                "unstreamed": c.get("unstreamed_answers", 0),
                "cancelled": c.get("cancelled", 0),  # (abandoned: in requests, neither ok nor errors)
                "output_tokens": c.get("output_tokens", 0),
                "input_tokens": c.get("input_tokens", 0),
                "reasoning_tokens": c.get("reasoning_tokens", 0),
                "reasoning_answers": c.get("reasoning_answers", 0),
                "output_tokens_per_s": per_s(c.get("output_tokens", 0)),
                "input_tokens_per_s": per_s(c.get("input_tokens", 0)),
                "token_source": source if usage or estimate else "none",
                "answers_with_usage": usage,
                "answers_estimated": estimate,
                "token_discrepancy_per_answer": round(c.get("token_discrepancy", 0) / usage, 3)
                if usage
                else None,
                "goodput_requests": c.get("goodput", 0),
                "goodput_rps": per_s(c.get("goodput", 0)),
                "bad_chunks": c.get("bad_chunks", 0),
                "bad_usage": c.get("bad_usage", 0),
                "retry_after": {
                    "count": c.get("retry_after", 0),
                    "max_s": c.get("retry_after_max_ms", 0) / 1000,
                },
                "retry_after_clamped": c.get("retry_after_clamped", 0),
            }
        )
        return out

    def summary(self, duration_s: float, open_model: bool) -> dict[str, Any]:
        """The result's `summary` object."""
        c = self.counters
        out: dict[str, Any] = {
            "requests": c["requests"],
            "ok": c["ok"],
            "errors": c["errors"],
            "error_kinds": dict(sorted(self.error_kinds.items())),
            "status_codes": {str(k): v for k, v in sorted(self.status_codes.items())},
            "duration_s": round(duration_s, 6),
            "rps": round(c["requests"] / duration_s, 3) if duration_s > 0 else 0.0,
            "ok_rps": round(c["ok"] / duration_s, 3) if duration_s > 0 else 0.0,
            "bytes_in": c["bytes_in"],
            "bytes_out": c["bytes_out"],
            "warmup_requests": c["warmup"],
            "dropped": c["dropped"],
            "unsent": c["unsent"],
            "interrupted": c["interrupted"],
            "overflow": c["overflow"],
        }
        for name in REPORTED:
            if name == "schedule_lag" and not open_model:
                continue
            out[f"{name}_ms"] = summary_ms(self.hist(name))
        return out


def _merge_ttft(into: Second, sec: Second) -> None:
    if sec.ttft is not None:
        if into.ttft is None:
            into.ttft = new_histogram()
        merge_into(into.ttft, sec.ttft)


def second_entry(sec: Second, window_s: float, hists: bool = False) -> dict[str, Any]:
    """One per-second series entry (without samples) from a merged Second; its p50/p99 are None (null) when
    nothing was answered in it.

    `hists`: keep the second's latency (and TTFT) histogram in the entry, so results merged across shards
    get exact per-second percentiles.
    """
    span = (sec.t_end - sec.t_start) / 1e9 or window_s
    pct = percentiles_ms(sec.latency)
    c = sec.counters
    kept: dict[str, Any] = {}
    if hists:
        kept["latency_hist"] = sec.latency.encode().decode()
        if sec.ttft is not None:
            kept["ttft_hist"] = sec.ttft.encode().decode()
    return (
        kept
        | {
            "t": round(sec.seq * window_s, 3),
            "span_s": round(span, 6),
            "partial": span < window_s * 0.9,
            "rps": round(c.get("requests", 0) / span, 3),
            "requests": c.get("requests", 0),
            "ok": c.get("ok", 0),
            "errors": c.get("errors", 0),
            "error_kinds": sec.error_kinds,
            "p50": pct[50.0],
            "p99": pct[99.0],
            "inflight": sec.inflight,
        }
        | (_llm_entry(sec, span) if "output_tokens" in c else {})
    )


def _llm_entry(sec: Second, span: float) -> dict[str, Any]:
    ttft = percentiles_ms(sec.ttft) if sec.ttft is not None else {50.0: None, 99.0: None}
    out = sec.counters["output_tokens"]
    return {
        "output_tokens": out,
        "output_tokens_per_s": round(out / span, 3),
        "ttft_p50": ttft[50.0],
        "ttft_p99": ttft[99.0],
    }


def part_doc(part: Aggregate) -> dict[str, Any]:
    """A part's totals (a step's, phase's or journey's) as the result keeps them, for exact merges."""
    return {
        "counters": {k: v for k, v in sorted(part.counters.items()) if v},
        "status_codes": {str(k): v for k, v in sorted(part.status_codes.items())},
        "error_kinds": dict(sorted(part.error_kinds.items())),
        "histograms": {name: h.encode().decode() for name, h in sorted(part.hists.items())},
    }


def add_part_doc(into: Aggregate, doc: dict[str, Any]) -> None:
    """Add a part kept by `part_doc` into an aggregate (totals only)."""
    _add(into.counters, doc.get("counters", {}))
    _add(into.status_codes, {int(k): v for k, v in doc.get("status_codes", {}).items()})
    _add(into.error_kinds, doc.get("error_kinds", {}))
    for name, blob in doc.get("histograms", {}).items():
        into.merger.add(blob, into._total(name))


def part_key(key: str) -> tuple[str, str]:
    """A result document's part key ("step:NAME") as the (kind, name) the collector keys parts by."""
    kind, _, name = key.partition(":")
    return kind, name


def parts_summary(
    parts: dict[tuple[str, str], Aggregate],
    duration_s: float,
    steps: list[str],
    journeys: list[tuple[str, float]],
) -> dict[str, Any]:
    """`summary.phases`, `summary.steps` and `summary.scenarios` from the parts' totals."""
    out: dict[str, Any] = {}
    phases = sorted(name for kind, name in parts if kind == "phase")
    if phases:
        out["phases"] = {name: parts["phase", name].summary(duration_s, False) for name in phases}
    if not journeys:
        return out
    out["steps"] = {}
    for name in steps:
        part = parts.get(("step", name)) or Aggregate(seconds=False)
        out["steps"][name] = part.summary(duration_s, False)
        if "e2e" in part.hists:
            out["steps"][name]["llm"] = part.llm_summary(duration_s, False)
    out["scenarios"] = {}
    for journey, weight in journeys:
        part = parts.get(("journey", journey)) or Aggregate(seconds=False)
        c = part.counters
        out["scenarios"][journey] = {
            "weight": weight,
            "iterations": c["requests"],
            "completed": c["ok"],
            "failed": c["errors"],
            "failed_at": {
                kind.split(":", 1)[1]: n
                for kind, n in sorted(part.error_kinds.items())
                if kind.startswith("failed_at:")
            },
            "iterations_per_s": round(c["requests"] / duration_s, 3) if duration_s > 0 else 0.0,
            "duration_ms": summary_ms(part.hist("latency")),
        }
    return out


def turns_summary(parts: dict[tuple[str, str], Aggregate]) -> dict[str, Any]:
    """`summary.llm.by_turn` from the "turn" parts (conversations): for each turn ("1".."63", then "64+"
    for every later turn) its requests, errors, cancelled, TTFT and e2e p50/p99, and its mean input tokens."""
    names = sorted((name for kind, name in parts if kind == "turn"), key=lambda n: int(n.rstrip("+")))
    out: dict[str, Any] = {}
    for name in names:
        part = parts["turn", name]
        c = part.counters
        answers = c.get("streamed_answers", 0) + c.get("unstreamed_answers", 0)
        ttft = percentiles_ms(part.hist("ttft"))
        e2e = percentiles_ms(part.hist("e2e"))
        out[name] = {
            "requests": c["requests"],
            "errors": c["errors"],
            "cancelled": c.get("cancelled", 0),
            "ttft_ms": {"p50": ttft[50.0], "p99": ttft[99.0]},
            "e2e_ms": {"p50": e2e[50.0], "p99": e2e[99.0]},
            "input_tokens_mean": round(c.get("input_tokens", 0) / answers, 1) if answers else None,
        }
    return out


def keys_summary(parts: dict[tuple[str, str], Aggregate], llm: bool) -> dict[str, Any]:
    """`summary.by_key` from the "key" parts (several API keys, or a scenario's keys from data rows): for
    each key's short hash its requests, ok, errors, errors by kind (429s are the kind "http_429", and
    `rate_limited` counts them apart), latency p50/p99 and, in an LLM run, TTFT p50/p99 and tokens."""
    out: dict[str, Any] = {}
    for name in sorted(name for kind, name in parts if kind == "key"):
        part = parts["key", name]
        c = part.counters
        latency = percentiles_ms(part.hist("latency"))
        entry: dict[str, Any] = {
            "requests": c["requests"],
            "ok": c["ok"],
            "errors": c["errors"],
            "rate_limited": part.error_kinds.get("http_429", 0),
            "error_kinds": dict(sorted(part.error_kinds.items())),
            "latency_ms": {"p50": latency[50.0], "p99": latency[99.0]},
        }
        if llm:
            ttft = percentiles_ms(part.hist("ttft"))
            entry["ttft_ms"] = {"p50": ttft[50.0], "p99": ttft[99.0]}
            entry["input_tokens"] = c.get("input_tokens", 0)
            entry["output_tokens"] = c.get("output_tokens", 0)
            if c.get("cancelled"):
                entry["cancelled"] = c["cancelled"]
        out[name] = entry
    return out
