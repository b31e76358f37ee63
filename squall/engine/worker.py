"""A worker process: one uvloop loop driving its share of connections, shipping a Window every second."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import signal
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from time import perf_counter_ns

import uvloop

from squall.engine.pacer import make_pacer
from squall.engine.procname import set_process_name
from squall.engine.recorder import NullRecorder, Recorder
from squall.engine.transport import Channel, Interrupted, make_transport
from squall.plan.plan import Plan
from squall.wire import Done, Failed, Hello, Start, Stop, decode, encode

NS = 1_000_000_000
LOOP_PROBE_NS = 10_000_000
START_TIMEOUT_S = 120.0
PRECONNECT_S = 3.0  # at most, before Hello: a target that drops SYNs is met again by the first sends
YIELD_EVERY = 64
MIN_SLEEP_NS = 1_000_000
STEER_NS = 100_000_000  # how often a users shape re-counts its users


def worker_main(plan: Plan, index: int, data: Connection, ctl: Connection) -> None:
    """Process entry point: run the worker, report a crash as Failed instead of a silent death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor owns Ctrl-C and sends Stop
    set_process_name(f"squall-worker{index}")
    try:
        uvloop.run(Worker(plan, index, data, ctl).main())
    except BaseException:
        with contextlib.suppress(OSError):
            data.send_bytes(encode(Failed(index, traceback.format_exc(limit=8))))
        raise SystemExit(1) from None


class Worker:
    """Drives this worker's connections in the closed or open model until its stop rule fires."""

    def __init__(self, plan: Plan, index: int, data: Connection, ctl: Connection) -> None:
        self.plan = plan
        self.index = index
        self.data = data
        self.ctl = ctl
        self.connections = plan.share(plan.connections, index)
        self.budget: int | None = plan.share(plan.requests, index) if plan.requests else None
        llm = plan.llm
        self.journeys = plan.scenario is not None or plan.py is not None  # the transport records
        llm_steps = plan.scenario is not None and any(s.llm for j in plan.scenario.journeys for s in j.steps)
        self.rec = (Recorder if plan.record else NullRecorder)(
            index,
            0 if self.journeys else len(plan.request.body),
            llm is not None or llm_steps,
            llm.goodput if llm else (),
            plan.open_model and not self.journeys,  # a step is sent when its user gets to it
        )
        self.llm = llm is not None
        self.inflight = 0
        self.open_model = plan.open_model
        self.stopping = False
        self.stop_reason = ""
        self.backlog: deque[int] = deque()
        self.idle: list[Channel] = []
        self.pacing_done = False
        self.seq = 0
        self.last_ship = 0
        self.ppid = os.getppid()
        shape = plan.shape
        self.rate_shape = shape if shape is not None and shape.kind == "rate" else None
        self.users_shape = shape if shape is not None and shape.kind == "users" else None
        self.think = plan.think.sampler(random.Random(f"{plan.seed}:think:{index}")) if plan.think else None
        self.active = 0  # closed model: users taking part (a users shape parks the rest)
        self.target_users = self.connections
        self.parked: list[Channel] = []
        plain = not self.llm and not self.journeys and self.think is None and self.users_shape is None
        if not self.open_model and plain:
            self.on_response = self._on_response_closed  # type: ignore[method-assign]

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.transport = make_transport(self.plan, self.connections, self.index, self.rec)
        await self.transport.open()
        started: asyncio.Future[Start] = loop.create_future()
        loop.add_reader(self.ctl.fileno(), self._on_control, started)
        loop.add_signal_handler(signal.SIGTERM, self.stop, "terminated", self.plan.drain_s)
        self.channels = [self.transport.channel(self) for _ in range(self.connections)]
        self.started = started
        preconnect = getattr(self.transport, "preconnect", None)
        if preconnect is not None and self.users_shape is None:
            # Connections are made before t0 (a ramp of users makes its own as its users start). A stop
            # (Ctrl-C, SIGTERM) ends the wait at once; a target that never answers costs a few seconds.
            within = min(self.plan.timeout_s, PRECONNECT_S)
            if self.plan.start_at is not None:
                within = max(0.1, min(within, self.plan.start_at - time.time() - 0.5))
            opening = loop.create_task(preconnect(self.channels, within))
            await asyncio.wait({opening, started}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
        hello = encode(Hello(self.index, os.getpid()))
        self.data.send_bytes(hello)
        self.ctl.send_bytes(hello)
        try:
            start = await asyncio.wait_for(started, START_TIMEOUT_S)
        except (asyncio.CancelledError, TimeoutError):
            # Stopped, or the supervisor died, before the run began: nothing to record.
            self.data.send_bytes(encode(Done(self.index, -1, self.stop_reason or "supervisor lost")))
            loop.remove_reader(self.ctl.fileno())
            await asyncio.wait_for(self.transport.close(), 1.0)
            return
        self.t0 = start.t0
        gc.freeze()  # what setup made lives all run long: keep it out of every later collection
        self.measure_start = self.t0 + int(self.plan.warmup_s * NS)
        if self.journeys:
            self.transport.measure_start = self.measure_start  # type: ignore[attr-defined]
        self.window_ns = int(self.plan.window_s * NS)
        self.t_stop = (
            None if self.plan.duration_s is None else self.measure_start + int(self.plan.duration_s * NS)
        )
        # Windows end on measure_start + seq * window_s in every worker, so a seq is one second everywhere;
        # seq <= 0 is warmup, and the first window ends at the first such boundary after t0.
        self.seq = (self.t0 - self.measure_start) // self.window_ns + 1
        self.last_ship = 0
        await self._sleep_until(self.t0)
        self._at(self.measure_start + self.seq * self.window_ns, self._tick)
        self._at(self.t0 + LOOP_PROBE_NS, self._probe, self.t0 + LOOP_PROBE_NS)
        if self.t_stop is not None and not self.open_model:
            # The open model's pacer ends its own schedule at t_stop (so no due send is cut by a timer).
            self._at(self.t_stop, self.stop, "duration", self.plan.drain_s)
        try:
            await self._drive()
        finally:
            # Whatever happened, what was recorded is shipped; Done only on success (else worker_main
            # sends Failed, and the collector reports the worker as lost).
            self.rec.dropped += sum(1 for t in self.backlog if t >= self.measure_start)
            self.backlog.clear()
            finish = getattr(self.transport, "finish", None)  # py runs: tracemalloc's last word
            if finish is not None:
                finish()
            self._close_window(perf_counter_ns())
            for window in self.rec.flush():
                self.data.send_bytes(encode(window))
            loop.remove_reader(self.ctl.fileno())
        self.data.send_bytes(encode(Done(self.index, self.seq - 1, self.stop_reason or "requests")))
        await asyncio.wait_for(self.transport.close(), 1.0)

    # -- control -------------------------------------------------------------------------------------

    def _on_control(self, started: asyncio.Future[Start]) -> None:
        try:
            msg = decode(self.ctl.recv_bytes())
        except (EOFError, OSError):
            self.loop.remove_reader(self.ctl.fileno())
            if not started.done():
                started.cancel()
            self.stop("supervisor lost", self.plan.drain_s)
            return
        if isinstance(msg, Start) and not started.done():
            started.set_result(msg)
        elif isinstance(msg, Stop):
            if not started.done():
                started.cancel()
            self.stop(msg.reason, msg.drain_s)

    def stop(self, reason: str, drain_s: float) -> None:
        """Stop sending; requests in flight get drain_s to finish, then are cancelled and counted."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        started = getattr(self, "started", None)
        if started is not None and not started.done():  # stopped before the run began
            started.cancel()
        self.loop.call_later(drain_s, self._cancel_all)
        if hasattr(self, "finished"):
            self._check_finished()

    def _cancel_all(self) -> None:
        for ch in getattr(self, "channels", ()):
            if ch.busy:
                ch.abort()

    # -- timing --------------------------------------------------------------------------------------

    def _at(self, t_ns: int, callback: object, *args: object) -> asyncio.TimerHandle:
        return self.loop.call_later(max(0, t_ns - perf_counter_ns()) / NS, callback, *args)  # type: ignore[arg-type]

    async def _sleep_until(self, t_ns: int) -> None:
        # uvloop timers tick in ms: a sleep under ~0.5 ms returns at once and one over 1 ms may end a little
        # early. Sleeping at least MIN_SLEEP_NS (and again if woken early) never sends early and never spins;
        # the cost is up to ~1 ms of schedule lag, and everything due meanwhile goes out in one batch.
        while (left := t_ns - perf_counter_ns()) > 0:
            await asyncio.sleep(max(left, MIN_SLEEP_NS) / NS)

    def _probe(self, due: int) -> None:
        now = perf_counter_ns()
        self.rec.loop_lag((now - due) // 1000)
        # Likewise a closed window is encoded a histogram at a time; a window with many (a scenario's steps)
        # gets up to 1 ms of encoding per probe, so the queue never grows from one second to the next.
        deadline = now + 1_000_000
        while True:
            window = self.rec.encode_step()
            if window is not None:
                self.data.send_bytes(encode(window))
            if not self.rec.closed or perf_counter_ns() >= deadline:
                break
        nxt = due + LOOP_PROBE_NS
        if nxt <= now:
            nxt = now + LOOP_PROBE_NS
        self._at(nxt, self._probe, nxt)

    def _tick(self) -> None:
        now = perf_counter_ns()
        boundary = self.measure_start + self.seq * self.window_ns
        if now < boundary:  # uvloop timers have ms resolution and can fire early: a window must not end early
            self.loop.call_later(MIN_SLEEP_NS / NS, self._tick)
            return
        self._close_window(now)
        if os.getppid() != self.ppid:
            self.stop("supervisor lost", self.plan.drain_s)
        self._at(self.measure_start + self.seq * self.window_ns, self._tick)

    def _close_window(self, now: int) -> None:
        t_end = now - self.t0
        self.rec.close_window(self.seq, self.last_ship, t_end, self.inflight, self.active)
        self.last_ship = t_end
        self.seq += 1

    # -- load ---------------------------------------------------------------------------------------
    # Every channel runs the same cycle through plain callbacks: _next() picks its next request (closed:
    # right away; open: from the backlog, or it goes idle until the pacer hands it one), on_response or
    # on_failure records it and calls _next() again. The run ends when no channel is busy and none may send.

    async def _drive(self) -> None:
        self.finished: asyncio.Future[None] = self.loop.create_future()
        pacer = None
        if self.open_model:
            self.idle.extend(self.channels)
            pacer = asyncio.ensure_future(self._pace())
            pacer.add_done_callback(self._pacer_done)
        elif self.users_shape is not None:
            self.parked.extend(reversed(self.channels))
            self._steer()
        else:
            self.active = len(self.channels)
            for ch in self.channels:
                self._next(ch)
        self._check_finished()
        try:
            await self.finished
        finally:
            if pacer is not None:
                pacer.cancel()

    def _steer(self) -> None:
        """Users shape: bring this worker's active users to its share of the shape's count now.

        New users start at once; surplus users leave as their request in flight ends (see _next).
        """
        if self.stopping:
            return
        total = round(self.users_shape.value_at((perf_counter_ns() - self.t0) / NS))  # type: ignore[union-attr]
        self.target_users = self.plan.share(total, self.index)
        while self.active < self.target_users and self.parked:
            self.active += 1
            self._next(self.parked.pop())
        self.loop.call_later(STEER_NS / NS, self._steer)

    def _again(self, ch: Channel) -> None:
        """After a response or failure: the user thinks first (closed model with --think), then goes on."""
        # (no think once -n is used up: the run ends with the last answer, not after a last pause)
        if self.think is not None and not self.open_model and not self.stopping and self.budget != 0:
            self.loop.call_later(self.think(), self._next, ch)  # type: ignore[operator]
        else:
            self._next(ch)

    def _pacer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.finished.done():
            self.finished.set_exception(task.exception())  # type: ignore[arg-type]

    def _take(self, t_ns: int) -> bool:
        """Whether a request sent (or due) at t_ns may go: False once the request budget is spent."""
        if t_ns >= self.measure_start and self.budget is not None:
            if self.budget <= 0:
                return False
            self.budget -= 1
        return True

    def _send(self, ch: Channel, start: int) -> None:
        ch.start = start
        ch.sent = perf_counter_ns()
        self.inflight += 1
        ch.send()

    def _next(self, ch: Channel) -> None:
        if self.stopping:
            self._check_finished()
        elif self.open_model:
            backlog = self.backlog
            if backlog and backlog[0] < self.measure_start and perf_counter_ns() >= self.measure_start:
                # Sends due in the warmup that never went out (the target was too slow) are left behind:
                # the measured period starts with its own schedule, not with the warmup's queue.
                while backlog and backlog[0] < self.measure_start:
                    backlog.popleft()
            if backlog:
                self._send(ch, backlog.popleft())
            else:
                self.idle.append(ch)
                self._check_finished()
        else:  # closed model, inlined: this runs once per request
            if self.active > self.target_users:  # a users shape is ramping down: this user leaves
                self.active -= 1
                self.parked.append(ch)
                self._check_finished()
                return
            t = perf_counter_ns()
            if self.budget is not None and t >= self.measure_start:
                if self.budget <= 0:
                    self._check_finished()
                    return
                self.budget -= 1
            ch.start = ch.sent = t
            self.inflight += 1
            ch.send()

    def _check_finished(self) -> None:
        if self.inflight or self.finished.done():
            return
        if self.stopping or (self.pacing_done if self.open_model else self.budget == 0):
            self.finished.set_result(None)

    def on_response(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        self.inflight -= 1
        if self.journeys:  # an iteration ended; the transport recorded its steps
            self._again(ch)
            return
        start = ch.start
        if start >= self.measure_start:
            rec = self.rec
            if self.llm:
                rec.answer(status, start, ch.sent, first, done, nbytes, ch.reader, self.open_model)
                ch.reader = None
            else:
                rec.response(status, start, ch.sent, first, done, nbytes)
            if self.open_model:
                rec.schedule_lag((ch.sent - start) // 1000)
        else:
            self.rec.warmup += 1
        self._again(ch)

    def _on_response_closed(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        """on_response for closed-model HTTP runs (the busiest path): _next() inlined."""
        self.inflight -= 1
        start = ch.start
        if start >= self.measure_start:
            self.rec.response(status, start, start, first, done, nbytes)
        else:
            self.rec.warmup += 1
        if self.stopping:
            self._check_finished()
            return
        t = perf_counter_ns()
        if self.budget is not None and t >= self.measure_start:
            if self.budget <= 0:
                self._check_finished()
                return
            self.budget -= 1
        ch.start = ch.sent = t
        self.inflight += 1
        ch.send()

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self.inflight -= 1
        if self.journeys:  # only an interrupted iteration fails; its step counted the interruption
            self._again(ch)
            return
        if ch.start < self.measure_start:
            self.rec.warmup += 1
        elif isinstance(exc, Interrupted):
            self.rec.interrupted += 1
        else:
            self.rec.failure(self.transport.classify(exc))
        self._again(ch)

    async def _pace(self) -> None:
        plan = self.plan
        rate = plan.worker_rate()
        assert rate is not None
        shape = self.rate_shape
        # A rate shape paces at rate 1 in "area" (requests the shape asks for so far), then maps each area
        # to the time the shape reaches it: constant arrivals stay exact, Poisson ones become a true
        # non-homogeneous Poisson process.
        base = 1.0 if shape is not None else plan.rate
        area_offset = 0.0
        if shape is not None and plan.shard is not None and plan.arrival == "constant":
            # Shard i of n follows 1/n of the shape: starting its sends i/n of a send later in area makes
            # the shards' sends interleave into the whole shape's even sequence.
            area_offset = plan.shard[0] / plan.shard[1]
        pacer = make_pacer(plan.arrival, base, self.index, plan.workers, plan.seed, plan.burstiness)  # type: ignore[arg-type]
        t0, t_stop = self.t0, self.t_stop
        if plan.shard is not None and plan.arrival == "constant" and shape is None:
            # Shard i of n runs its own schedule shifted by i sends of the whole run's rate, so the boxes'
            # sends interleave into one even schedule instead of landing together (with --start-at).
            i, n = plan.shard
            t0 += round(i * NS / (n * plan.rate))  # type: ignore[operator]
        burst = 0
        try:
            while not self.stopping:
                if shape is None:
                    due = t0 + pacer.next_send()
                else:
                    at = shape.time_at_area(pacer.next_send() / NS + area_offset)
                    due = t0 + round(at * NS) if at is not None else (t_stop or t0)
                if t_stop is not None and due >= t_stop:
                    # The schedule is over; sends still in the backlog may go out until t_stop itself.
                    await self._sleep_until(t_stop)
                    self.stop("duration", plan.drain_s)
                    break
                if due > perf_counter_ns():
                    burst = 0
                    await self._sleep_until(due)
                    if self.stopping:
                        break
                elif (burst := burst + 1) >= YIELD_EVERY:
                    # Behind schedule: let responses in between dispatches, or a late pacer starves the loop.
                    burst = 0
                    await asyncio.sleep(0)
                    if self.stopping:
                        break
                    if t_stop is not None and perf_counter_ns() >= t_stop:
                        # The run's time is up while sends are still due: squall could not keep the schedule.
                        # Count what it never sent (from the rate; exact for constant arrivals, +-1) and stop.
                        left = max(1, round(self._due_between(max(due, self.measure_start), t_stop)))
                        self.rec.unsent += left
                        self.stop("duration", plan.drain_s)
                        break
                if not self._take(due):
                    break
                self._dispatch(due)
        finally:
            self.pacing_done = True
            self._check_finished()

    def _due_between(self, a_ns: int, b_ns: int) -> float:
        """How many sends this worker's schedule holds between two times (its share of the shape's area)."""
        if self.rate_shape is None:
            return (b_ns - a_ns) / NS * self.plan.worker_rate()  # type: ignore[operator]
        area = self.rate_shape.area
        return (area((b_ns - self.t0) / NS) - area((a_ns - self.t0) / NS)) / self.plan.workers

    def _dispatch(self, due: int) -> None:
        if self.idle:
            self._send(self.idle.pop(), due)
        elif len(self.backlog) < self.plan.max_backlog:
            self.backlog.append(due)
        elif due >= self.measure_start:
            self.rec.dropped += 1
            if self.budget is not None:
                self.budget += 1  # a dropped send did not use up a request of -n
