"""The Driver every load model is: the channels' shared cycle (record, go again), the catch-up of timed work
on the answer path, and the timer helpers the worker uses too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from squall.engine.budget import Budget
from squall.engine.llm.cancel import canceller
from squall.engine.recorder import Recorder
from squall.engine.transport.base import Abandoned, Channel, Interrupted
from squall.plan.plan import Plan
from squall.wire import Steer

NS = 1_000_000_000
MIN_SLEEP_NS = 1_000_000
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
