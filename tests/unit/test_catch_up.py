"""Windows and the deadline when the loop's timers run late: the answer path catches up (fake clocks)."""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter_ns
from types import SimpleNamespace
from typing import Any

from squall.engine.drivers import NEVER, ClosedDriver
from squall.engine.transport.base import Channel
from squall.engine.worker import LOOP_PROBE_NS, Worker
from squall.hist import decode as decode_hist
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec
from squall.wire import Window, decode

NS = 1_000_000_000
MS = 1_000_000
T0 = 10**12  # a fake t0: the catch-up reads no clock of its own


class Pipe:
    """The worker's data pipe: keeps what is sent, or fails like a pipe whose reader died."""

    def __init__(self, broken: bool = False) -> None:
        self.sent: list[Any] = []
        self.broken = broken

    def send_bytes(self, blob: bytes) -> None:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")
        self.sent.append(decode(blob))

    def windows(self) -> list[Window]:
        return [m for m in self.sent if isinstance(m, Window)]


class QueuedChannel(Channel):
    """A channel whose answer the test hands over itself: a send joins the queue of requests in flight."""

    __slots__ = ("queue", "starts")

    def __init__(self, queue: deque[QueuedChannel]) -> None:
        super().__init__()
        self.queue = queue
        self.starts: list[int] = []

    def send(self) -> None:
        self.busy = True
        self.starts.append(self.start)
        self.queue.append(self)

    def abort(self) -> None:
        self.busy = False


def plan(**kw: Any) -> Plan:
    kw.setdefault("workers", 1)
    kw.setdefault("connections", 4)
    return assemble(RequestSpec("http://127.0.0.1:1/"), **kw).validate()


def worker(p: Plan, pipe: Pipe, t0: int = T0) -> Worker:
    w = Worker(p, 0, pipe, None)  # type: ignore[arg-type]
    w.driver = SimpleNamespace(inflight=4, active=4)  # type: ignore[assignment]
    w.place(t0)
    return w


def answer(w: Worker, at: int) -> None:
    """One answered request, 1 ms long, ending at `at`."""
    w.rec.response(200, at - MS, at - MS, at - MS, at, 10)


def ship(w: Worker, now: int) -> int:
    """Catch up at `now` until nothing waits to be shipped; each call's answer is when it is next due."""
    due = w.catch_up(now)
    while w.rec.closed:
        assert due <= now + LOOP_PROBE_NS  # (a window still waiting to ship is due again soon)
        due = w.catch_up(now)
    return due


def requests(window: Window) -> tuple[int, int]:
    """A window's request count and its latency histogram's count (they must agree)."""
    return window.counters["requests"], decode_hist(window.histograms["latency"]).get_total_count()


def test_a_window_closes_and_ships_from_the_answer_path_at_its_end() -> None:
    pipe = Pipe()
    w = worker(plan(duration_s=3.0), pipe)
    for k in range(5):
        answer(w, T0 + k * 100 * MS)
    assert w.catch_up(T0 + NS - 1) == T0 + NS  # not yet: nothing closes, and the window's end is next
    assert pipe.sent == [] and not w.rec.closed
    answer(w, T0 + NS + MS)  # recorded before the window is closed: it is that window's
    assert ship(w, T0 + NS + 2 * MS) == T0 + 2 * NS
    answer(w, T0 + NS + 3 * MS)
    answer(w, T0 + 2 * NS - 1)
    assert ship(w, T0 + 2 * NS) == T0 + 3 * NS
    one, two = pipe.windows()
    assert (one.seq, one.t_start, one.t_end, requests(one)) == (1, 0, NS + 2 * MS, (6, 6))
    assert (two.seq, two.t_start, two.t_end, requests(two)) == (2, NS + 2 * MS, 2 * NS, (2, 2))


def test_a_window_late_by_seconds_closes_and_each_missed_second_is_an_empty_window() -> None:
    pipe = Pipe()
    w = worker(plan(duration_s=10.0), pipe)
    answer(w, T0 + 10 * MS)
    # (a loop blocked for seconds: seq stays one second everywhere, so the missed one is closed empty)
    assert ship(w, T0 + 2 * NS + 500 * MS) == T0 + 3 * NS
    one, two = pipe.windows()
    assert (one.seq, one.t_end, requests(one)) == (1, 2 * NS + 500 * MS, (1, 1))
    assert (two.seq, two.t_start, two.t_end, two.counters["requests"]) == (2, one.t_end, one.t_end, 0)


def test_a_warmup_window_counts_seq_from_the_warmup_end() -> None:
    pipe = Pipe()
    w = worker(plan(duration_s=3.0, warmup_s=1.5), pipe)
    assert w.seq == -1 and w.catch_up(T0) == T0 + NS // 2  # the warmup's windows end on its own grid
    assert ship(w, T0 + NS // 2) == T0 + 3 * NS // 2
    assert [win.seq for win in pipe.windows()] == [-1]


def test_nothing_is_closed_or_armed_once_the_run_is_over() -> None:
    pipe = Pipe()
    w = worker(plan(duration_s=3.0), pipe)
    answer(w, T0 + 10 * MS)
    w.over = True  # (main sets it before its last window and Done)
    assert w.catch_up(T0 + 5 * NS) == NEVER
    w._tick()  # a late timer: no window after the last one, nothing shipped past Done, nothing re-armed
    w._probe(T0)
    assert pipe.sent == [] and not w.rec.closed and w.seq == 1
    assert w.tick_timer is None and w.probe_timer is None


def test_a_late_tick_after_the_answer_path_closed_the_window_waits_for_the_next() -> None:
    async def main() -> tuple[Worker, float]:
        pipe = Pipe()
        t0 = perf_counter_ns() - NS // 2  # the first window ends half a second from now
        w = worker(plan(duration_s=3.0), pipe, t0)
        w.loop = asyncio.get_running_loop()
        ship(w, t0 + NS)  # the answer path closed window 1 (its clock ran ahead of the timer's)
        w._tick()  # the timer, late: window 2 has not ended
        assert w.tick_timer is not None
        when = w.tick_timer.when() - w.loop.time()
        w.tick_timer.cancel()
        return w, when

    w, when = asyncio.run(main())
    assert w.seq == 2 and [win.seq for win in w.data.windows()] == [1]  # type: ignore[attr-defined]
    assert when > 0.5  # re-armed for window 2's end (about 1.5 s away), not a spin every ms


def test_a_broken_pipe_at_a_window_ends_the_run_quietly() -> None:
    async def main() -> tuple[Worker, ClosedDriver]:
        p = plan(duration_s=3.0)
        w = worker(p, Pipe(broken=True))
        w.loop = asyncio.get_running_loop()
        w.driver = driver = ClosedDriver(p, 0, w.rec, w.budget, str, w._stop_now)
        answer(w, T0 + 10 * MS)
        ship(w, T0 + NS)  # the collector is gone: the window cannot go
        return w, driver

    w, driver = asyncio.run(main())
    assert w.collector_lost and w.budget.reason == "collector lost" and driver.stopping


def test_starved_timers_the_answer_path_closes_every_window_and_stops_at_the_deadline() -> None:
    """Answers handed over one after another without ever yielding to the loop (as libuv does for up to
    48 full epoll batches): no timer runs, yet every window closes at its end, in order, with exactly the
    answers recorded before it closed, and the deadline stops sending at once."""
    connections, window_ns, deadline_ns = 4, 30 * MS, 120 * MS

    async def main() -> tuple[Worker, list[QueuedChannel], list[int], list[int]]:
        p = plan(connections=connections, duration_s=deadline_ns / NS, window_s=window_ns / NS)
        pipe = Pipe()
        w = Worker(p, 0, pipe, None)  # type: ignore[arg-type]
        w.loop = asyncio.get_running_loop()
        w.driver = driver = ClosedDriver(p, 0, w.rec, w.budget, str, w._stop_now)
        w.place(perf_counter_ns())
        driver.on_due = w.catch_up
        queue: deque[QueuedChannel] = deque()
        chans = [QueuedChannel(queue) for _ in range(connections)]
        driver.start(chans, w.t0)  # type: ignore[arg-type]
        handed: list[int] = []  # when each answer was handed over (read before the driver reads its clock)
        stops: list[int] = []
        cap = w.t0 + 10 * NS
        while queue and perf_counter_ns() < cap:  # (no await: the loop's timers never get a turn)
            ch = queue.popleft()
            ch.busy = False
            t = perf_counter_ns()
            handed.append(t)
            driver.on_response(ch, 200, t, t, 10)
            if driver.stopping and not stops:
                stops.append(t)
        assert driver.finished.done()
        w.over = True  # what Worker.main does at the end
        w._close_window(perf_counter_ns())
        for window in w.rec.flush():
            w._ship(window)
        return w, chans, handed, stops

    w, chans, handed, stops = asyncio.run(main())
    deadline = w.t0 + deadline_ns
    windows = w.data.windows()  # type: ignore[attr-defined]
    assert w.budget.reason == "duration" and len(stops) == 1
    # The stop came with the first answer after which the driver's clock passed the deadline: every
    # answer handed over before that one was handed over before the deadline.
    assert all(t < deadline for t in handed[: handed.index(stops[0])])
    assert [win.seq for win in windows] == [1, 2, 3, 4, 5]  # four measured windows and the drain's
    for win in windows[:4]:
        assert win.t_end >= win.seq * window_ns  # never early
    assert all(s < deadline for ch in chans for s in ch.starts)  # no send at or past the deadline
    # Each window holds exactly the answers handed over between its start and its end (the clock the
    # worker closed it at is read after the answer that closed it was recorded).
    edges = [w.t0 + win.t_end for win in windows]
    for k, win in enumerate(windows):
        lo = w.t0 + win.t_start if k else 0
        want = sum(1 for t in handed if lo < t < edges[k])
        assert requests(win) == (want, want)
    # The deadline met the answer that ended window 4: the other requests in flight end in the drain.
    assert windows[4].counters["requests"] == connections - 1
    assert sum(win.counters["requests"] for win in windows) == len(handed)


def test_a_window_closed_while_the_probe_is_a_turn_late_carries_that_lateness() -> None:
    pipe = Pipe()
    w = worker(plan(duration_s=3.0), pipe)
    w.probe_due = T0 + 10 * MS  # the probe's timer has not run since
    ship(w, T0 + NS + 2 * MS)
    w.probe_due = T0 + 2 * NS - 4 * MS  # late by less than a turn: the probe will say it when it runs
    ship(w, T0 + 2 * NS + 2 * MS)
    one, two = pipe.windows()
    assert (one.loop_lag_p99_us, two.loop_lag_p99_us) == ((NS - 8 * MS) // 1000, None)
