"""A worker process: one uvloop loop driving its share of connections, shipping a Window every second."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from time import perf_counter_ns

import uvloop

from squall.engine.budget import make_budget
from squall.engine.drivers import DRIVERS, NEVER, at, driver_kind, sleep_until
from squall.engine.limits import raise_nofile
from squall.engine.recorder import NullRecorder, Recorder
from squall.engine.transport.base import Channel
from squall.engine.workload import make_sender
from squall.engine.workload.base import Sender
from squall.plan.plan import Plan
from squall.procname import set_process_name
from squall.units import PlanError
from squall.wire import Done, Failed, Hello, Start, Steer, Stop, Window, clamp_window, decode, encode

NS = 1_000_000_000
LOOP_PROBE_NS = 10_000_000
START_TIMEOUT_S = 120.0
PRECONNECT_S = 3.0  # at most, before Hello: a target that drops SYNs is met again by the first sends
MIN_SLEEP_NS = 1_000_000
ENCODE_SLICE_NS = 1_000_000  # at most this much encoding per probe or catch-up, then the loop goes on


def worker_main(plan: Plan, index: int, data: Connection, ctl: Connection) -> None:
    """Process entry point: run the worker, report a crash as Failed instead of a silent death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor owns Ctrl-C and sends Stop
    set_process_name(f"squall-worker{index}")
    raise_nofile()  # (inherited from the supervisor already, unless this process was started otherwise)
    try:
        uvloop.run(Worker(plan, index, data, ctl).main())
    except PlanError as e:  # bad input found only here (a py factory that raises): usage error, no traceback
        with contextlib.suppress(OSError):
            data.send_bytes(encode(Failed(index, str(e), usage=True)))
        raise SystemExit(1) from None
    except BaseException:
        with contextlib.suppress(OSError):
            data.send_bytes(encode(Failed(index, traceback.format_exc(limit=8))))
        raise SystemExit(1) from None


class Worker:
    """Runs one worker's share of the plan: driver x transport x recorder, a Window a second, obeys Stop."""

    def __init__(self, plan: Plan, index: int, data: Connection, ctl: Connection) -> None:
        self.plan = plan
        self.index = index
        self.data = data
        self.ctl = ctl
        self.connections = plan.spread.share(plan.load.connections, index)
        self.budget = make_budget(plan, index)
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
        self.kind = driver_kind(plan)
        self.seq = 0
        self.last_ship = 0
        self.ppid = os.getppid()
        self.collector_lost = False  # the data pipe broke: nothing more is shipped, the worker stops
        self.next_tick = NEVER  # when the current window ends (perf_counter ns), once the run has begun
        self.tick_timer: asyncio.TimerHandle | None = None  # the window tick's pending timer
        self.probe_timer: asyncio.TimerHandle | None = None  # the loop probe's
        self.probe_due = NEVER  # when the pending probe is due (perf_counter ns)
        self.over = False  # the run has ended (Done is next): late timers and catch-ups do nothing
        self.early: list[Steer] | None = []  # changes that came before the driver started (None: started)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        loop.set_exception_handler(self._loop_error)
        started: asyncio.Future[Start] = loop.create_future()
        self.started = started
        self.driver = driver = DRIVERS[self.kind](
            self.plan,
            self.index,
            self.rec,
            self.budget,
            self._classify,
            self._stop_now,
            records=not self.journeys,
        )
        # The channels report to the worker; it hands every report on to the driver (its lean callback
        # for a plain closed run), so these are in place before the first channel is made.
        self.on_response, self.on_failure = driver.on_response, driver.on_failure
        await self._open_load(started)
        hello = encode(Hello(self.index, os.getpid()))
        self._put(hello)
        self.ctl.send_bytes(hello)
        try:
            start = await asyncio.wait_for(started, START_TIMEOUT_S)
        except (asyncio.CancelledError, TimeoutError):
            # Stopped, or the supervisor died, before the run began: nothing to record.
            reason = self.budget.abort.reason or "supervisor lost"
            self._put(encode(Done(self.index, -1, reason)))
            loop.remove_reader(self.ctl.fileno())
            await asyncio.wait_for(self.transport.close(), 1.0)
            return
        gc.freeze()  # what setup made lives all run long: keep it out of every later collection
        self.place(start.t0)
        self.transport.begin(self.measure_start)
        await sleep_until(self.t0)
        probe = self.t0 + LOOP_PROBE_NS
        self.tick_timer = at(loop, self.next_tick, self._tick)
        self.probe_timer = at(loop, probe, self._probe, probe)
        self.probe_due = probe
        # Under a steady stream of answers the loop runs its timers late (see engine/drivers): the driver also
        # asks catch_up from the answer path, so windows close and ship on time all the same.
        driver.on_due = self.catch_up
        try:
            driver.start(self.channels, self.t0)
            early, self.early = self.early, None
            for change in early or ():
                driver.steer(change, self)
            await driver.finished
        finally:
            # Whatever happened, what was recorded is shipped; Done only on success (else worker_main
            # sends Failed, and the collector reports the worker as lost). No timer runs after this: a
            # late tick would close a window after the last one (and ship it past Done).
            self.over = True
            for timer in (self.tick_timer, self.probe_timer):
                if timer is not None:
                    timer.cancel()
            driver.close()
            self.transport.finish()  # (py runs: tracemalloc's last word)
            self._close_window(perf_counter_ns())
            for window in self.rec.flush():
                self._ship(window)
            loop.remove_reader(self.ctl.fileno())
        self._put(encode(Done(self.index, self.seq - 1, self.budget.reason)))
        await asyncio.wait_for(self.transport.close(), 1.0)

    async def _open_load(self, started: asyncio.Future[Start]) -> None:
        """Make the transport and one channel per connection, connected before t0 where the transport can."""
        self.transport: Sender = make_sender(self.plan, self.connections, self.index, self.rec)
        await self.transport.open()
        self._listen(started)  # (only now: a factory that never returns is ended by SIGTERM's default)
        self.channels: list[Channel] = [self.transport.channel(self) for _ in range(self.connections)]
        if self.kind != "users":
            # Connections are made before t0 (a ramp of users makes its own as its users start). A stop
            # (Ctrl-C, SIGTERM) ends the wait at once; a target that never answers costs a few seconds.
            within = min(self.plan.client.timeout_s, PRECONNECT_S)
            if self.plan.spread.start_at is not None:
                within = max(0.1, min(within, self.plan.spread.start_at - time.time() - 0.5))
            opening = self.loop.create_task(self.transport.preconnect(self.channels, within))
            await asyncio.wait({opening, started}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)

    # -- control -------------------------------------------------------------------------------------

    def _listen(self, started: asyncio.Future[Start]) -> None:
        self.loop.add_reader(self.ctl.fileno(), self._on_control, started)
        self.loop.add_signal_handler(signal.SIGTERM, self.stop, "terminated", self.plan.stop.drain_s)

    def _on_control(self, started: asyncio.Future[Start]) -> None:
        try:
            msg = decode(self.ctl.recv_bytes())
        except (EOFError, OSError):
            self.loop.remove_reader(self.ctl.fileno())
            if not started.done():
                started.cancel()
            self.stop("supervisor lost", self.plan.stop.drain_s)
            return
        if isinstance(msg, Start) and not started.done():
            started.set_result(msg)
        elif isinstance(msg, Stop):
            if not started.done():
                started.cancel()
            self.stop(msg.reason, msg.drain_s)
        elif isinstance(msg, Steer) and started.done() and not self.over:
            self.steer(msg)

    def steer(self, change: Steer) -> None:
        """Apply a change of users or rate from the dashboard (Driver.steer); one that comes between Start
        and t0 waits for the driver to start."""
        if self.early is not None:
            self.early.append(change)
        else:
            self.driver.steer(change, self)

    def stop(self, reason: str, drain_s: float) -> None:
        """Stop sending; requests in flight get drain_s to finish, then are cancelled and counted."""
        if not self.budget.stop(reason):
            return
        started = getattr(self, "started", None)
        if started is not None and not started.done():  # stopped before the run began
            started.cancel()
        self.loop.call_later(drain_s, self._cancel_all)
        self.driver.stop()

    def _stop_now(self, reason: str) -> None:
        self.stop(reason, self.plan.stop.drain_s)

    def _put(self, blob: bytes) -> None:
        """Send to the collector; once its pipe is broken (it died), drop everything and stop the run."""
        if self.collector_lost:
            return
        try:
            self.data.send_bytes(blob)
        except OSError:
            self.collector_lost = True
            self.stop("collector lost", 0.0)

    def _ship(self, window: Window) -> None:
        """Encode and send a window; a value msgpack cannot carry (a count past 64 bits) is clamped, the
        first such failure kept as an `internal` sample, so the window still goes."""
        try:
            blob = encode(window)
        except (OverflowError, ValueError, TypeError) as e:
            self.rec.internal(e, counted=False)
            try:
                blob = encode(clamp_window(window))
            except (OverflowError, ValueError, TypeError):
                return  # (not even its clamped numbers would go: the sample says why)
        self._put(blob)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """An exception no callback caught (a bug in squall): kept as the `internal` sample, never printed
        as a traceback in the middle of the live view; the run goes on (a stuck worker is killed and
        counted lost by the supervisor)."""
        exc = context.get("exception")
        if not isinstance(exc, Exception) or isinstance(exc, OSError):
            # A library's note (an unclosed session) or a socket's error outside a request: as before.
            loop.default_exception_handler(context)
            return
        self.rec.internal(exc, counted=False)

    def _classify(self, exc: BaseException) -> str:
        return self.transport.classify(exc)

    def _cancel_all(self) -> None:
        for ch in getattr(self, "channels", ()):
            if ch.busy:
                ch.abort()

    # -- timing --------------------------------------------------------------------------------------

    def place(self, t0: int) -> None:
        """Place the run in time (no clock read): t0, the warmup's end, the budget, the first window."""
        self.t0 = t0
        self.measure_start = t0 + int(self.plan.stop.warmup_s * NS)
        self.budget.begin(self.measure_start)
        self.window_ns = int(self.plan.window_s * NS)
        # Windows end on measure_start + seq * window_s in every worker, so a seq is one second everywhere;
        # seq <= 0 is warmup, and the first window ends at the first such boundary after t0.
        self.seq = (t0 - self.measure_start) // self.window_ns + 1
        self.next_tick = self.measure_start + self.seq * self.window_ns
        self.last_ship = 0

    def catch_up(self, now: int) -> int:
        """What the window tick and the probe's shipping would have done by `now`, run from the answer
        path; returns when something is next due (the window's end, or soon while windows wait to ship)."""
        if self.over:
            return NEVER
        if now >= self.next_tick:
            self._window_ends(now)
        if self.rec.closed:
            self._ship_closed(now + ENCODE_SLICE_NS)
            if self.rec.closed:
                return min(self.next_tick, now + LOOP_PROBE_NS)
        return self.next_tick

    def _probe(self, due: int) -> None:
        if self.over:
            return
        now = perf_counter_ns()
        self.rec.loop_lag((now - due) // 1000)
        self._ship_closed(now + ENCODE_SLICE_NS)
        nxt = due + LOOP_PROBE_NS
        if nxt <= now:
            nxt = now + LOOP_PROBE_NS
        self.probe_timer = at(self.loop, nxt, self._probe, nxt)
        self.probe_due = nxt

    def _ship_closed(self, until: int) -> None:
        """Encode and ship closed windows, a histogram at a time, until `until` (perf_counter ns): a window
        with many histograms (a scenario's steps) is spread over several calls, so the queue never grows
        from one second to the next and no call pauses the loop for long."""
        while True:
            window = self.rec.encode_step()
            if window is not None:
                self._ship(window)
            if not self.rec.closed or perf_counter_ns() >= until:
                break

    def _tick(self) -> None:
        if self.over:
            return
        now = perf_counter_ns()
        # (uvloop timers have ms resolution and can fire early: a window must not end early; and when the
        # answer path closed it already, the timer just moves on to the next window's end)
        if now >= self.next_tick:
            self._window_ends(now)
        self.tick_timer = at(self.loop, max(self.next_tick, now + MIN_SLEEP_NS), self._tick)

    def _window_ends(self, now: int) -> None:
        """The window ends at `now` (at or past its boundary): close it (shipped by _ship_closed), watch
        the supervisor."""
        overdue = now - self.probe_due
        if overdue > LOOP_PROBE_NS:
            # The probe has missed a whole turn: the loop's timers are that late already. It says so itself
            # only when it runs, maybe seconds later; the window closing now (from the answer path) says it.
            self.rec.loop_lag(overdue // 1000)
        try:
            self._close_window(now)
        except Exception as e:  # a bug: counted, and the windows keep their rhythm
            self.rec.internal(e, counted=False)
            self.seq += 1
        self.next_tick = self.measure_start + self.seq * self.window_ns
        if os.getppid() != self.ppid:
            self.stop("supervisor lost", self.plan.stop.drain_s)

    def _close_window(self, now: int) -> None:
        t_end = now - self.t0
        self.rec.close_window(self.seq, self.last_ship, t_end, self.driver.inflight, self.driver.active)
        self.last_ship = t_end
        self.seq += 1
