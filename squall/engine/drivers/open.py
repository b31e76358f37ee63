"""The open model: sends on a schedule whatever the answers do (OpenDriver)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from squall.engine.drivers.base import NEVER, NS, Driver, sleep_until
from squall.engine.pacer import TracePacer
from squall.engine.schedule import Schedule, make_schedule
from squall.engine.transport.base import Channel
from squall.plan.load import steer_base, steered
from squall.wire import Steer

YIELD_EVERY = 64


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
