"""The collector's sinks, fed by hand: what each one does with a second, a tick and the final document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from squall.collector.aggregate import Aggregate, Second
from squall.collector.sinks import AbortSink, default_sinks
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec
from squall.plan.thresholds import parse_threshold


@dataclass
class FakeTotals:
    """The collector as a sink sees it, with a clock the test sets."""

    plan: Plan
    elapsed: float = 0.0
    p99_ms: float = 0.0
    agg: Aggregate = field(default_factory=Aggregate)
    series: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    second: Second | None = None
    received: int = 0
    started_at: float = 0.0
    t0: int | None = 0
    closing: bool = False
    aborts: list[str] = field(default_factory=list)
    supervisor: bool = True

    def elapsed_s(self) -> float:
        return self.elapsed

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {"requests": 10, "errors": 0, "latency_ms": {"p99": self.p99_ms}}

    def document(self) -> dict[str, Any]:
        return {}

    def abort(self, reason: str) -> bool:
        self.aborts.append(reason)
        return self.supervisor


def _plan(**kw: Any) -> Plan:
    return assemble(RequestSpec("http://127.0.0.1:1/"), duration_s=60.0, **kw)


def test_the_abort_watcher_stops_a_run_once_a_threshold_failed_for_its_grace() -> None:
    plan = _plan(thresholds=(parse_threshold("p99<100ms"),), abort_on_fail=True, abort_grace_s=3.0)
    totals = FakeTotals(plan)
    sink = AbortSink(plan)
    for t, p99 in (
        (1, 150.0),
        (2, 150.0),
        (3, 50.0),
        (4, 150.0),
        (5, 150.0),
        (6, 150.0),
        (7, 150.0),
        (8, 150.0),
    ):
        totals.elapsed, totals.p99_ms = float(t), p99
        sink.on_second({}, totals)
    # Failing from 4 s on (3 s passed, so the first stretch did not count): aborted at 7 s, once.
    want = "threshold p99<100ms failed for 3 s: run aborted"
    assert totals.aborts == [want] and totals.warnings == [want]


def test_the_abort_watcher_is_quiet_while_the_run_closes() -> None:
    plan = _plan(thresholds=(parse_threshold("p99<100ms"),), abort_on_fail=True, abort_grace_s=0.0)
    totals = FakeTotals(plan, p99_ms=500.0, closing=True)
    AbortSink(plan).on_second({}, totals)
    assert totals.aborts == [] and totals.warnings == []


def test_the_plan_picks_the_sinks() -> None:
    def kinds(plan: Plan) -> list[str]:
        return [type(s).__name__ for s in default_sinks(plan, FakeTotals(plan))]

    assert kinds(_plan(quiet=True)) == []
    assert kinds(_plan(quiet=True, out_path="r.json")) == ["OutFileSink"]
    assert kinds(_plan(quiet=True, abort_on_fail=True, thresholds=(parse_threshold("p99<1s"),))) == [
        "AbortSink"
    ]
