"""Thresholds: `p99<300ms`, `errors<1%`, `rps>100`, `ttft_p95<2s` ... parsed once, judged against a result."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from squall.units import PlanError, named, parse_duration

_EXPR = re.compile(r"^\s*([a-z][A-Za-z0-9_.\-]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")
_PCT = re.compile(r"^(p50|p90|p95|p99|p999|min|max|mean)$")
_PCT_KEYS = frozenset(("p50", "p90", "p95", "p99", "p999", "min", "max", "mean"))
_HISTS = ("latency", "service", "ttfb", "schedule_lag", "ttft", "itl", "tpot", "e2e")
_LLM = ("ttft", "itl", "tpot", "e2e")
_RATES = {
    "rps": ("rps",),
    "goodput_rps": ("llm", "goodput_rps"),
    "tokens_per_s": ("llm", "output_tokens_per_s"),
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """One bound on one number of the result."""

    expr: str
    path: tuple[str, ...]  # where the value lives in `summary`, or ("errors%",) for the error rate
    op: str
    limit: float  # ms for times, % for the error rate, plain numbers otherwise
    scope: tuple[
        str, ...
    ] = ()  # ("steps", NAME) for step.NAME.metric, ("phases", NAME) for phase.NAME.metric

    def value(self, summary: dict[str, Any]) -> float | None:
        """The judged number, or None when the result does not have it (no LLM section, say)."""
        for key in self.scope:
            summary = summary.get(key) if isinstance(summary, dict) else None  # type: ignore[assignment]
            if summary is None:
                return None
        if self.path == ("errors%",):
            n = summary.get("requests", 0)
            return 100.0 * summary.get("errors", 0) / n if n else 0.0
        node: Any = summary
        for key in self.path:
            if not isinstance(node, dict) or key not in node:
                return None
            if key in _PCT_KEYS and not any(node.values()):
                return None  # an empty histogram (nothing answered, no token came): no data, not 0 ms
            node = node[key]
        return float(node)

    def holds(self, value: float) -> bool:
        return {
            "<": value < self.limit,
            "<=": value <= self.limit,
            ">": value > self.limit,
            ">=": value >= self.limit,
        }[self.op]


_BARE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_threshold(text: str, flag: str = "--threshold") -> Threshold:
    """Parse one threshold expression; raise PlanError naming what is wrong (and `flag`, the option it came
    from: --threshold, --slo, or '' where the caller names the place)."""
    m = _EXPR.match(text)
    if not m:
        raise PlanError(
            f"{named(flag, text)} is not METRIC<VALUE, e.g. 'p99<300ms', 'errors<1%' or 'rps>100'"
        )
    metric, op, raw = m.groups()
    for prefix, section, example in (("step.", "steps", "outline"), ("phase.", "phases", "offer")):
        if metric.startswith(prefix):
            name, _, inner = metric[len(prefix) :].rpartition(".")
            if not name or not inner:
                raise PlanError(
                    f"{named(flag, text)}: write {prefix}NAME.METRIC, e.g. {prefix}{example}.p99<5s"
                )
            t = parse_threshold(f"{inner}{op}{raw}", flag)
            return Threshold(text.strip(), t.path, t.op, t.limit, (section, name))
    if metric in ("errors", "error_rate"):
        try:
            limit = float(raw[:-1]) if raw.endswith("%") else float(raw) * 100.0  # a fraction: 0.01 is 1 %
        except ValueError:
            limit = -1.0
        if not 0 <= limit <= 100:
            raise PlanError(
                f"{named(flag, text)}: {raw!r} is not a percentage such as 1% (or a fraction, 0.01)"
            )
        return Threshold(text.strip(), ("errors%",), op, limit)
    if metric in _RATES or metric == "requests":
        try:
            limit = float(raw)
        except ValueError:
            raise PlanError(f"{named(flag, text)}: {raw!r} is not a number") from None
        if not math.isfinite(limit):
            raise PlanError(f"{named(flag, text)}: {raw!r} is not a finite number")
        return Threshold(text.strip(), _RATES.get(metric, (metric,)), op, limit)
    hist, _, pct = metric.rpartition("_")
    if not hist:
        hist, pct = "latency", metric
    if hist not in _HISTS or not _PCT.match(pct):
        raise PlanError(
            f"{named(flag, text)}: unknown metric {metric!r}; use p50..p999, min, max or mean, or after "
            f"{', '.join(h + '_' for h in _HISTS)}; or errors, rps, goodput_rps, tokens_per_s, requests"
        )
    if _BARE.fullmatch(raw.strip()):  # k6 reads a bare number as ms, a duration as s: say which
        raise PlanError(
            f"{named(flag, text)}: {raw.strip()!r} has no unit; a time bound needs one: "
            f"{metric}{op}{raw.strip()}ms or {metric}{op}{raw.strip()}s"
        )
    limit_ms = parse_duration(raw, flag) * 1000.0
    path = ("llm", f"{hist}_ms", pct) if hist in _LLM else (f"{hist}_ms", pct)
    return Threshold(text.strip(), path, op, limit_ms)


def judge(thresholds: tuple[Threshold, ...], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """`[{expr, ok, value}]`; a metric the result lacks fails with value None."""
    out = []
    for t in thresholds:
        value = t.value(summary)
        out.append({"expr": t.expr, "ok": value is not None and t.holds(value), "value": value})
    return out
