"""Thresholds: `p99<300ms`, `errors<1%`, `rps>100`, `ttft_p95<2s` ... parsed once, judged against a result."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from squall.units import PlanError, named, parse_duration, size_mb

_EXPR = re.compile(r"^\s*([a-z][A-Za-z0-9_.\-]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")
_PCT = re.compile(r"^(p50|p90|p95|p99|p999|min|max|mean)$")
_PCT_KEYS = frozenset(("p50", "p90", "p95", "p99", "p999", "min", "max", "mean"))
_HISTS = ("latency", "service", "ttfb", "schedule_lag", "ttft", "ttfat", "itl", "tpot", "e2e")
_LLM = ("ttft", "ttfat", "itl", "tpot", "e2e")
_RATES = {
    "rps": ("rps",),
    "ok_rps": ("ok_rps",),
    "goodput_rps": ("llm", "goodput_rps"),
    "tokens_per_s": ("llm", "output_tokens_per_s"),
}
# Every error kind squall counts (docs/reliability.md, "Error kinds"); a py run's kinds are exception names.
ERROR_KINDS = (
    "connect", "tls", "timeout", "reset", "truncated", "protocol",
    "http_401", "http_403", "http_429", "http_4xx", "http_5xx",
    "stream_broken", "stream_error", "empty_response", "bad_response",
    "expect_status", "expect_body", "extract",
    "bad_request", "ports_exhausted", "fd_exhausted", "internal", "other",
)  # fmt: skip
_EXCEPTION = re.compile(r"^[A-Z][A-Za-z0-9_]*$")  # ValueError, KeyError: a py workload's kinds
# The target process's figures (summary.target, from its per-second samples): metric -> (field, unit).
TARGET = {
    "target_rss": ("rss_max_mb", "size"),
    "target_rss_max": ("rss_max_mb", "size"),
    "target_rss_last": ("rss_last_mb", "size"),
    "target_cpu": ("cpu_mean_pct", "%"),
    "target_cpu_mean": ("cpu_mean_pct", "%"),
    "target_cpu_max": ("cpu_max_pct", "%"),
}
_NOT_FINITE = re.compile(r"^\s*[+-]?(nan|inf)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One bound on one number of the result."""

    expr: str
    # Where the value lives in `summary`; or ("errors%",) for the error rate, ("errors%", KIND) for one
    # kind's share of the requests, ("error_kinds", KIND) for its count.
    path: tuple[str, ...]
    op: str
    limit: float  # ms for times, % for error rates and CPU, MB for sizes, plain numbers otherwise
    # ("steps", NAME) for step.NAME.metric, ("phases", NAME) for phase.NAME.metric
    scope: tuple[str, ...] = ()

    @property
    def on_target(self) -> bool:
        """Judged on the target process's samples (--target-pid, soak's --target-cmd)."""
        return self.path[:1] == ("target",)

    def value(self, summary: dict[str, Any]) -> float | None:
        """The judged number, or None when the result does not have it (no LLM section, no target sampled,
        nothing answered, no request at all): no data, which fails."""
        for key in self.scope:
            summary = summary.get(key) if isinstance(summary, dict) else None  # type: ignore[assignment]
            if summary is None:
                return None
        if self.path[0] in ("errors%", "error_kinds"):
            n = summary.get("requests", 0)
            if not n:
                return None  # no request completed: an error bound has nothing to judge
            if self.path == ("errors%",):
                return 100.0 * summary.get("errors", 0) / n
            count = (summary.get("error_kinds") or {}).get(self.path[1], 0)
            return 100.0 * count / n if self.path[0] == "errors%" else float(count)
        node: Any = summary
        for key in self.path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return None if node is None else float(node)

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
            rest = metric[len(prefix) :]
            name, dot, kind = rest.rpartition(".errors.")
            name, inner = (name, "errors." + kind) if dot else rest.rpartition(".")[::2]
            if not name or not inner:
                raise PlanError(
                    f"{named(flag, text)}: write {prefix}NAME.METRIC, e.g. {prefix}{example}.p99<5s"
                )
            if inner in TARGET:
                raise PlanError(
                    f"{named(flag, text)}: the target process is sampled for the whole run, not per "
                    f"{prefix[:-1]}; write {inner}{op}{raw}"
                )
            alone = f"{inner}{op}{raw}"
            try:
                t = parse_threshold(alone, flag)
            except PlanError as e:  # (named as written: the whole expression)
                raise PlanError(str(e).replace(named(flag, alone), named(flag, text), 1)) from None
            return Threshold(text.strip(), t.path, t.op, t.limit, (section, name))
    if metric in ("errors", "error_rate"):
        try:
            limit = float(raw[:-1]) if raw.endswith("%") else float(raw) * 100.0  # a fraction: 0.01 is 1 %
        except ValueError:
            limit = -1.0
        if not 0 <= limit <= 100:
            said = (
                "is not from 0% to 100%"
                if limit > 100
                else "is not a percentage such as 1% (or a fraction, 0.01)"
            )
            raise PlanError(f"{named(flag, text)}: {raw!r} {said}")
        if not raw.endswith("%") and limit >= 100:  # errors<1 is a bound that can never fail
            raise PlanError(
                f"{named(flag, text)}: {raw!r} reads as the fraction {raw} (100 % of requests); write "
                f"{metric}{op}{raw}% for a percentage, or a fraction below 1 such as 0.01"
            )
        return Threshold(text.strip(), ("errors%",), op, limit)
    if metric.startswith("errors."):
        return _error_kind(text, flag, metric[len("errors.") :], op, raw)
    if metric in TARGET:
        return _target(text, flag, metric, op, raw)
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
            f"{', '.join(h + '_' for h in _HISTS)}; or errors, errors.KIND, rps, ok_rps, goodput_rps, "
            f"tokens_per_s, requests, {', '.join(TARGET)}"
        )
    if _BARE.fullmatch(raw.strip()):  # k6 reads a bare number as ms, a duration as s: say which
        raise PlanError(
            f"{named(flag, text)}: {raw.strip()!r} has no unit; a time bound needs one: "
            f"{metric}{op}{raw.strip()}ms or {metric}{op}{raw.strip()}s"
        )
    if _NOT_FINITE.match(raw):
        raise PlanError(f"{named(flag, text)}: {raw!r} is not a finite time; give one such as 300ms or 2s")
    limit_ms = parse_duration(raw, f"{named(flag, text)}:") * 1000.0
    path = ("llm", f"{hist}_ms", pct) if hist in _LLM else (f"{hist}_ms", pct)
    return Threshold(text.strip(), path, op, limit_ms)


def _error_kind(text: str, flag: str, kind: str, op: str, raw: str) -> Threshold:
    """errors.KIND<1% (its share of all requests) or errors.KIND<5 (a count)."""
    if kind not in ERROR_KINDS and not _EXCEPTION.match(kind):
        raise PlanError(
            f"{named(flag, text)}: no error kind {kind!r}; the kinds are {', '.join(ERROR_KINDS)} "
            "(and, for squall py, the name of the exception raised, e.g. errors.ValueError<1%)"
        )
    share = raw.endswith("%")
    try:
        limit = float(raw[:-1] if share else raw)
    except ValueError:
        limit = math.nan
    if share and not 0 <= limit <= 100:
        raise PlanError(f"{named(flag, text)}: {raw!r} is not a percentage such as 1%")
    if not share and not (0 <= limit < 2**53 and limit == int(limit)):
        raise PlanError(
            f"{named(flag, text)}: {raw!r} is not a count of {kind} errors; give a whole number "
            f"(errors.{kind}<5), or a share of the requests with % (errors.{kind}<1%)"
        )
    return Threshold(text.strip(), ("errors%" if share else "error_kinds", kind), op, limit)


def _target(text: str, flag: str, metric: str, op: str, raw: str) -> Threshold:
    """target_rss<600MB, target_cpu<80%: bounds on the sampled target process."""
    field, unit = TARGET[metric]
    if unit == "%":
        try:
            limit = float(raw[:-1]) if raw.endswith("%") else math.nan
        except ValueError:
            limit = math.nan
        if not 0 <= limit <= 100_000:  # (psutil's CPU % counts each core as 100)
            raise PlanError(
                f"{named(flag, text)}: {raw!r} is not a CPU percentage; write it with %, e.g. "
                f"{metric}{op}80% (100% is one core)"
            )
        return Threshold(text.strip(), ("target", field), op, limit)
    limit = size_mb(raw)
    if limit is None:
        fix = f"{metric}{op}{raw.strip()}MB" if _BARE.fullmatch(raw.strip()) else f"{metric}{op}600MB"
        raise PlanError(f"{named(flag, text)}: {raw!r} is not a size with its unit; write e.g. {fix} or 2GB")
    return Threshold(text.strip(), ("target", field), op, limit)


def check_target(thresholds: tuple[Threshold, ...], sampled: bool) -> None:
    """PlanError when a threshold is on the target process and no target will be sampled."""
    on_target = [t.expr for t in thresholds if t.on_target]
    if on_target and not sampled:
        raise PlanError(
            f"threshold {on_target[0]!r} judges the target process, and none is sampled: give --target-pid "
            "PID (or, with soak, --target-cmd CMD)"
        )


def judge(thresholds: tuple[Threshold, ...], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """`[{expr, ok, value}]`; a metric the result lacks fails with value None."""
    out = []
    for t in thresholds:
        value = t.value(summary)
        out.append({"expr": t.expr, "ok": value is not None and t.holds(value), "value": value})
    return out
