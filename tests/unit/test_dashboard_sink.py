"""The dashboard sink on the collector's side, with a stand-in for the collector: what a change or a stop
asks of it, the refusals and their reasons, the status it publishes, the change marks of the report."""

import json
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest

from squall.collector.aggregate import Aggregate
from squall.collector.dashboard import DashboardSink
from squall.collector.dashboard_server import Board, Refused
from squall.plan import build
from squall.plan.load import steered
from squall.plan.plan import Dashboard, Plan
from squall.plan.specs import RequestSpec, SoakSpec
from squall.report.html import changes
from squall.units import PlanError


class Collector:
    """What the sink reads of the collector (squall.collector.sinks.Totals), and what it was asked."""

    def __init__(self, plan: Plan) -> None:
        self.plan, self.agg = plan, Aggregate()
        self.series: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.t0: int | None = 1
        self.closing = False
        self.stop_asked: str | None = None
        self.stops: list[tuple[str, str | None]] = []
        self.elapsed = 2.0
        self.shape = plan.load.shape

    def elapsed_s(self) -> float:
        return self.elapsed

    def steer(self, users: int | None = None, rate: float | None = None, by: str = "") -> dict[str, Any]:
        change = {"t": self.elapsed, "users": users, "by": by}
        self.changes.append(change)
        at = self.plan.stop.warmup_s + self.elapsed
        self.shape = steered(self.plan.load.shape, "users", float(self.plan.load.connections), [(at, users)])
        return change

    def stop_run(self, reason: str = "interrupted", by: str | None = None) -> bool:
        self.stops.append((reason, by))
        return True


def _sink(rate: float | None = None, study: str = "") -> tuple[DashboardSink, Collector]:
    flags = build.LoadFlags(workers=1, duration="10s", rate=rate, quiet=True)
    plan = build.build(RequestSpec(url="http://127.0.0.1:9/"), flags, connections=2)
    plan = replace(plan, outputs=replace(plan.outputs, dashboard=Dashboard("127.0.0.1", 1, "", study)))
    return DashboardSink(plan, Board()), Collector(plan)


def _ask(sink: DashboardSink, totals: Collector, kind: str, args: dict[str, Any]) -> Future[Any]:
    reply: Future[Any] = Future()
    sink.board.commands.put((kind, args, reply))
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    return reply


def test_a_load_change_is_checked_against_the_plan() -> None:
    sink, _ = _sink()
    assert sink.check_load({"users": 3}) == {"users": 3}
    for body, needle in (
        ({"rate": 5}, "closed-model"),
        ({"users": True}, "^users true: users must be a whole number"),
        ({"users": 2.5}, "^users 2.5: users must be a whole number"),
        ({}, "give one of"),
        ({"users": 1, "speed": 2}, "unknown field 'speed'"),
    ):
        with pytest.raises(PlanError, match=needle):
            sink.check_load(body)
    sink, _ = _sink(rate=100)
    assert sink.check_load({"rate": 50}) == {"rate": 50.0}
    with pytest.raises(PlanError, match="open-model"):
        sink.check_load({"users": 5})
    with pytest.raises(PlanError, match=r'^rate "fast": rate must be a number'):
        sink.check_load({"rate": "fast"})
    sink, _ = _sink(study='{"level": 4, "runs": 1, "hunt": {"steps": []}}')
    with pytest.raises(Refused, match="a hunt sets its own load") as e:
        sink.check_load({"users": 5})
    assert e.value.status == 409


def test_a_change_is_answered_once_the_status_shows_it() -> None:
    sink, totals = _sink()
    reply = _ask(sink, totals, "load", {"users": 5})
    assert reply.result(0) == {"change": {"t": 2.0, "users": 5, "by": "dashboard"}}
    status = json.loads(sink.board.status)
    assert status["changes"] == [{"t": 2.0, "users": 5, "by": "dashboard"}]
    assert (status["phase"], status["model"], status["users"]) == ("running", "closed", 5)
    assert status["steerable"] is True and status["totals"]["requests"] == 0


def test_a_change_before_the_start_or_while_stopping_is_refused() -> None:
    sink, totals = _sink()
    totals.t0 = None
    with pytest.raises(Refused, match="not started yet"):
        _ask(sink, totals, "load", {"users": 5}).result(0)
    totals.t0 = 1
    assert _ask(sink, totals, "stop", {}).result(0) == {"stopping": True, "reason": "interrupted"}
    assert _ask(sink, totals, "stop", {}).result(0) == {"stopping": True, "reason": "interrupted"}
    assert totals.stops == [("interrupted", "dashboard")]  # asked of the supervisor once, as the page
    assert json.loads(sink.board.status)["phase"] == "stopping"
    with pytest.raises(Refused, match="is stopping") as e:
        _ask(sink, totals, "load", {"users": 5}).result(0)
    assert e.value.status == 409 and totals.changes == []


def test_the_status_follows_the_seconds_and_the_warmup() -> None:
    sink, totals = _sink()
    totals.elapsed = -0.5
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    assert json.loads(sink.board.status)["phase"] == "warmup"
    version = sink.board.version
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    assert sink.board.version == version  # nothing new: nothing published
    totals.elapsed = 1.0
    entry = {"t": 1.0, "requests": 7, "latency_hist": "HIST..."}
    totals.series.append(entry)
    sink.on_second(entry, totals)  # type: ignore[arg-type]
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    status = json.loads(sink.board.status)
    assert status["phase"] == "running" and status["seconds"] == 1
    assert status["last"] == {"t": 1.0, "requests": 7}  # (without its encoded histograms)
    assert sink.board.series == (entry,)
    totals.elapsed = 10.5
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    assert json.loads(sink.board.status)["phase"] == "stopping"  # past -d: draining


def test_changes_are_marked_with_their_new_value() -> None:
    meta = {"changes": [{"t": 3.5, "users": 40, "by": "dashboard"}, {"t": 9.0, "rate": 12.5, "by": "api"}]}
    assert changes(meta) == [{"t": 3.5, "label": "40 users"}, {"t": 9.0, "label": "12.5 req/s (api)"}]
    assert changes({}) == [] and changes({"changes": [{"t": None, "users": 1}]}) == []


def test_a_change_during_the_warmup_is_refused() -> None:
    sink, totals = _sink()
    totals.elapsed = -0.5
    with pytest.raises(Refused, match="warming up") as e:
        _ask(sink, totals, "load", {"users": 5}).result(0)
    assert e.value.status == 409 and totals.changes == []


def test_the_load_now_is_the_collectors_shape() -> None:
    sink, totals = _sink()
    totals.shape = steered(None, "users", 2.0, [(1.0, 9.0)])  # (the collector's, at the exact time)
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    assert json.loads(sink.board.status)["users"] == 9


def test_a_soak_status_has_its_slope_with_no_page_watching() -> None:
    sink, totals = _sink()
    sink.plan = replace(sink.plan, soak=SoakSpec())
    second = {"requests": 10, "ok": 10, "errors": 0, "p50": 1.0, "p99": 2.0}
    totals.series = [{"t": float(t), **second, "target": {"rss_mb": 100.0 + t}} for t in range(1, 31)]
    sink.on_tick(totals, final=False)  # type: ignore[arg-type]
    status = json.loads(sink.board.status)
    assert status["soak"]["rss_slope_mb_per_h"] == pytest.approx(3600.0)
    assert status["page"] == 0  # (no page data was built)
