"""A worker process: one uvloop loop driving its share of connections, shipping a Window every second."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import traceback
from collections import deque
from multiprocessing.connection import Connection
from time import perf_counter_ns

import uvloop

from squall.engine.pacer import make_pacer
from squall.engine.procname import set_process_name
from squall.engine.recorder import NullRecorder, Recorder
from squall.engine.transport import Channel, Interrupted, make_transport
from squall.plan import Plan
from squall.wire import Done, Failed, Hello, Start, Stop, decode, encode

NS = 1_000_000_000
LOOP_PROBE_NS = 10_000_000
START_TIMEOUT_S = 120.0
YIELD_EVERY = 64
MIN_SLEEP_NS = 1_000_000


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
        self.rec = (Recorder if plan.record else NullRecorder)(
            index, len(plan.request.body), llm is not None, llm.goodput if llm else (), plan.open_model
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

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.transport = make_transport(self.plan, self.connections, self.index)
        await self.transport.open()
        started: asyncio.Future[Start] = loop.create_future()
        loop.add_reader(self.ctl.fileno(), self._on_control, started)
        loop.add_signal_handler(signal.SIGTERM, self.stop, "terminated", self.plan.drain_s)
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
        self.rec.fold()  # a little every 10 ms instead of a pause of several ms once a second
        window = self.rec.encode_step()  # likewise: a closed window is encoded one histogram per probe
        if window is not None:
            self.data.send_bytes(encode(window))
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
        self.rec.close_window(self.seq, self.last_ship, t_end, self.inflight)
        self.last_ship = t_end
        self.seq += 1

    # -- load ---------------------------------------------------------------------------------------
    # Every channel runs the same cycle through plain callbacks: _next() picks its next request (closed:
    # right away; open: from the backlog, or it goes idle until the pacer hands it one), on_response or
    # on_failure records it and calls _next() again. The run ends when no channel is busy and none may send.

    async def _drive(self) -> None:
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.channels = [self.transport.channel(self) for _ in range(self.connections)]
        pacer = None
        if self.open_model:
            self.idle.extend(self.channels)
            pacer = asyncio.ensure_future(self._pace())
            pacer.add_done_callback(self._pacer_done)
        else:
            for ch in self.channels:
                self._next(ch)
        self._check_finished()
        try:
            await self.finished
        finally:
            if pacer is not None:
                pacer.cancel()

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
            if self.backlog:
                self._send(ch, self.backlog.popleft())
            else:
                self.idle.append(ch)
                self._check_finished()
        else:  # closed model, inlined: this runs once per request
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

    def on_response(self, ch: Channel, status: int, first: int, nbytes: int) -> None:
        done = perf_counter_ns()
        self.inflight -= 1
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
        self._next(ch)

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self.inflight -= 1
        if ch.start < self.measure_start:
            self.rec.warmup += 1
        elif isinstance(exc, Interrupted):
            self.rec.interrupted += 1
        else:
            self.rec.failure(self.transport.classify(exc))
        self._next(ch)

    async def _pace(self) -> None:
        plan = self.plan
        rate = plan.worker_rate()
        assert rate is not None
        pacer = make_pacer(plan.arrival, plan.rate, self.index, plan.workers, plan.seed, plan.burstiness)  # type: ignore[arg-type]
        t0, t_stop = self.t0, self.t_stop
        burst = 0
        try:
            while not self.stopping:
                due = t0 + pacer.next_send()
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
                        left = max(1, round((t_stop - max(due, self.measure_start)) / NS * rate))
                        self.rec.unsent += left
                        self.stop("duration", plan.drain_s)
                        break
                if not self._take(due):
                    break
                self._dispatch(due)
        finally:
            self.pacing_done = True
            self._check_finished()

    def _dispatch(self, due: int) -> None:
        if self.idle:
            self._send(self.idle.pop(), due)
        elif len(self.backlog) < self.plan.max_backlog:
            self.backlog.append(due)
        elif due >= self.measure_start:
            self.rec.dropped += 1
            if self.budget is not None:
                self.budget += 1  # a dropped send did not use up a request of -n
