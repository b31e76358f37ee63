"""Steering: the shape a change makes, the changes a run refuses, drivers and schedules across a change."""

from __future__ import annotations

import asyncio
from multiprocessing import Pipe
from time import perf_counter_ns
from typing import Any

import pytest

from squall.collector.collector import Collector
from squall.engine.budget import Abort, Budget, Count, Duration, StopRule
from squall.engine.drivers import ClosedDriver, Driver, OpenDriver, UsersDriver
from squall.engine.limits import port_range
from squall.engine.pacer import NS, ConstantPacer, make_pacer
from squall.engine.schedule import Schedule
from squall.engine.transport.aiohttp import AiohttpTransport
from squall.engine.transport.base import Channel
from squall.plan.load import HOLD_S, Closed, Open, Shape, Stage, Think, check_steer, steer_base, steered
from squall.plan.plan import Plan, assemble
from squall.plan.specs import LlmSpec, RequestSpec
from squall.units import PlanError
from squall.wire import Steer, Stop, decode

MS = 1_000_000

# -- the shape after changes ---------------------------------------------------------------------------


def test_a_change_holds_a_constant_load_from_its_time() -> None:
    got = steered(None, "rate", 50.0, [(2.0, 200.0)])
    assert got == Shape("rate", (Stage(0.0, 50.0), Stage(2.0, 50.0), Stage(0.0, 200.0), Stage(HOLD_S, 200.0)))
    assert got.value_at(1.0) == 50.0 and got.value_at(2.5) == 200.0 and got.value_at(1e6) == 200.0
    assert got.area(3.0) == pytest.approx(50 * 2 + 200)


def test_a_change_replaces_the_rest_of_a_shape_and_later_changes_the_earlier_ones() -> None:
    ramp = Shape("users", (Stage(4.0, 8.0), Stage(4.0, 8.0)))
    assert steered(ramp, "users", 8.0, []) is ramp
    got = steered(ramp, "users", 8.0, [(2.0, 3.0)])
    assert got is not None and got.stages == (Stage(2.0, 4.0), Stage(0.0, 3.0), Stage(HOLD_S, 3.0))
    assert [round(got.value_at(t)) for t in (1.0, 2.0, 3.0, 7.0)] == [2, 3, 3, 3]
    twice = steered(ramp, "users", 8.0, [(5.0, 1.0), (2.0, 3.0)])  # (in any order)
    assert twice is not None and [twice.value_at(t) for t in (3.0, 4.9, 5.0, 9.0)] == [3, 3, 1, 1]
    # A change after the shape ended: its last target holds until then.
    late = steered(Shape("rate", (Stage(1.0, 10.0),)), "rate", 10.0, [(3.0, 0.0)])
    assert late is not None and late.value_at(2.0) == 10.0 and late.area(10.0) == pytest.approx(5 + 20)


def test_check_steer_takes_one_value_of_the_run_s_model() -> None:
    check_steer(Closed(), 0, None)
    check_steer(Closed(), 1_000_000, None)
    check_steer(Open(rate=5.0), None, 0.0)
    bad: list[tuple[Any, Any, Any, str]] = [
        (Closed(), None, 5.0, "closed-model"),
        (Open(rate=5.0), 5, None, "open-model"),
        (Closed(), 5, 5.0, "give one of"),
        (Closed(), None, None, "give one of"),
        (Closed(), -1, None, "whole number"),
        (Closed(), 2.5, None, "whole number"),
        (Closed(), True, None, "whole number"),
        (Closed(), 1_000_001, None, "whole number"),
        (Open(rate=5.0), None, -1.0, "requests/s"),
        (Open(rate=5.0), None, 1e12, "requests/s"),
    ]
    for load, users, rate, words in bad:
        with pytest.raises(PlanError, match=words):
            check_steer(load, users, rate)
    with pytest.raises(PlanError, match="--trace replay"):
        check_steer(Open(rate=5.0), None, 10.0, trace=True)


def test_steer_base_is_what_a_change_steers_and_the_plan_s_value() -> None:
    assert steer_base(Closed(connections=7)) == ("users", 7.0)
    assert steer_base(Open(rate=2.5)) == ("rate", 2.5)


# -- schedules across a change ---------------------------------------------------------------------------


def dues(s: Schedule, until_ns: int) -> list[int]:
    out = []
    while (d := s.next_due()) is not None and d < until_ns:
        out.append(d)
    return out


def test_a_constant_schedule_changes_rate_at_the_change_and_loses_no_send() -> None:
    t0 = 10 * NS
    old = Schedule(ConstantPacer(50.0), t0, rate=50.0)
    before = dues(old, t0 + 100 * MS)  # 0, 20, 40, 60, 80 ms; the next (100 ms) drawn and not sent
    assert [d - t0 for d in before] == [0, 20 * MS, 40 * MS, 60 * MS, 80 * MS]
    new = old.steer(steered(None, "rate", 50.0, [(0.1, 200.0)]), 50.0, again=True)  # type: ignore[arg-type]
    after = [d - t0 for d in dues(new, t0 + 200 * MS)]
    assert [round(d / 1000) for d in after] == [100_000 + 5000 * k for k in range(20)]  # (us)


def test_a_steered_schedule_repeats_the_same_seeded_draws() -> None:
    for arrival in ("poisson", "gamma"):
        t0 = 0
        plain = Schedule(make_pacer(arrival, 100.0, 0, 1, 7, 0.5), t0, rate=100.0)
        want = dues(plain, 3 * NS)
        s = Schedule(make_pacer(arrival, 100.0, 0, 1, 7, 0.5), t0, rate=100.0)
        head = dues(s, NS)
        same = s.steer(steered(None, "rate", 100.0, [(1.0, 100.0)]), 100.0, again=True)  # type: ignore[arg-type]
        got = head + dues(same, 3 * NS)
        assert len(got) == len(want) and all(abs(a - b) <= 1000 for a, b in zip(got, want, strict=True))
        # Twice the rate from 1 s on: each later send comes twice as fast after the change.
        s = Schedule(make_pacer(arrival, 100.0, 0, 1, 7, 0.5), t0, rate=100.0)
        dues(s, NS)
        fast = s.steer(steered(None, "rate", 100.0, [(1.0, 200.0)]), 100.0, again=True)  # type: ignore[arg-type]
        got = dues(fast, 2 * NS)
        assert all(abs((a - NS) - (b - NS) / 2) <= 1000 for a, b in zip(got, want[len(head) :], strict=False))


def test_a_shaped_schedule_keeps_its_pacer_and_a_shard_its_phase() -> None:
    ramp = Shape("rate", (Stage(1.0, 100.0), Stage(1.0, 100.0)))
    s = Schedule(make_pacer("constant", 1.0, 0, 1, 0), 0, shape=ramp)
    head = dues(s, NS)  # 50 sends over the ramp
    new = s.steer(steered(ramp, "rate", 100.0, [(1.0, 10.0)]), 100.0, again=True)  # type: ignore[arg-type]
    assert len(head) == 50 and [round(d / MS) for d in dues(new, 2 * NS)] == [
        1000 + 100 * k for k in range(10)
    ]
    # Shard 1 of 2 at 10/s sends half a send later than shard 0: so it does after a change to 20/s.
    sharded = Schedule(ConstantPacer(10.0), 0, rate=10.0, phase_ns=50 * MS)
    assert dues(sharded, NS)[-1] == 950 * MS
    new = sharded.steer(steered(None, "rate", 10.0, [(1.0, 20.0)]), 10.0, again=True)  # type: ignore[arg-type]
    assert [round(d / MS) for d in dues(new, 1200 * MS)] == [1025, 1075, 1125, 1175]


# -- drivers across a change (fake channels, as tests/unit/test_drivers.py) ------------------------------


class FakeRec:
    def __init__(self) -> None:
        self.starts: list[int] = []
        self.warmup = self.interrupted = self.dropped = self.unsent = 0

    def response(self, status: int, start: int, sent: int, first: int, done: int, nbytes: int) -> None:
        self.starts.append(start)

    def schedule_lag(self, us: int) -> None:
        pass

    def internal(self, exc: BaseException, counted: bool = True) -> None:
        raise AssertionError(exc)


class FakeChannel(Channel):
    """Answers each send after `delay_s` with 200."""

    __slots__ = ("delay_s", "owner", "sends")

    def __init__(self, owner: Any, delay_s: float) -> None:
        super().__init__()
        self.owner, self.delay_s, self.sends = owner, delay_s, 0

    def send(self) -> None:
        assert not self.busy
        self.busy = True
        self.sends += 1
        asyncio.get_running_loop().call_later(self.delay_s, self._answer)

    def _answer(self) -> None:
        self.busy = False
        now = perf_counter_ns()
        self.owner.on_response(self, 200, now, now, 10)

    def abort(self) -> None:
        pass


class FakeWorker:
    """What a driver's steer uses of the worker: its callbacks and a transport that makes channels."""

    def __init__(self, delay_s: float) -> None:
        self.transport = self
        self.delay_s = delay_s
        self.grown: list[int] = []  # each grow(n) a steer asked of the transport
        self.on_response: Any = None
        self.on_failure: Any = None

    def channel(self, owner: Any) -> FakeChannel:
        return FakeChannel(owner, self.delay_s)

    def grow(self, connections: int) -> None:
        self.grown.append(connections)


LATE_S = 0.02  # a timeline callback this late means the box stalled the loop: the timeline is run again
ATTEMPTS = 3


def steer_drive(
    p: Plan,
    cls: type[Driver],
    changes: list[tuple[int, int | None, float | None]],
    channels: int,
    duration_ms: int,
    delay_s: float = 0.005,
    rules: list[StopRule] | None = None,
    probe: list[tuple[int, list[Any]]] | None = None,
    worker: FakeWorker | None = None,
) -> tuple[Any, FakeRec, list[str]]:
    """Run driver `cls` for `duration_ms`, steering it at each (ms since t0, users, rate); `probe` gets
    (active, sends per channel) at the given ms. A busy box can stall the loop past the timeline the test
    asserts (a change due at 60 ms running after the 260 ms deadline): such a run is done again, up to
    ATTEMPTS times, and the last one is returned whatever happened."""
    for _ in range(ATTEMPTS):
        for _at, out in probe or ():
            out.clear()
        if worker is not None:
            worker.grown.clear()
        got, late = _drive_once(p, cls, changes, channels, duration_ms, delay_s, rules, probe, worker)
        if late <= LATE_S:
            break
    return got


def _drive_once(
    p: Plan,
    cls: type[Driver],
    changes: list[tuple[int, int | None, float | None]],
    channels: int,
    duration_ms: int,
    delay_s: float,
    rules: list[StopRule] | None,
    probe: list[tuple[int, list[Any]]] | None,
    worker: FakeWorker | None,
) -> tuple[tuple[Any, FakeRec, list[str]], float]:
    """One run of steer_drive, and how late (s) its most delayed timeline callback ran."""
    rec, stops = FakeRec(), []
    late = [0.0]

    def on_time(when: float, call: Any, *args: Any) -> None:
        late[0] = max(late[0], asyncio.get_running_loop().time() - when)
        call(*args)

    async def main() -> Driver:
        t0 = perf_counter_ns()
        budget = Budget([Abort(), Duration(duration_ms * MS), *(rules or [])])
        budget.begin(t0)
        w = worker or FakeWorker(delay_s)

        def on_stop(reason: str) -> None:
            if budget.stop(reason):
                stops.append(reason)
                d.stop()

        d = cls(p, 0, rec, budget, str, on_stop)  # type: ignore[arg-type]
        w.on_response, w.on_failure = d.on_response, d.on_failure
        loop = asyncio.get_running_loop()
        base = loop.time()
        for at_ms, users, rate in changes:
            change = Steer(at_ms * MS, users, rate, "test")
            when = base + at_ms / 1000
            loop.call_at(when, on_time, when, d.steer, change, w)
        for at_ms, out in probe or ():
            when = base + at_ms / 1000
            loop.call_at(
                when,
                on_time,
                when,
                lambda out=out: out.append((d.active, [c.sends for c in d.channels])),  # type: ignore[misc]
            )
        d.start([w.channel(w) for _ in range(channels)], t0)  # type: ignore[list-item]
        await asyncio.wait_for(d.finished, 10)
        # (a run that ended well past its deadline was stalled too)
        late[0] = max(late[0], (perf_counter_ns() - t0) / 1e9 - duration_ms / 1000 - 4 * LATE_S)
        d.close()
        return d

    return (asyncio.run(main()), rec, stops), late[0]


def plan(**kw: Any) -> Plan:
    return assemble(RequestSpec("http://127.0.0.1:1/"), workers=1, **kw)


def test_a_closed_run_steered_up_and_down_starts_and_parks_users() -> None:
    up: list[Any] = []
    down: list[Any] = []
    worker = FakeWorker(0.005)
    d, rec, stops = steer_drive(
        plan(connections=2),
        ClosedDriver,
        [(60, 5, None), (150, 1, None)],
        2,
        260,
        probe=[(140, up), (240, down)],
        worker=worker,
    )
    assert worker.grown == [5]  # the transport's pools made room for the users added
    assert d.on_response.__name__ == "on_response"  # the lean path left at the first change
    assert stops == ["duration"] and len(d.channels) == 5 and d.active == 1 and len(d.parked) == 4
    (active, sends), (active_after, sends_after) = up[0], down[0]
    assert active == 5 and all(n > 0 for n in sends)  # the three new users sent too
    moved = [b - a for a, b in zip(sends, sends_after, strict=False)]
    assert active_after == 1 and sum(1 for m in moved if m > 2) == 1  # one user goes on; the rest left
    assert len(rec.starts) == sum(c.sends for c in d.channels)  # every send answered and recorded


def test_a_user_thinking_when_the_users_go_down_leaves_without_sending_again() -> None:
    after: list[Any] = []
    p = plan(connections=3, think=Think("uniform", 0.03, 0.03, 0.03))
    d, _rec, stops = steer_drive(p, ClosedDriver, [(45, 1, None)], 3, 200, delay_s=0.001, probe=[(60, after)])
    (_, sends_then), sends_end = after[0], [c.sends for c in d.channels]
    # Each user sends at 0, ~31, ~62 ms...: at 45 ms all three think; two leave without another request.
    assert (
        stops == ["duration"] and d.active == 1 and sorted(sends_end)[:2] == sorted(sends_then)[:2] == [2, 2]
    )


def test_users_zero_parks_everyone_until_the_deadline_and_a_count_still_ends_the_run() -> None:
    d, rec, stops = steer_drive(plan(connections=3), ClosedDriver, [(50, 0, None)], 3, 200)
    assert stops == ["duration"] and d.active == 0 and len(d.parked) == 3 and d.inflight == 0
    p = plan(shape=Shape("users", (Stage(0.0, 2.0), Stage(10.0, 2.0))), connections=2)
    d, rec, stops = steer_drive(p, UsersDriver, [(30, 6, None)], 2, 5000, rules=[Count(100)])
    assert stops == [] and len(rec.starts) == 100 == sum(c.sends for c in d.channels) and len(d.channels) == 6


def test_an_open_run_changes_its_due_times_exactly_at_the_change() -> None:
    d, rec, stops = steer_drive(plan(rate=50.0), OpenDriver, [(100, None, 200.0)], 4, 200)
    got = sorted(round((s - d.t0) / 1000) for s in rec.starts)  # us since t0
    assert got == [20_000 * k for k in range(5)] + [100_000 + 5000 * k for k in range(20)]
    assert stops == ["duration"] and rec.dropped == 0 and rec.unsent == 0


def test_an_open_run_steered_to_rate_zero_pauses_and_resumes() -> None:
    changes = [(50, None, 0.0), (150, None, 100.0)]
    d, rec, stops = steer_drive(plan(rate=100.0), OpenDriver, changes, 2, 200)
    got = sorted(round((s - d.t0) / 1000) for s in rec.starts)
    # The send due at the change itself, as in any shape, is the last one of the area before it; the next
    # one goes at 160 ms (or at 60 ms, the old rate's time, if the loop was too late to steer before it).
    assert got[:6] == [10_000 * k for k in range(6)] and got[6] in (60_000, 160_000)
    assert got[7:] == [170_000, 180_000, 190_000]
    assert stops == ["duration"]
    # Paused with no deadline, a count ends the run once resumed.
    changes = [(30, None, 0.0), (100, None, 1000.0)]
    p = plan(rate=100.0)
    d, rec, stops = steer_drive(p, OpenDriver, changes, 2, 100_000, rules=[Count(50)])
    assert len(rec.starts) == 50 and stops == []


def test_a_steer_after_the_run_stopped_does_nothing() -> None:
    for p, cls, change in (
        (plan(rate=100.0), OpenDriver, Steer(0, None, 5.0)),
        (plan(), ClosedDriver, Steer(0, 9, None)),
    ):
        d, rec, stops = steer_drive(p, cls, [], 2, 50)
        sent = len(rec.starts)
        d.steer(change, FakeWorker(0.0))
        assert stops == ["duration"] and d.changes == [] and len(d.channels) == 2 and len(rec.starts) == sent


def test_aiohttp_pools_hold_the_connections_and_grow_when_users_are_added() -> None:
    async def main() -> list[tuple[int, int]]:
        t = AiohttpTransport(plan(source_ips=("127.0.0.1", "127.0.0.1")), 3)
        await t.open()
        try:
            limits = [(s.connector.limit, s.connector.limit_per_host) for s in t.sessions]  # type: ignore[union-attr]
            t.grow(2)  # (never less than -c)
            t.grow(7)
            return limits + [(s.connector.limit, s.connector.limit_per_host) for s in t.sessions]  # type: ignore[union-attr]
        finally:
            await t.close()

    assert asyncio.run(main()) == [(3, 3), (3, 3), (7, 7), (7, 7)]


# -- the collector refuses what a run cannot take ------------------------------------------------------


def collector(p: Plan, started: bool = True) -> tuple[Collector, Any]:
    mine, theirs = Pipe()
    c = Collector(p, [], mine, make_sinks=lambda plan, totals: [])
    if started:
        c.t0 = perf_counter_ns()
    return c, theirs


def test_the_collector_records_a_change_and_hands_it_on() -> None:
    c, sup = collector(plan(connections=4, duration_s=60.0).validate())
    change = c.steer(users=8)
    assert change["users"] == 8 and change["by"] == "dashboard" and 0 <= change["t"] < 1
    msg = decode(sup.recv_bytes())
    assert isinstance(msg, Steer) and (msg.users, msg.rate, msg.by) == (8, None, "dashboard")
    assert c.changes == [change] and c.shape is not None and c.shape.value_at(10.0) == 8


def test_the_collector_refuses_changes_the_run_cannot_take() -> None:
    p = plan(connections=4, duration_s=60.0).validate()
    c, _ = collector(p, started=False)
    with pytest.raises(PlanError, match="not under way"):
        c.steer(users=3)
    c, _ = collector(p)
    with pytest.raises(PlanError, match="closed-model"):
        c.steer(rate=3.0)
    c.stop_asked = "interrupted"
    with pytest.raises(PlanError, match="not under way"):
        c.steer(users=3)
    c, _ = collector(plan(rate=10.0, duration_s=60.0, llm=LlmSpec(trace_offsets=(0.0, 1.0))).validate())
    with pytest.raises(PlanError, match="trace"):
        c.steer(rate=3.0)
    if port_range() is not None:  # (else only the open-file limit could refuse it)
        c, _ = collector(p)
        with pytest.raises(PlanError, match=r"users 1000000: .* to go higher"):
            c.steer(users=1_000_000)  # more than the box's files (a worker) or ports (an address) hold
    assert c.changes == []


def test_the_collector_refuses_a_change_during_the_warmup() -> None:
    c, _ = collector(plan(connections=4, duration_s=60.0, warmup_s=5.0).validate())
    with pytest.raises(PlanError, match=r"once the warmup is over \(in 5 s\)"):
        c.steer(users=8)
    c.t0 = perf_counter_ns() - 5 * NS  # (the warmup is over)
    assert c.steer(users=8)["t"] >= 0 and len(c.changes) == 1


def test_a_stop_asked_by_someone_is_named_in_meta() -> None:
    c, sup = collector(plan(connections=4, duration_s=60.0).validate())
    assert c.stop_run("interrupted", by="dashboard")
    msg = decode(sup.recv_bytes())
    assert isinstance(msg, Stop) and msg.reason == "interrupted" and c.stopped_by == "dashboard"
    c.stop_run("interrupted", by="someone else")  # (the first one stopped it)
    assert c.stopped_by == "dashboard"
    c, _ = collector(plan(connections=4, duration_s=60.0).validate())
    assert c.stop_run() and c.stopped_by is None
