"""Start the collector and one worker per core, share t0, relay Ctrl-C as Stop, collect the Result."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from time import monotonic, perf_counter_ns

from squall.collector.collector import collector_main, orphan_document
from squall.collector.sinks import OutFileSink, SinkFactory, default_sinks
from squall.engine.worker import worker_main
from squall.plan.plan import Plan
from squall.result.document import Result
from squall.wire import Abort, Failed, Final, Hello, Progress, Start, Steer, Stop, WireError, decode, encode

START_DELAY_NS = 50_000_000
HELLO_TIMEOUT_S = 30.0
KILL_GRACE_S = 3.0  # after Stop and the drain, how long a worker may take to finish before it is killed
NS = 1_000_000_000


class RunError(RuntimeError):
    """The run could not start."""


def _others(every: list[Connection], keep: list[Connection]) -> list[Connection]:
    return [c for c in every if all(c is not k for k in keep)]


def _child(main: Callable[..., None], close: list[Connection], *args: object) -> None:
    for conn in close:
        conn.close()
    main(*args)


STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


@contextlib.contextmanager
def trap_stops(on_stop: Callable[[str], None]) -> Iterator[None]:
    """Inside the block, Ctrl-C and SIGTERM call `on_stop("interrupted" | "terminated")` instead of raising
    or killing (main thread only: elsewhere the handlers cannot be set, and stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, lambda signum, _f: on_stop(STOP_SIGNALS[signum])) for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(plan: Plan, sinks: SinkFactory = default_sinks) -> Result:
    """Run a validated plan to the end (or to Ctrl-C/SIGTERM) and return its Result.

    `sinks` makes, inside the collector process, the outputs fed while the run goes on and at its end (the
    live view, /metrics, soak checkpoints, the abort watcher, the -o file). Raises LimitError (a PlanError)
    before any process starts when the box cannot hold the run's connections.
    """
    from squall.engine.limits import prepare

    return _Supervisor(prepare(plan), sinks).run()


class _Supervisor:
    def __init__(self, plan: Plan, sinks: SinkFactory = default_sinks) -> None:
        self.plan = plan
        self.sinks = sinks
        self.ctx = mp.get_context("fork")
        self.stop_reason: str | None = None
        self.stopped = False
        self.pids: dict[int, int] = {}
        self.started_at = time.time()
        self.load_epoch = self.started_at
        self.killed = False
        self.progress: Progress | None = None  # the collector's latest totals

    def run(self) -> Result:
        plan, ctx = self.plan, self.ctx
        # Before the first fork: a Ctrl-C while the processes start must stop the run, not raise in the
        # middle of os.fork(); a child inherits this handler (harmless there) until it sets its own.
        with trap_stops(self._on_stop):
            return self._run(plan, ctx)

    def _run(self, plan: Plan, ctx: mp.context.BaseContext) -> Result:
        data = [ctx.Pipe(duplex=False) for _ in range(plan.spread.workers)]
        ctls = [ctx.Pipe(duplex=True) for _ in range(plan.spread.workers)]
        sup_end, coll_end = ctx.Pipe(duplex=True)
        every = [*(c for pair in data for c in pair), *(c for pair in ctls for c in pair), sup_end, coll_end]
        # Forked children inherit every pipe end; each closes the ones that are not its own, or a dead
        # worker's pipe would never reach EOF at the collector.
        coll_keep = [r for r, _ in data] + [coll_end]
        collector = ctx.Process(
            target=_child,
            args=(
                collector_main,
                _others(every, coll_keep),
                plan,
                [r for r, _ in data],
                coll_end,
                self.sinks,
            ),
            name="squall-collector",
        )
        collector.start()
        workers = []
        for i in range(plan.spread.workers):
            keep = [data[i][1], ctls[i][1]]
            workers.append(
                ctx.Process(
                    target=_child,
                    args=(worker_main, _others(every, keep), plan, i, data[i][1], ctls[i][1]),
                    name=f"squall-worker-{i}",
                )
            )
            workers[-1].start()
        for r, w in data:
            r.close()
            w.close()
        coll_end.close()
        for _, child in ctls:
            child.close()
        self.ctl = [parent for parent, _ in ctls]
        try:
            self.pids = pids = self._await_hellos()
            if not pids:
                self._broadcast(Stop(self.stop_reason or "no worker started", 0.0))
            t0 = perf_counter_ns() + START_DELAY_NS
            if plan.spread.start_at is not None:  # every shard starts its load at the same wall-clock instant
                t0 = max(t0, perf_counter_ns() + int((plan.spread.start_at - time.time()) * 1e9))
            self.load_epoch = time.time() + (t0 - perf_counter_ns()) / NS
            start = encode(Start(t0, [pids.get(i, 0) for i in range(plan.spread.workers)]))
            self._send(sup_end, start)
            for conn in self.ctl:
                self._send(conn, start)
            doc = self._await_final(sup_end, collector, workers, t0)
        finally:
            for w in workers:
                w.join(timeout=plan.stop.drain_s + 5)
                if w.is_alive():
                    w.kill()
                    w.join()
            collector.join(timeout=5)
            if collector.is_alive():
                collector.kill()
            for conn in [*self.ctl, sup_end]:
                conn.close()
        return Result(doc)

    def _await_hellos(self) -> dict[int, int]:
        pids: dict[int, int] = {}
        pending = {conn: i for i, conn in enumerate(self.ctl)}
        deadline = monotonic() + HELLO_TIMEOUT_S
        while pending and monotonic() < deadline and self.stop_reason is None:
            for conn in wait(list(pending), timeout=0.2):
                i = pending.pop(conn)  # type: ignore[call-overload]
                try:
                    msg = decode(conn.recv_bytes())  # type: ignore[union-attr]
                except (EOFError, OSError, WireError):
                    continue
                if isinstance(msg, Hello):
                    pids[i] = msg.pid
        return pids

    def _await_final(
        self,
        sup_end: Connection,
        collector: mp.process.BaseProcess,
        workers: list[mp.process.BaseProcess],
        t0: int,
    ) -> dict:
        stop = self.plan.stop
        after = stop.drain_s + KILL_GRACE_S
        # A -d run ends by the clock even when a worker does not (suspended, or stuck outside its loop):
        # past the deadline, the drain and a grace, whatever still runs is killed and counted lost.
        deadline_kill: int | None = None
        if stop.duration_s is not None:
            deadline_kill = t0 + int((stop.warmup_s + stop.duration_s + after) * NS)
        stop_kill: int | None = None
        while True:
            if self.stop_reason is not None and not self.stopped:
                self._broadcast(Stop(self.stop_reason, stop.drain_s))
                self._send(sup_end, encode(Stop(self.stop_reason, stop.drain_s)))  # for its stop_reason
            if self.stop_reason is not None and stop_kill is None:
                # A worker stuck outside its loop (a py factory that blocks, say) never answers Stop.
                stop_kill = perf_counter_ns() + int(after * NS)
            if not self.killed:
                now = perf_counter_ns()
                if stop_kill is not None and now > stop_kill:
                    why = f"did not stop within {after:g} s of the stop; killed"
                    self._kill_stuck(sup_end, workers, why)
                elif deadline_kill is not None and now > deadline_kill:
                    why = f"still running {after:g} s after the run's end (stuck); killed"
                    self._kill_stuck(sup_end, workers, why)
            ready = wait([sup_end, collector.sentinel], timeout=0.05)
            if sup_end in ready:
                try:
                    msg = decode(sup_end.recv_bytes())
                except (EOFError, OSError, WireError):
                    return self._collector_lost(collector, workers)
                if isinstance(msg, Final):
                    return msg.result
                if isinstance(msg, Progress):
                    self.progress = msg
                if isinstance(msg, Abort) and self.stop_reason is None:
                    self.stop_reason = "threshold"
                if isinstance(msg, Stop) and self.stop_reason is None:  # the dashboard's stop: as Ctrl-C
                    self.stop_reason = msg.reason
                if isinstance(msg, Steer) and not self.stopped:  # the dashboard's users or rate: on to all
                    blob = encode(msg)
                    for conn in self.ctl:
                        self._send(conn, blob)
                if isinstance(msg, Failed) and 0 <= msg.worker < len(workers):
                    self._kill_one(workers[msg.worker])  # the collector found it stuck (Stalls.stuck)
            elif ready:
                return self._collector_lost(collector, workers)

    def _kill_stuck(self, sup_end: Connection, workers: list[mp.process.BaseProcess], why: str) -> None:
        """Kill every worker still running, telling the collector why first (it sees their pipes close)."""
        self.killed = True
        for i, w in enumerate(workers):
            if w.is_alive():
                self._send(sup_end, encode(Failed(i, why)))
                w.kill()

    @staticmethod
    def _kill_one(worker: mp.process.BaseProcess) -> None:
        if worker.is_alive():
            worker.kill()

    def _collector_lost(
        self, collector: mp.process.BaseProcess, workers: list[mp.process.BaseProcess]
    ) -> dict:
        """The collector died with the run's numbers: stop the workers (their windows have nowhere to go),
        and make the result that says so; write -o, which was the collector's to write."""
        collector.join(timeout=1.0)
        code = collector.exitcode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._broadcast(Stop("collector lost", 0.0))
        end = monotonic() + KILL_GRACE_S
        for w in workers:
            w.join(timeout=max(0.0, end - monotonic()))
            if w.is_alive():
                w.kill()
        doc = orphan_document(self.plan, self.pids, self.started_at, self.load_epoch, why, self.progress)
        if self.plan.outputs.out_path:
            OutFileSink(self.plan.outputs.out_path).on_final(doc)
        return doc

    def _broadcast(self, stop: Stop) -> None:
        self.stopped = True
        blob = encode(stop)
        for conn in self.ctl:
            self._send(conn, blob)

    @staticmethod
    def _send(conn: Connection, blob: bytes) -> None:
        with contextlib.suppress(OSError):  # that worker is gone; the collector reports it
            conn.send_bytes(blob)

    def _on_stop(self, reason: str) -> None:
        self.stop_reason = reason
