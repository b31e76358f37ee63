"""The closed model: each user sends again when answered (ClosedDriver), and a users shape ramping them
(UsersDriver)."""

from __future__ import annotations

import random
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from squall.engine.drivers.base import INTERNAL_PAUSE_S, MIN_SLEEP_NS, NEVER, NS, Driver, at
from squall.engine.transport.base import Channel
from squall.plan.load import steer_base, steered
from squall.wire import Steer

RECOUNT_NS = 100_000_000  # how often a users shape re-counts its users


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
        if t >= self.due and self.stopped_by_due(t):  # (one compare per answer: see the package's docstring)
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
