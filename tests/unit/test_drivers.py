"""Drivers over fake channels: exact counts, the lean closed path, think time, stop, and the open backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from squall.engine.budget import Abort, Budget, Count, Duration, StopRule
from squall.engine.drivers import ClosedDriver, Driver, OpenDriver, UsersDriver, driver_kind
from squall.engine.schedule import Schedule
from squall.engine.transport.base import Channel, Interrupted
from squall.plan.load import Shape, Stage, Think
from squall.plan.plan import Plan, assemble
from squall.plan.specs import LlmSpec, RequestSpec

MS = 1_000_000
NS = 1_000_000_000


class FakeRec:
    """The Recorder calls a driver makes, kept as lists."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, int, int]] = []  # (status, start, sent)
        self.failures: list[str] = []
        self.lags: list[int] = []
        self.readers: list[tuple[Any, bool]] = []  # (the answer's reader, paced) of each LLM answer
        self.warmup = self.interrupted = self.dropped = self.unsent = 0
        self.samples: list[BaseException] = []  # the exceptions handed to internal()

    def response(self, status: int, start: int, sent: int, first: int, done: int, nbytes: int) -> None:
        self.responses.append((status, start, sent))

    def failure(self, kind: str, reader: Any = None) -> None:
        self.failures.append(kind)

    def schedule_lag(self, us: int) -> None:
        self.lags.append(us)

    def internal(self, exc: BaseException, counted: bool = True) -> None:
        if counted:
            self.failures.append("internal")
        self.samples.append(exc)

    def answer(
        self, status: int, start: int, sent: int, first: int, done: int, nin: int, reader: Any, paced: bool
    ) -> None:
        self.responses.append((status, start, sent))
        self.readers.append((reader, paced))


class Owner:
    """Like the worker: channels look up on_response/on_failure on it at every call."""

    on_response: Callable[..., None]
    on_failure: Callable[..., None]


class FakeChannel(Channel):
    """Answers each send after `delay_s` with 200, or fails it with `fail` (the answer never comes inline)."""

    __slots__ = ("delay_s", "fail", "handle", "owner", "sends")

    def __init__(self, owner: Owner, delay_s: float = 0.0, fail: BaseException | None = None) -> None:
        super().__init__()
        self.owner, self.delay_s, self.fail = owner, delay_s, fail
        self.sends = 0
        self.handle: asyncio.TimerHandle | None = None

    def send(self) -> None:
        assert not self.busy, "one request in flight per channel"
        self.busy = True
        self.sends += 1
        self.reader = f"reader{self.sends}"
        self.handle = asyncio.get_running_loop().call_later(self.delay_s, self._answer)

    def _answer(self) -> None:
        self.busy = False
        now = perf_counter_ns()
        if self.fail is not None:
            self.owner.on_failure(self, self.fail)
        else:
            self.owner.on_response(self, 200, now, now, 10)

    def abort(self) -> None:
        if self.busy and self.handle is not None:
            self.handle.cancel()
            self.busy = False
            self.owner.on_failure(self, Interrupted())


def plan(**kw: Any) -> Plan:
    kw.setdefault("workers", 1)
    return assemble(RequestSpec("http://127.0.0.1:1/"), **kw)


def drive(
    p: Plan,
    requests: int | None = None,
    channels: int = 4,
    kind: type[Driver] | None = None,
    warmup_ns: int = 0,
    duration_ns: int | None = None,
    stop_after_s: float | None = None,
    delay_s: float = 0.0,
    fail: BaseException | None = None,
    extra_rules: list[StopRule] | None = None,
    **kw: Any,
) -> tuple[Driver, FakeRec, list[FakeChannel], list[str]]:
    """Run one driver to its end over fake channels (bounded by a 10 s timeout)."""
    rec, stops = FakeRec(), []

    async def main() -> tuple[Driver, list[FakeChannel]]:
        t0 = perf_counter_ns()
        rules: list[StopRule] = [Abort()]
        if duration_ns is not None:
            rules.append(Duration(duration_ns))
        if requests is not None:
            rules.append(Count(requests))
        budget = Budget(rules + (extra_rules or []))
        budget.begin(t0 + warmup_ns)
        owner = Owner()
        chans = [FakeChannel(owner, delay_s, fail) for _ in range(channels)]

        def on_stop(reason: str) -> None:
            if budget.stop(reason):  # as the worker's: the first reason stops the run, later ones are moot
                stops.append(reason)
                d.stop()

        cls = kind or {"closed": ClosedDriver, "users": UsersDriver, "open": OpenDriver}[driver_kind(p)]
        if "schedule" in kw:  # (a factory of the run's t0)
            kw["schedule"] = kw["schedule"](t0)
        d = cls(p, 0, rec, budget, lambda e: type(e).__name__, on_stop, **kw)  # type: ignore[arg-type]
        owner.on_response, owner.on_failure = d.on_response, d.on_failure
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, on_stop, "interrupted")
        d.start(chans, t0)  # type: ignore[arg-type]
        await asyncio.wait_for(d.finished, 10)
        d.close()
        return d, chans

    d, chans = asyncio.run(main())
    return d, rec, chans, stops


def test_closed_sends_exactly_n_on_the_lean_path() -> None:
    for n in (1, 3, 4, 5, 97):
        d, rec, chans, _ = drive(plan(), requests=n)
        assert d.on_response.__name__ == "_on_response_lean"
        assert len(rec.responses) == n == sum(c.sends for c in chans)
        assert d.inflight == 0 and not d.stopping
        assert all(start == sent for _, start, sent in rec.responses)  # closed: sent when it starts


def test_closed_warmup_sends_are_not_recorded_or_counted() -> None:
    d, rec, chans, _ = drive(plan(), requests=20, warmup_ns=30 * MS, delay_s=0.001)
    assert len(rec.responses) == 20
    assert rec.warmup > 0 and sum(c.sends for c in chans) == 20 + rec.warmup
    assert all(start >= d.measure_start for _, start, _ in rec.responses)


def test_think_takes_the_general_path_and_paces_each_user() -> None:
    p = plan(think=Think("uniform", 0.02, 0.02, 0.02))
    t = perf_counter_ns()
    d, rec, chans, _ = drive(p, requests=8, channels=2)
    took = perf_counter_ns() - t
    assert d.on_response.__name__ == "on_response"
    assert len(rec.responses) == 8 and [c.sends for c in chans] == [4, 4]
    assert took >= 3 * 20 * MS  # each user thinks between its 4 requests, not after its last


def test_a_stop_ends_sending_and_waits_for_what_is_in_flight() -> None:
    d, rec, chans, stops = drive(plan(), channels=3, delay_s=0.005, stop_after_s=0.05)
    assert stops == ["interrupted"] and d.stopping
    assert len(rec.responses) == sum(c.sends for c in chans) > 0  # every send answered, none after the stop
    assert not any(c.busy for c in chans)


def test_the_closed_deadline_stops_the_run_by_its_timer() -> None:
    _, rec, _, stops = drive(plan(), channels=2, delay_s=0.002, duration_ns=40 * MS)
    assert stops == ["duration"] and len(rec.responses) > 0


def test_failures_are_classified_and_count_towards_n() -> None:
    _d, rec, _chans, _ = drive(plan(), requests=6, channels=2, fail=ConnectionResetError())
    assert rec.failures == ["ConnectionResetError"] * 6 and rec.responses == []


def test_journeys_record_nothing_themselves() -> None:
    _, rec, chans, _ = drive(plan(), requests=5, channels=2, records=False)
    assert rec.responses == [] and sum(c.sends for c in chans) == 5


def test_a_users_shape_starts_its_users_as_it_rises() -> None:
    shape = Shape("users", (Stage(0.3, 4.0),))
    p = plan(shape=shape, connections=4)
    d, _, chans, _ = drive(p, channels=4, delay_s=0.01, duration_ns=350 * MS)
    assert isinstance(d, UsersDriver)
    assert d.on_response.__name__ == "on_response"
    sends = sorted(c.sends for c in chans)
    assert sends[0] < sends[-1]  # the last user started late, the first early
    assert sends[-1] > 0


def drive_open(
    times_ms: list[int], end_ms: int, **kw: Any
) -> tuple[Driver, FakeRec, list[FakeChannel], list[str]]:
    """An open driver over a schedule of given offsets from t0 (ms) that ends at end_ms."""
    p = kw.pop("p", None) or plan(rate=100.0)

    class Listed:
        def __init__(self) -> None:
            self.left = [t * MS for t in times_ms]

        def next_send(self) -> int:
            return self.left.pop(0) if self.left else 10**15

    def schedule(t0: int) -> Schedule:
        return Schedule(Listed(), t0, t0 + end_ms * MS)

    return drive(p, kind=OpenDriver, duration_ns=end_ms * MS, schedule=schedule, **kw)


def test_open_sends_each_due_time_and_latency_counts_from_it() -> None:
    d, rec, _chans, stops = drive_open([0, 10, 20, 30], 400, channels=2)  # (slack for a busy box)
    starts = [start - d.t0 for _, start, _ in rec.responses]
    assert starts == [0, 10 * MS, 20 * MS, 30 * MS]
    assert all(sent >= start for _, start, sent in rec.responses)
    assert len(rec.lags) == 4 and stops == ["duration"]


def test_open_backlog_holds_sends_while_every_channel_is_busy() -> None:
    # One channel answering in 30 ms, three sends due at once: they go one after another, each from its due.
    d, rec, _chans, _ = drive_open([0, 0, 0], 200, channels=1, delay_s=0.03)
    assert [start - d.t0 for _, start, _ in rec.responses] == [0, 0, 0]
    lags = sorted(rec.lags)
    assert lags[0] < lags[1] and lags[1] >= 29_000 and lags[2] >= 59_000  # us: each waited for the last


def test_open_drops_beyond_the_backlog_and_gives_the_count_back() -> None:
    p = plan(rate=100.0, max_backlog=1)
    d, rec, _chans, _ = drive_open([0, 0, 0, 0, 100], 200, p=p, channels=1, delay_s=0.03, requests=4)
    # Due at 0: one sent, one waits, two dropped (and not counted against -n), so the send at 100 ms goes.
    assert rec.dropped == 2
    assert [start - d.t0 for _, start, _ in rec.responses] == [0, 0, 100 * MS]


def test_open_count_ends_the_schedule() -> None:
    d, rec, _chans, stops = drive_open([0, 5, 10, 15, 20], 1000, channels=2, requests=3)
    assert len(rec.responses) == 3 and stops == []
    assert d.done_sending()


def test_driver_kind() -> None:
    assert driver_kind(plan()) == "closed"
    assert driver_kind(plan(rate=5.0)) == "open"
    assert driver_kind(plan(shape=Shape("users", (Stage(1.0, 2.0),)))) == "users"
    assert driver_kind(plan(rate=5.0, shape=Shape("rate", (Stage(1.0, 2.0),)))) == "open"


def test_a_shape_the_schedule_ends_before_the_deadline_stops_at_the_deadline() -> None:
    shape = Shape("rate", (Stage(0.05, 100.0),))  # 2.5 requests in 50 ms
    p = plan(rate=100.0, shape=shape)
    t = perf_counter_ns()
    _, rec, _, stops = drive(p, channels=2, duration_ns=80 * MS)
    assert stops == ["duration"] and len(rec.responses) == 3
    assert perf_counter_ns() - t >= 80 * MS


class Quota(StopRule):
    """A made-up per-send rule: lets `n` sends go in all (warmup or not), then ends the run."""

    reason = "quota"

    def __init__(self, n: int) -> None:
        self.n = n

    def take(self, t_ns: int) -> bool:
        if self.n <= 0:
            return False
        self.n -= 1
        return True


class Until(StopRule):
    """A made-up rule that ends the run by the clock, `after_ns` after the warmup."""

    reason = "until"

    def __init__(self, after_ns: int) -> None:
        self.after_ns = after_ns

    def begin(self, measure_start: int) -> None:
        self.deadline = measure_start + self.after_ns


def test_a_new_per_send_rule_ends_a_closed_run_on_the_general_path() -> None:
    d, rec, chans, stops = drive(plan(), requests=50, channels=3, extra_rules=[Quota(7)])
    assert d.on_response.__name__ == "on_response"  # the lean path inlines only the count
    assert len(rec.responses) == 7 == sum(c.sends for c in chans) and stops == []
    assert d.budget.reason == "quota" and d.budget.count is not None and d.budget.count.left == 43


def test_a_new_per_send_rule_ends_an_open_schedule() -> None:
    d, rec, _chans, stops = drive_open([0, 5, 10, 15, 20], 1000, channels=2, extra_rules=[Quota(2)])
    assert len(rec.responses) == 2 and stops == [] and d.budget.reason == "quota"


def test_a_new_clock_rule_stops_closed_and_open_runs_with_its_reason() -> None:
    _, rec, _, stops = drive(plan(), channels=2, delay_s=0.002, duration_ns=NS, extra_rules=[Until(40 * MS)])
    assert stops == ["until"] and len(rec.responses) > 0
    _, rec, _, stops = drive(plan(rate=50.0), channels=2, duration_ns=NS, extra_rules=[Until(50 * MS)])
    assert stops == ["until"] and len(rec.responses) == 3  # due at 0, 20 and 40 ms; the schedule ends at 50


def test_an_open_run_records_each_answer_from_its_due_time_with_its_lag() -> None:
    d, rec, _chans, _ = drive_open([0, 10], 40, channels=1)
    assert d.on_response.__name__ == "on_response" and d.response == rec.response
    assert len(rec.lags) == 2 and all(
        lag == (sent - start) // 1000 for lag, (_, start, sent) in zip(rec.lags, rec.responses, strict=True)
    )


def test_an_llm_run_records_each_answer_with_its_reader_once() -> None:
    p = plan(llm=LlmSpec())
    d, rec, chans, _ = drive(p, requests=4, channels=2)
    assert d.on_response.__name__ == "_on_answer"
    assert sorted(rec.readers) == [
        ("reader1", False),
        ("reader1", False),
        ("reader2", False),
        ("reader2", False),
    ]
    assert all(c.reader is None for c in chans)  # let go once recorded
    d, rec, _, _ = drive_open([0, 10], 40, p=plan(rate=100.0, llm=LlmSpec()), channels=1)
    assert rec.readers == [("reader1", True), ("reader2", True)] and len(rec.lags) == 2


class BrokenRec(FakeRec):
    """Every third response raises while it is recorded (a bug), before anything is counted."""

    def response(self, status: int, start: int, sent: int, first: int, done: int, nbytes: int) -> None:
        if (len(self.responses) + len(self.failures)) % 3 == 2:
            raise OverflowError("Integer value out of range")
        super().response(status, start, sent, first, done, nbytes)


class FlakyChannel(FakeChannel):
    """Its first send raises (a bug building the request); later ones go."""

    __slots__ = ()

    def send(self) -> None:
        if self.sends == 0:
            self.sends = -1
            raise ValueError("bad request bytes")
        self.sends = max(self.sends, 0)
        super().send()


def _drive_broken(p: Plan, rec: FakeRec, chans: Callable[[Owner], list[FakeChannel]], n: int) -> Driver:
    async def main() -> Driver:
        t0 = perf_counter_ns()
        budget = Budget([Abort(), Count(n)])
        budget.begin(t0)
        owner = Owner()
        cls = {"closed": ClosedDriver, "open": OpenDriver}[driver_kind(p)]
        d = cls(p, 0, rec, budget, lambda e: type(e).__name__, lambda _r: None)  # type: ignore[arg-type]
        owner.on_response, owner.on_failure = d.on_response, d.on_failure
        d.start(chans(owner), t0)  # type: ignore[arg-type]
        await asyncio.wait_for(d.finished, 10)
        return d

    return asyncio.run(main())


def test_a_recording_that_raises_is_counted_internal_and_the_run_goes_on() -> None:
    for p in (plan(), plan(rate=2000.0)):  # the lean closed path, and the open model's
        rec = BrokenRec()
        d = _drive_broken(p, rec, lambda o: [FakeChannel(o) for _ in range(2)], 12)
        assert len(rec.responses) == 8 and rec.failures == ["internal"] * 4  # each request counted once
        assert d.inflight == 0 and all(isinstance(e, OverflowError) for e in rec.samples)


def test_a_send_that_raises_is_counted_internal_and_never_hangs() -> None:
    for p in (plan(), plan(rate=2000.0)):
        rec = FakeRec()
        d = _drive_broken(p, rec, lambda o: [FlakyChannel(o) for _ in range(3)], 9)
        assert rec.failures == ["internal"] * 3 and len(rec.responses) == 6
        assert d.inflight == 0 and [type(e) for e in rec.samples] == [ValueError] * 3


def test_a_classification_that_raises_is_counted_internal() -> None:
    rec = FakeRec()

    def classify(exc: BaseException) -> str:
        raise KeyError(exc)

    async def main() -> None:
        t0 = perf_counter_ns()
        budget = Budget([Abort(), Count(4)])
        budget.begin(t0)
        owner = Owner()
        d = ClosedDriver(plan(), 0, rec, budget, classify, lambda _r: None)  # type: ignore[arg-type]
        owner.on_response, owner.on_failure = d.on_response, d.on_failure
        d.start([FakeChannel(owner, fail=ConnectionResetError()) for _ in range(2)], t0)  # type: ignore[list-item]
        await asyncio.wait_for(d.finished, 10)

    asyncio.run(main())
    assert rec.failures == ["internal"] * 4


# -- catching up from the answer path (the loop's timers starved: the test never yields) ----------------


class HeldChannel(Channel):
    """A channel the test answers itself: a send only marks it busy and notes when it was sent."""

    __slots__ = ("starts",)

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[int] = []

    def send(self) -> None:
        self.busy = True
        self.starts.append(self.start)

    def abort(self) -> None:
        self.busy = False


def starved(
    p: Plan, hook: Callable[[int], int], kind: type[Driver], answers: int, past_ns: int = 0
) -> tuple[Driver, list[HeldChannel], list[str]]:
    """A driver whose run began `past_ns` ago, its one channel answered `answers` times in a row (while it
    has a request in flight) without the loop ever running a timer."""
    stops: list[str] = []

    async def main() -> tuple[Driver, list[HeldChannel]]:
        t0 = perf_counter_ns() - past_ns
        budget = Budget([Abort(), Duration(int(p.stop.duration_s * NS))])  # type: ignore[operator]
        budget.begin(t0)

        def on_stop(reason: str) -> None:  # (the worker's stop: the first reason stands)
            if budget.stop(reason):
                stops.append(reason)
                d.stop()

        d = kind(p, 0, FakeRec(), budget, str, on_stop)  # type: ignore[arg-type]
        d.on_due = hook
        ch = HeldChannel()
        d.start([ch], t0)
        if isinstance(d, OpenDriver):
            assert d.pacer is not None
            d.pacer.cancel()  # (never ran: the test feeds the backlog itself)
            d.backlog.extend(t0 + k for k in range(answers))
            d.idle.clear()
            d._send(ch, t0)
        for _ in range(answers):
            if not ch.busy:
                break
            ch.busy = False
            now = perf_counter_ns()
            d.on_response(ch, 200, now, now, 10)
        d.close()
        return d, [ch]

    d, chans = asyncio.run(main())
    return d, chans, stops


def test_the_answer_path_asks_the_worker_when_due_and_not_before() -> None:
    calls: list[int] = []

    def always(t: int) -> int:  # due again at once: asked at every send
        calls.append(t)
        return t

    d, chans, _ = starved(plan(duration_s=60.0), always, ClosedDriver, 50)
    assert d.on_response.__name__ == "_on_response_lean"
    assert len(calls) == 51 == chans[0].starts.__len__()  # the first send (due from t0 on) and 50 more
    assert calls == sorted(calls)

    calls.clear()

    def once(t: int) -> int:  # nothing more due: never asked again
        calls.append(t)
        return 1 << 62

    d, chans, _ = starved(plan(duration_s=60.0, think=None), once, ClosedDriver, 50)
    assert len(calls) == 1 and len(chans[0].starts) == 51


def test_the_closed_deadline_stops_from_the_answer_path_when_no_timer_runs() -> None:
    seen: list[int] = []
    hook = lambda t: seen.append(t) or t + 1  # noqa: E731
    d, chans, stops = starved(plan(duration_s=1.0), hook, ClosedDriver, 50, past_ns=2 * NS)
    # The deadline passed before the first send: the worker's window is asked first, then the run stops,
    # and not one request goes.
    assert stops == ["duration"] and d.stopping and chans[0].starts == [] and len(seen) == 1
    for kind in (ClosedDriver, UsersDriver):
        shape = Shape("users", (Stage(0.0, 1.0),)) if kind is UsersDriver else None
        p = plan(duration_s=1.0, shape=shape)
        d, chans, stops = starved(p, hook, kind, 50, past_ns=2 * NS)
        assert stops == ["duration"] and chans[0].starts == []


def test_the_open_backlog_catches_up_and_sends_nothing_past_the_deadline() -> None:
    calls: list[int] = []

    def always(t: int) -> int:
        calls.append(t)
        return t

    p = plan(rate=1000.0, duration_s=60.0)
    d, chans, stops = starved(p, always, OpenDriver, 20)
    assert len(chans[0].starts) == 21 and len(calls) == 20  # (the first send came from the test itself)
    assert stops == []  # (the open model's pacer keeps the deadline)

    calls.clear()
    d, chans, stops = starved(p, always, OpenDriver, 20, past_ns=61 * NS)
    assert len(chans[0].starts) == 1 and len(calls) == 1  # past the deadline the backlog waits
    assert isinstance(d, OpenDriver) and d.idle == chans and stops == []
    assert d.rec.dropped == 20  # type: ignore[attr-defined]  # the backlog never sent: counted at close


def test_a_users_ramp_keeps_its_shape_from_the_answer_path_when_no_timer_runs() -> None:
    shape = Shape("users", (Stage(0.0, 1.0), Stage(0.3, 4.0)))  # 1 user at once, 4 after 0.3 s
    p = plan(shape=shape, connections=4, duration_s=60.0)

    async def main() -> tuple[UsersDriver, list[HeldChannel], int]:
        t0 = perf_counter_ns()
        budget = Budget([Abort(), Duration(60 * NS)])
        budget.begin(t0)
        d = UsersDriver(p, 0, FakeRec(), budget, str, lambda reason: None)  # type: ignore[arg-type]
        chans = [HeldChannel() for _ in range(4)]
        d.start(chans, t0)  # type: ignore[arg-type]
        assert d.active == 1
        cap, answers = t0 + 10 * NS, 0
        while d.active < 4 and perf_counter_ns() < cap:  # (no await: the steering timer never runs)
            for ch in chans:
                if ch.busy:
                    ch.busy = False
                    now = perf_counter_ns()
                    d.on_response(ch, 200, now, now, 10)
                    answers += 1
        d.stop()
        return d, chans, answers

    d, chans, answers = asyncio.run(main())
    assert d.active == 4 and all(ch.starts for ch in chans)
    assert answers > 0
