"""Load models as drivers: closed (each user sends again when answered), user ramp, and open (a schedule).

Every channel runs the same cycle through plain callbacks: the driver picks its next request (closed: right
away, or after the user's think time; open: from the backlog, or it goes idle until the schedule hands it
one), on_response or on_failure records it and asks the driver again. The run ends (`finished`) when no
channel is busy and none may send.

Timers run late under a steady stream of answers: libuv reads up to 1,024 events per epoll_wait and calls it
again, up to 48 times, while each call comes back full, before it runs any timer; from about 3,000 busy
connections a worker that always has answers waiting runs its timers only after 49,152 of them. So the paths
that take the clock for a send also compare it with `due`, and past it call `catch_up`, which does what the
timers would have done by then (the worker's window and the deadline); the timers stay for an idle loop.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from squall.engine.budget import Budget
from squall.engine.llm.cancel import canceller
from squall.engine.pacer import TracePacer
from squall.engine.recorder import Recorder
from squall.engine.schedule import Schedule, make_schedule
from squall.engine.transport.base import Abandoned, Channel, Interrupted
from squall.plan.load import steer_base, steered
from squall.plan.plan import Plan
from squall.wire import Steer

NS = 1_000_000_000
MIN_SLEEP_NS = 1_000_000
YIELD_EVERY = 64
RECOUNT_NS = 100_000_000  # how often a users shape re-counts its users
INTERNAL_PAUSE_S = 0.05  # a channel whose send raised waits this long to go again (never a busy loop)
NEVER = 1 << 62  # a perf_counter time no run reaches


def nothing_due(t_ns: int) -> int:
    """The worker's catch-up hook until one is given: nothing is ever due."""
    return NEVER


def at(loop: asyncio.AbstractEventLoop, t_ns: int, callback: Any, *args: Any) -> asyncio.TimerHandle:
    """Call `callback(*args)` at perf_counter time t_ns (at once if it is past)."""
    return loop.call_later(max(0, t_ns - perf_counter_ns()) / NS, callback, *args)


async def sleep_until(t_ns: int) -> None:
    """Sleep until perf_counter time t_ns, never waking before it."""
    # uvloop timers tick in ms: a sleep under ~0.5 ms returns at once and one over 1 ms may end a little
    # early. Sleeping at least MIN_SLEEP_NS (and again if woken early) never sends early and never spins;
    # the cost is up to ~1 ms of schedule lag, and everything due meanwhile goes out in one batch.
    while (left := t_ns - perf_counter_ns()) > 0:
        await asyncio.sleep(max(left, MIN_SLEEP_NS) / NS)


class Driver:
    """Keeps one worker's channels sending under one load model; the channels report to it."""

    paced = False  # sends have an intended time (the open model): latency counts from it, lag is recorded

    def __init__(
        self,
        plan: Plan,
        index: int,
        rec: Recorder,
        budget: Budget,
        classify: Callable[[BaseException], str],
        on_stop: Callable[[str], None],
        records: bool = True,
    ) -> None:
        self.plan = plan
        self.index = index
        self.t0 = 0  # the run's t0 and the warmup's end, once start() is called
        self.measure_start = 0
        self.rec = rec
        # Bound once: the per-response paths call these without a lookup on the recorder.
        self.response = rec.response
        self.schedule_lag = rec.schedule_lag
        self.budget = budget
        self.count = budget.count  # (the lean closed path reads its `left` itself)
        self.classify = classify
        self.on_stop = on_stop  # the worker's stop(reason): drains and ends the run
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.inflight = 0
        self.active = 0  # users taking part (a users shape parks the rest)
        self.stopping = False
        self.channels: list[Channel] = []
        # The worker's own timed work (closing and shipping windows), run from the answer path once the
        # clock passes `due`; it returns when it is next due. `due` stays NEVER until start().
        self.on_due: Callable[[int], int] = nothing_due
        self.due = NEVER
        # The deadline the answer path enforces (the closed models; the open model's pacer keeps its own).
        self.ends_at = NEVER
        # What a measured answer records: an HTTP response (on_response), an LLM answer, or nothing here
        # (journeys and py runs record in the transport). Each is one method, so a response costs one call.
        self.records = records
        self.canceller = canceller(plan, index, self.loop)  # --cancel-after/--cancel-rate; else None
        # The dashboard's changes so far, (s since t0, users or rate), as plan.load.steered takes them.
        self.changes: list[tuple[float, float]] = []
        if not records:
            self.on_response = self._on_response_unrecorded  # type: ignore[method-assign]
        elif plan.llm is not None:
            self.answer = rec.answer
            self.on_response = self._on_answer  # type: ignore[method-assign]

    def start(self, channels: list[Channel], t0: int) -> None:
        """Begin sending on `channels` at the run's t0 (the budget is placed in time: Budget.begin)."""
        self.channels = channels
        if self.canceller is not None:
            for ch in channels:
                ch.canceller = self.canceller
        self.t0 = t0
        self.measure_start = self.budget.measure_start
        self.due = t0  # (the first send's check asks the worker when it is next due)

    def catch_up(self, t: int) -> None:
        """Run what fell due by `t` (the clock read for a send): the worker's timed work first (a window
        that ended closes with what was answered so far), then the deadline, which stops the run; every
        answer after it is recorded as during the drain, and no send goes."""
        nxt = self.on_due(t)
        ends_at = self.ends_at
        if ends_at != NEVER and not self.stopping:
            if t >= ends_at:
                self.on_stop(self.budget.over(ends_at))
            elif ends_at < nxt:
                nxt = ends_at
        self.due = nxt

    def stopped_by_due(self, t: int) -> bool:
        """catch_up(t) for a send about to go; True (and the run checked for its end) when that stopped it."""
        self.catch_up(t)
        if self.stopping:
            self.check_finished()
            return True
        return False

    def again(self, ch: Channel) -> None:
        """After a response or failure: the channel's next send, a pause first, or rest."""
        raise NotImplementedError

    def steer(self, change: Steer, worker: Any) -> None:
        """From `change.t` on, run at the change's users (closed) or rate (open) instead of the rest of the
        plan's load; `worker` makes more channels when users grow past the ones it has."""
        raise NotImplementedError

    def stop(self) -> None:
        """Send no more; the run finishes when what is in flight has ended."""
        self.stopping = True
        self.check_finished()

    def close(self) -> None:
        """The run is over: let go of what is still pending."""

    def done_sending(self) -> bool:
        """Whether no channel may send again, stop or not."""
        return self.budget.spent

    def check_finished(self) -> None:
        if self.inflight or self.finished.done():
            return
        if self.stopping or self.done_sending():
            self.finished.set_result(None)

    def on_response(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        """An HTTP response: record it (from its intended send, with the lag, when paced), then go again."""
        self.inflight -= 1
        start = ch.start
        if start >= self.measure_start:
            try:
                self.response(status, start, ch.sent, first, done, nbytes)
            except Exception as e:
                self.rec.internal(e)
            if self.paced:
                self._lag(ch.sent - start)
        else:
            self.rec.warmup += 1
        self.again(ch)

    def _on_answer(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        """An LLM answer: record the response and its stream (the reader is let go), then go again."""
        self.inflight -= 1
        start = ch.start
        if start >= self.measure_start:
            try:
                self.answer(status, start, ch.sent, first, done, nbytes, ch.reader, self.paced)
            except Exception as e:  # (the response was not counted: LlmRecorder.answer says why)
                self.rec.internal(e)
            if self.paced:
                self._lag(ch.sent - start)
            ch.reader = None
        else:
            self.rec.warmup += 1
        self.again(ch)

    def _lag(self, lag_ns: int) -> None:
        try:
            self.schedule_lag(lag_ns // 1000)
        except Exception as e:  # (the request is counted already)
            self.rec.internal(e, counted=False)

    def _on_response_unrecorded(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        self.inflight -= 1
        self.again(ch)

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self.inflight -= 1
        if self.records:  # (an iteration fails only when interrupted; its step counted that)
            if ch.start < self.measure_start:
                self.rec.warmup += 1
            elif isinstance(exc, Interrupted):
                self.rec.interrupted += 1
            elif isinstance(exc, Abandoned):  # (--cancel-*: neither ok nor an error)
                try:
                    self.rec.abandoned(ch.start, ch.sent, ch.reader, self.paced)
                except Exception as e:
                    self.rec.internal(e)
                ch.reader = None
            else:
                try:
                    kind = self.classify(exc)
                except Exception as e:
                    self.rec.internal(e)
                else:
                    self.rec.failure(kind, ch.reader)
        self.again(ch)

    def send(self, ch: Channel) -> None:
        """`ch.send()`, counted in flight; a send that raises (a bug) is counted `internal` and the channel
        goes again after a pause, so one bad request never ends the worker nor spins its loop."""
        self.inflight += 1
        try:
            ch.send()
        except Exception as e:
            ch.busy = False
            self.rec.internal(e)
            # Still counted in flight while it rests, so the run cannot finish past a send it still owes.
            self.loop.call_later(INTERNAL_PAUSE_S, self._rested, ch)

    def _rested(self, ch: Channel) -> None:
        self.inflight -= 1
        self.again(ch)


class ClosedDriver(Driver):
    """Every connection is a user that sends again as soon as answered (after --think, if given)."""

    lean = True  # a plain HTTP run takes the lean callback below

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        think = self.plan.load.think
        self.think: Callable[[], float] | None = None
        if think is not None:
            self.think = think.sampler(random.Random(f"{self.plan.seed}:think:{self.index}"))  # type: ignore[assignment]
        plain = self.records and self.plan.llm is None
        if self.lean and self.think is None and plain and self.budget.counted_only:
            self.on_response = self._on_response_lean  # type: ignore[method-assign]
        # Users beyond `target` leave as their request ends (`_leave_or_next`: a users shape, or once
        # steered); `parked` are the channels of users not taking part.
        self.shape = self.plan.load.shape
        self.target = 0
        self.parked: list[Channel] = []

    def start(self, channels: list[Channel], t0: int) -> None:
        super().start(channels, t0)
        deadline = self.budget.deadline
        if deadline is not None:
            self.ends_at = deadline  # (checked by every send; the timer is for a quiet loop)
            at(self.loop, deadline, self.on_stop, self.budget.over(deadline))
        self._enter(channels)
        self.check_finished()

    def _enter(self, channels: list[Channel]) -> None:
        self.active = self.target = len(channels)
        for ch in channels:
            self._next(ch)

    def again(self, ch: Channel) -> None:
        # (no think once -n is used up: the run ends with the last answer, not after a last pause)
        if self.think is not None and not self.stopping and not self.budget.spent:
            self.loop.call_later(self.think(), self._thought, ch)
        else:
            self._next(ch)

    def _thought(self, ch: Channel) -> None:
        self._next(ch)  # (looked up now: a steer during the pause may have made this user leave)

    def _next(self, ch: Channel) -> None:
        if self.stopping:
            self.check_finished()
            return
        t = perf_counter_ns()
        if t >= self.due and self.stopped_by_due(t):
            return
        if not self.budget.take(t):
            self.check_finished()
            return
        ch.start = ch.sent = t
        self.send(ch)

    def _leave_or_next(self, ch: Channel) -> None:
        """_next, unless this worker has more users than its target: then this one leaves (parked)."""
        if self.active > self.target and not self.stopping:
            self.active -= 1
            self.parked.append(ch)
            self.check_finished()
            return
        ClosedDriver._next(self, ch)

    def steer(self, change: Steer, worker: Any) -> None:
        """From now on this worker's share of `change.users` take part: parked users start, more channels are
        made when they are not enough, and surplus users leave as their request in flight ends."""
        if change.users is None or self.stopping or self.finished.done():
            return
        if self._next != self._leave_or_next:
            # The first change: every later answer takes the general path (the lean one cannot park).
            self._next = self._leave_or_next  # type: ignore[method-assign]
            if self.on_response == self._on_response_lean:
                self.on_response = super().on_response  # type: ignore[method-assign]
                worker.on_response = self.on_response
        self.changes.append((change.t / NS, float(change.users)))
        self.shape = steered(self.plan.load.shape, *steer_base(self.plan.load), self.changes)
        more = self.plan.spread.share(change.users, self.index) - len(self.channels)
        if more > 0:  # (new users connect on their first send)
            new = [worker.transport.channel(worker) for _ in range(more)]
            if self.canceller is not None:
                for ch in new:
                    ch.canceller = self.canceller
            self.channels.extend(new)  # (the worker's list too: a stop's drain aborts them)
            grow = getattr(worker.transport, "grow", None)  # (a pooled transport: room for them)
            if grow is not None:
                grow(len(self.channels))
            self.parked[:0] = reversed(new)  # (they start after the parked users who have a connection)
        self._recount(perf_counter_ns())

    def _recount(self, now: int) -> None:
        """Bring this worker's active users to its share of the shape's count at `now`: new users start at
        once, surplus users leave as their request in flight ends (see _leave_or_next)."""
        total = round(self.shape.value_at((now - self.t0) / NS))  # type: ignore[union-attr]
        self.target = self.plan.spread.share(total, self.index)
        while self.active < self.target and self.parked:
            self.active += 1
            self._next(self.parked.pop())

    def _on_response_lean(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        """on_response for closed-model HTTP runs (the busiest path): record, Budget.take and the next send
        inlined, with no call, allocation or attribute lookup more than they need."""
        self.inflight -= 1
        start = ch.start
        if start >= self.measure_start:
            try:
                self.response(status, start, start, first, done, nbytes)
            except Exception as e:
                self.rec.internal(e)
        else:
            self.rec.warmup += 1
        if self.stopping:
            self.check_finished()
            return
        t = perf_counter_ns()
        if t >= self.due and self.stopped_by_due(t):  # (one compare per answer: see the module's docstring)
            return
        count = self.count
        # Count.take, inlined: this path is taken only when the budget's per-send rules are the abort (which
        # sets self.stopping, checked above) and the count; any other rule goes through Budget.take.
        if count is not None and t >= self.measure_start:
            if count.left <= 0:
                self.check_finished()
                return
            count.left -= 1
        ch.start = ch.sent = t
        self.inflight += 1
        try:
            ch.send()
        except Exception as e:  # (Driver.send, inlined)
            ch.busy = False
            self.rec.internal(e)
            self.loop.call_later(INTERNAL_PAUSE_S, self._rested, ch)


class UsersDriver(ClosedDriver):
    """A users shape: the closed model with this worker's share of the shape's users taking part."""

    lean = False
    _next = ClosedDriver._leave_or_next

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.next_recount = NEVER  # when the users are next counted again (perf_counter ns), once started

    def _enter(self, channels: list[Channel]) -> None:
        self.parked.extend(reversed(channels))
        self.next_recount = self.t0
        self._recount_timer()

    def catch_up(self, t: int) -> None:
        """As Driver.catch_up; the users are counted again too when that fell due (a ramp keeps its shape
        while the loop's timers run late)."""
        super().catch_up(t)
        if t >= self.next_recount and not self.stopping:
            self._recount(t)
        if self.next_recount < self.due:
            self.due = self.next_recount

    def _recount_timer(self) -> None:
        if self.stopping:
            return
        now = perf_counter_ns()
        if now >= self.next_recount:  # (else the answer path re-counted since: wait for the next turn)
            self._recount(now)
        self.loop.call_later(max(self.next_recount - now, MIN_SLEEP_NS) / NS, self._recount_timer)

    def _recount(self, now: int) -> None:
        self.next_recount = now + RECOUNT_NS  # (first: a new user's send may catch up, and must not recount)
        super()._recount(now)


class OpenDriver(Driver):
    """Sends on a schedule whatever the answers do; a send due while every channel is busy waits in a backlog
    (latency still counts from when it was due), and one beyond the backlog is dropped and counted."""

    paced = True

    def __init__(self, *args: Any, schedule: Schedule | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schedule = schedule  # made at start() unless given
        self.backlog: deque[int] = deque()
        self.idle: list[Channel] = []
        self.pacing_done = False
        self.pacer: asyncio.Future[None] | None = None
        self.backlog_ends = NEVER  # the deadline, once placed: no send from the backlog past it
        # A trace: the k-th send takes line k's prompt (from the source, as it goes out), so a due that never
        # goes out (dropped, or left in the warmup) takes its number all the same, in its place: after the
        # sends before it (`owed[i]`: the numbers to skip once backlog[i] has gone), and on the loop (a
        # transport may take the number in a task it starts). `skip` is the source's take().
        self.skip: Callable[[], object] | None = None
        self.owed: deque[int] = deque()
        self.pacing = False  # the pacer has begun (it draws dues from the schedule)
        self.resteer = False  # a steer cancelled the pacer: it goes on under the new schedule
        self.pending: int | None = None  # the due the pacer drew and waits for (not sent yet)

    def start(self, channels: list[Channel], t0: int) -> None:
        super().start(channels, t0)
        if self.plan.llm is not None and self.plan.llm.trace_offsets and channels:
            source = getattr(channels[0], "source", None)  # (an LlmSource, or a user's, which holds it)
            source = source if hasattr(source, "take") else getattr(source, "source", None)
            self.skip = getattr(source, "take", None)
        if self.budget.deadline is not None:
            self.backlog_ends = self.budget.deadline
        if self.schedule is None:
            self.schedule = make_schedule(self.plan, self.index, t0, self.budget.deadline)
        self.idle.extend(channels)
        self.pacer = asyncio.ensure_future(self._pace())
        self.pacer.add_done_callback(self._pacer_done)
        self.check_finished()

    def close(self) -> None:
        if self.pacer is not None:
            self.pacer.cancel()
        self.rec.dropped += sum(1 for t in self.backlog if t >= self.measure_start)
        self.backlog.clear()
        self.owed.clear()

    def done_sending(self) -> bool:
        return self.pacing_done

    def again(self, ch: Channel) -> None:
        if self.stopping:
            self.check_finished()
            return
        backlog = self.backlog
        if backlog and backlog[0] < self.measure_start and perf_counter_ns() >= self.measure_start:
            # Sends due in the warmup that never went out (the target was too slow) are left behind:
            # the measured period starts with its own schedule, not with the warmup's queue.
            while backlog and backlog[0] < self.measure_start:
                backlog.popleft()
                if self.skip is not None:
                    self._skip(1 + self.owed.popleft())
        if backlog:
            # Sending from the backlog is the closed model's cycle: answers keep coming, timers run late.
            t = perf_counter_ns()
            if t >= self.due and self.stopped_by_due(t):
                return
            if t >= self.backlog_ends:
                # Past the deadline nothing more goes; the pacer stops the run and counts what was due.
                self.idle.append(ch)
                return
            ch.start = backlog.popleft()
            ch.sent = t
            self.send(ch)
            if self.skip is not None:
                self._skip(self.owed.popleft())
        else:
            self.idle.append(ch)
            self.check_finished()

    def _send(self, ch: Channel, due: int) -> None:
        ch.start = due
        ch.sent = perf_counter_ns()
        self.send(ch)

    def _dispatch(self, due: int) -> None:
        if self.idle:
            self._send(self.idle.pop(), due)
        elif len(self.backlog) < self.plan.load.max_backlog:
            self.backlog.append(due)
            if self.skip is not None:
                self.owed.append(0)
        else:
            if self.skip is not None:
                if self.owed:
                    self.owed[-1] += 1  # (its number comes after those of the sends waiting)
                else:
                    self._skip(1)
            if due >= self.measure_start:
                self.rec.dropped += 1
                self.budget.give_back(due)  # a dropped send did not use up a request of -n

    def _skip(self, n: int) -> None:
        """Take `n` numbers from the source once the sends already made have taken theirs."""
        if n:
            self.loop.call_soon(self._take, n)

    def _take(self, n: int) -> None:
        for _ in range(n):
            self.skip()  # type: ignore[misc]

    def _pacer_done(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.finished.done():
            self.finished.set_exception(task.exception())  # type: ignore[arg-type]

    def steer(self, change: Steer, worker: Any) -> None:
        """From `change.t` on, send at `change.rate` (this worker's share): the pacer starts again on the new
        schedule, which keeps the sends due before the change and goes on from the same count after it."""
        schedule = self.schedule
        if change.rate is None or self.stopping or self.pacing_done or self.finished.done():
            return
        if schedule is None or isinstance(schedule.pacer, TracePacer):
            return
        self.changes.append((change.t / NS, change.rate))
        if not self.pacing:  # (the pacer has not drawn a due yet: it starts on the new schedule)
            self._resteer(None)
        elif not self.resteer:
            # Subtleness ahead: the pacer is waiting at one of its awaits, with `pending` drawn and not sent;
            # the cancel lands there, and _pace (not a new task) makes the new schedule and goes on.
            self.resteer = True
            self.pacer.cancel()  # type: ignore[union-attr]

    def _resteer(self, pending: int | None) -> int | None:
        """Follow the shape the changes make from now on; `pending`: the due the pacer drew and did not send.
        Returns it when it was due before the newest change (it keeps its time), else None (under the new
        shape it is due again, at its count)."""
        load = self.plan.load
        kind, rate = steer_base(load)
        changed = steered(load.shape, kind, rate, self.changes)
        assert changed is not None and self.schedule is not None
        keep = pending is not None and pending < self.t0 + round(self.changes[-1][0] * NS)
        self.schedule = self.schedule.steer(changed, rate, again=pending is not None and not keep)
        return pending if keep else None

    async def _pace(self) -> None:
        self.pacing = True
        budget = self.budget
        deadline = budget.deadline
        time_up = "" if deadline is None else budget.over(deadline)
        # The abort is asked as self.stopping (checked after every await, so it holds at each take); the
        # budget is asked per send only when it has other rules (-n).
        take = budget.take if len(budget.takers) > 1 else None
        first: int | None = None
        try:
            while True:
                try:
                    await self._follow(first, deadline, time_up, take)
                    return
                except asyncio.CancelledError:
                    if not self.resteer or self.stopping:
                        raise
                    self.resteer = False
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    first = self._resteer(self.pending)
        finally:
            self.pacing_done = True
            self.check_finished()

    async def _follow(
        self, first: int | None, deadline: int | None, time_up: str, take: Callable[[int], bool] | None
    ) -> None:
        """Dispatch the schedule's sends as they fall due (`first`, if given, before its own) until it is
        over, the run stops or a steer cancels it; before each await, `pending` is the due drawn, unsent."""
        schedule = self.schedule
        assert schedule is not None
        # Schedule.next_due, inlined: without a shape `step` is the pacer's own next_send.
        step, origin, until = schedule.step, schedule.origin, schedule.until
        burst = 0
        while not self.stopping:
            if first is None:
                due = origin + step()
            else:
                due, first = first, None
            if due >= until:
                # The schedule is over; sends still in the backlog may go out until the deadline itself.
                self.pending = due
                if deadline is not None:
                    await sleep_until(deadline)
                    self.on_stop(time_up)
                elif self.changes:  # steered to rate 0 with no deadline: paused until a change or a stop
                    await self.loop.create_future()
                break
            if due > perf_counter_ns():
                burst = 0
                self.pending = due
                await sleep_until(due)
                if self.stopping:
                    break
            elif (burst := burst + 1) >= YIELD_EVERY:
                # Behind schedule: let responses in between dispatches, or a late pacer starves the loop.
                burst = 0
                self.pending = due
                await asyncio.sleep(0)
                if self.stopping:
                    break
                if deadline is not None and perf_counter_ns() >= deadline:
                    # The run's time is up while sends are still due: squall could not keep the schedule.
                    # Count what it never sent (from the rate; exact for constant arrivals, +-1) and stop.
                    left = schedule.due_between(max(due, self.measure_start), deadline)
                    self.rec.unsent += max(1, round(left))
                    self.on_stop(time_up)
                    break
            if take is not None and not take(due):
                break
            self._dispatch(due)


DRIVERS: dict[str, type[Driver]] = {"closed": ClosedDriver, "users": UsersDriver, "open": OpenDriver}


def driver_kind(plan: Plan) -> str:
    """Which load model the plan asks for: open (a rate), users (a users shape) or closed."""
    if plan.open_model:
        return "open"
    return "users" if plan.load.shape is not None and plan.load.shape.kind == "users" else "closed"
