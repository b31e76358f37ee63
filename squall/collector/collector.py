"""The collector process: receive windows, merge them, sample processes, feed the sinks."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from bisect import bisect_left
from multiprocessing.connection import Connection, wait
from time import perf_counter_ns
from typing import Any

from squall.collector.aggregate import Aggregate, Second, second_entry
from squall.collector.outcome import orphan_document as orphan_document  # (the supervisor's import)
from squall.collector.outcome import run_document, run_summary
from squall.collector.sampler import Sampler
from squall.collector.scrape import Scraper
from squall.collector.sinks import Once, Sink, SinkFactory, default_sinks
from squall.collector.stalls import Stalls
from squall.engine.limits import first_limit_warnings, steer_limit
from squall.plan.load import check_steer, steer_base, steered
from squall.plan.plan import Plan
from squall.procname import set_process_name
from squall.units import PlanError
from squall.wire import (
    Abort,
    Done,
    Failed,
    Final,
    Hello,
    Progress,
    Start,
    Steer,
    Stop,
    Window,
    WireError,
    decode,
    encode,
)

NS = 1_000_000_000
STALL_WINDOWS = 3  # a worker that sends no window for this many windows' time (3 s) is stalled


def collector_main(
    plan: Plan, conns: list[Connection], sup: Connection, make_sinks: SinkFactory = default_sinks
) -> None:
    """Process entry point. Ignores Ctrl-C: it ends when every worker has finished or died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_process_name("squall-collect")
    Collector(plan, conns, sup, make_sinks).run()


class Collector:
    """Owns the Aggregate and the Sampler for one run, and feeds its sinks (squall.collector.sinks.Totals)."""

    def __init__(
        self,
        plan: Plan,
        conns: list[Connection],
        sup: Connection | None,
        make_sinks: SinkFactory = default_sinks,
    ) -> None:
        self.plan = plan
        self.conns = {conn: i for i, conn in enumerate(conns)}
        self.sup = sup
        self.agg = Aggregate()
        self.parts: dict[tuple[str, str], Aggregate] = {}  # (kind, name): steps, journeys, phases
        self.error_samples: dict[str, str] = {}  # py runs: the first traceback of each exception type
        self.notes: dict[str, dict[str, Any]] = {}  # py runs: per-worker notes (tracemalloc growth)
        self.received = 0
        self.pids: dict[int, int] = {}
        self.last_seq: dict[int, int] = {}
        self.live: set[int] = set(range(len(conns)))
        self.lost: dict[int, str] = {}
        self.refused: dict[int, str] = {}  # workers that stopped on a usage error, and its message
        self.done: dict[int, str] = {}
        self.cpu: dict[int, list[float | None]] = {i: [] for i in range(len(conns))}
        self.lag: dict[int, list[float | None]] = {i: [] for i in range(len(conns))}
        self.series: list[dict[str, Any]] = []
        self.second: Second | None = None
        self.warnings: list[str] = []
        self.warned: set[Once] = set()  # the keys of the warnings said once
        self.limits_said: set[str] = set()  # ports_exhausted, fd_exhausted: said live once each
        self.t0: int | None = None
        self.measure_start = 0
        self.started_at = time.time()
        self.load_epoch = self.started_at  # t0 on the wall clock, once Start gives t0
        self.sampler: Sampler | None = None
        self.last_sample = 0
        self.closing = False
        self.killed: dict[int, str] = {}  # workers the supervisor killed, and why (their pipe's EOF follows)
        check = plan.self_check
        self.stalls = Stalls(
            int(STALL_WINDOWS * plan.window_s * NS), int(check.stuck_s * NS), int(check.stuck_alone_s * NS)
        )
        self.stop_asked: str | None = None  # the supervisor's stop (Ctrl-C, SIGTERM, a threshold)
        self.at_stop: set[int] = set()  # the workers live when it came
        self.cut: dict[int, str] = {}  # those of them lost after it, ended by it: the stop's reason
        self.unwritten_files: dict[str, str] = {}  # output -> why it could not be written
        self.stopped_by: str | None = None  # who asked stop_run() to stop the run (meta.stopped_by)
        # The dashboard's changes of users or rate, as meta.changes has them, and the load shape they make.
        self.changes: list[dict[str, Any]] = []
        self.steer_points: list[tuple[float, float]] = []  # (s since t0, users or rate) of each change
        self.shape = plan.load.shape
        self.scraper = (
            None
            if plan.scrape is None
            else Scraper(plan.scrape, plan.window_s, verify=plan.client.tls_verify)
        )
        self.sinks: list[Sink] = make_sinks(plan, self)

    # -- main loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        """Receive until every worker has finished or died; then hand the result to sinks and supervisor."""
        while self.live:
            waitables: list[Any] = [c for c, i in self.conns.items() if i in self.live]
            if self.sup is not None:
                waitables.append(self.sup)
            # The supervisor's messages first: a worker it killed says why before its pipe's end does.
            for conn in sorted(wait(waitables, 0.5), key=lambda c: c is not self.sup):
                if conn is self.sup:
                    self._on_supervisor()
                else:
                    self._on_worker(conn)  # type: ignore[arg-type]
            self._watch_stalls()
            self._kill_stuck()
            self._flush_seconds()
            self._tick(final=False)
        self.closing = True
        if self.scraper is not None:
            self.scraper.close()
        for worker in list(self.stalls.stalling):
            self.stalls.end(worker, perf_counter_ns())
        self._flush_seconds(final=True)
        self._tick(final=True)
        doc = self.document()
        for sink in self.sinks:
            sink.on_final(doc)
        if self.sup is not None:
            with contextlib.suppress(OSError):
                self.sup.send_bytes(encode(Final(doc)))

    def _progress(self) -> None:
        """The totals to the supervisor, after each second: what it writes should this process die."""
        if self.sup is None:
            return
        agg = self.agg
        hists = {name: h.encode() for name, h in agg.hists.items()}
        progress = Progress(
            dict(agg.counters), dict(agg.status_codes), dict(agg.error_kinds), hists, agg.t_first, agg.t_last
        )
        with contextlib.suppress(OSError):
            self.sup.send_bytes(encode(progress))

    def _tick(self, final: bool) -> None:
        for sink in self.sinks:
            sink.on_tick(self, final)

    def unwritten(self, output: str, why: str) -> None:
        """An output could not be written (the run then ends in an error): say so, once per output."""
        if output not in self.unwritten_files:
            self.unwritten_files[output] = why
            self.warn(f"could not write {output}: {why}")

    def warn(self, text: str, once: Once | None = None) -> None:
        """Add a warning to the result (only the first of those with the same `once` key)."""
        if once is not None:
            if once in self.warned:
                return
            self.warned.add(once)
        self.warnings.append(text)

    def note(self, text: str) -> None:
        """Hand a sink's note to every sink (the live view prints it)."""
        for sink in self.sinks:
            sink.on_note(text)

    def abort(self, reason: str) -> bool:
        """Ask the supervisor to stop the run (a sink's threshold watch); False when it is gone."""
        if self.sup is None:
            return False
        with contextlib.suppress(OSError):
            self.sup.send_bytes(encode(Abort(reason)))
        return True

    def steer(
        self, users: int | None = None, rate: float | None = None, by: str = "dashboard"
    ) -> dict[str, Any]:
        """Change the users (closed model) or the rate (open model) from now on: the supervisor hands it to
        every worker; it replaces the rest of a --stage/--profile shape and is recorded in meta.changes.
        Returns the change as recorded; raises PlanError for one this run cannot take."""
        plan = self.plan
        check_steer(plan.load, users, rate, trace=plan.llm is not None and bool(plan.llm.trace_offsets))
        if self.t0 is None or self.closing or self.stop_asked is not None or self.sup is None or self.done:
            raise PlanError("the run is not under way (not started yet, or ending): nothing to change")
        t = max(perf_counter_ns() - self.t0, 0)
        measured = round(t / NS - plan.stop.warmup_s, 3)
        if measured < 0:  # (the warmup's answers are not measured: a change there would have no stage)
            raise PlanError(f"the load can be changed once the warmup is over (in {math.ceil(-measured)} s)")
        duration = plan.stop.duration_s
        if duration is not None and measured >= duration:
            raise PlanError("the run's time is up: nothing to change")
        if users is not None:
            steer_limit(plan, users)
        value = float(users if users is not None else rate)  # type: ignore[arg-type]
        change: dict[str, Any] = {"t": measured}
        change.update({"users": users} if users is not None else {"rate": value})
        change["by"] = by
        self.changes.append(change)
        # (as the workers take it: from t, in s since t0, not rounded to the ms of meta.changes)
        self.steer_points.append((t / NS, value))
        self.shape = steered(plan.load.shape, *steer_base(plan.load), self.steer_points)
        with contextlib.suppress(OSError):
            self.sup.send_bytes(encode(Steer(t, users, rate, by)))
        return change

    def stop_run(self, reason: str = "interrupted", by: str | None = None) -> bool:
        """Stop the run as Ctrl-C would (drain, write every file, exit 130), `by` (e.g. "dashboard") named in
        meta.stopped_by; False when there is no supervisor to ask."""
        if self.sup is None:
            return False
        if by is not None and self.stop_asked is None and self.stopped_by is None:
            self.stopped_by = by
        with contextlib.suppress(OSError):
            self.sup.send_bytes(encode(Stop(reason, self.plan.stop.drain_s)))
        return True

    def _on_supervisor(self) -> None:
        assert self.sup is not None
        try:
            msg = decode(self.sup.recv_bytes())
        except (EOFError, OSError):
            self.sup = None  # orphaned: workers notice too and stop; the -o sink still writes the result
            return
        if isinstance(msg, Failed):  # the supervisor is killing a stuck worker: why, for its EOF
            self.killed.setdefault(msg.worker, msg.error)
        elif isinstance(msg, Stop):  # the run is stopping early; whoever is still live ends by it
            if self.stop_asked is None:
                self.stop_asked, self.at_stop = msg.reason, set(self.live)
        elif isinstance(msg, Start):
            self.t0 = msg.t0
            self.stalls.start(set(self.live), max(msg.t0, perf_counter_ns()))
            # t0 on the wall clock (later than now with --start-at): what merges align on.
            self.load_epoch = time.time() + (msg.t0 - perf_counter_ns()) / 1e9
            self.measure_start = msg.t0 + int(self.plan.stop.warmup_s * NS)
            self.sampler = Sampler(self.pids, self.plan.target_pid)
            if self.scraper is not None:
                self.scraper.start()
            self.last_sample = perf_counter_ns()
            if self.sampler.target_lost:
                self.warn(f"target process {self.plan.target_pid} could not be sampled", Once.TARGET)

    def _on_worker(self, conn: Connection) -> None:
        worker = self.conns[conn]
        try:
            msg = decode(conn.recv_bytes())
        except (EOFError, OSError):
            self._lose(worker, self.killed.get(worker, "exited without finishing"))
            return
        except WireError as e:
            self._lose(worker, str(e))
            return
        if isinstance(msg, Window):
            self.stalls.heard_from(worker, perf_counter_ns())
            self._add(worker, msg)
        elif isinstance(msg, Hello):
            self.pids[worker] = msg.pid
        elif isinstance(msg, Done):
            self.done[worker] = msg.reason
            self.live.discard(worker)
        elif isinstance(msg, Failed):
            # A refused input says it all in its message; a bug's traceback ends with its one line.
            text = msg.error.strip()
            why = (text if msg.usage else text.splitlines()[-1]) if text else "failed"
            if msg.usage:
                self.refused[worker] = why
            self._lose(worker, why)

    def _add(self, worker: int, msg: Window) -> None:
        self.agg.add(msg)
        self.received += 1
        for key, value in msg.notes.items():
            if key == "error_samples":
                for kind, text in value.items():
                    if kind not in self.error_samples and len(self.error_samples) < 20:
                        self.error_samples[kind] = text
            else:
                self.notes.setdefault(key, {})[str(worker)] = value
        for kind, named in msg.parts.items():
            for name, part in named.items():
                agg = self.parts.get((kind, name))
                if agg is None:
                    agg = self.parts[kind, name] = Aggregate(seconds=False, merger=self.agg.merger)
                agg.add(part)
        self.last_seq[worker] = msg.seq
        # The self-check judges measured, whole seconds: a warmup's start-up and the last sliver of a
        # run would otherwise make three "seconds" of a 1 s hunt step.
        if msg.seq >= 1 and msg.t_end - msg.t_start >= 0.9 * self.plan.window_s * NS:
            lag_us = msg.loop_lag_p99_us
            self.lag[worker].append(lag_us / 1000 if lag_us is not None else None)

    def _watch_stalls(self) -> None:
        """Name a live worker whose windows stopped arriving (suspended, or its loop blocked), once."""
        if self.t0 is None:
            return
        for worker in self.stalls.watch(self.live, perf_counter_ns()):
            text = (
                f"worker {worker} (pid {self.pids.get(worker, '?')}) stalled: no window for "
                f"{self.stalls.limit_ns / NS:.0f} s (suspended, or its event loop is blocked)"
            )
            for sink in self.sinks:
                sink.on_warning(text)

    def _kill_stuck(self) -> None:
        """Have a stuck worker killed (its windows stopped for good: see Stalls); its pipe's EOF makes it
        lost, with the reason kept here. The supervisor kills it; without one, this process does."""
        if self.t0 is None:
            return
        for worker, silent, alone in self.stalls.stuck(self.live, perf_counter_ns()):
            after = ", the last worker running" if alone else ""
            why = f"stuck: no window for {silent // NS} s{after}; killed"
            self.killed.setdefault(worker, why)
            if self.sup is not None:
                with contextlib.suppress(OSError):
                    self.sup.send_bytes(encode(Failed(worker, why)))
                    continue  # (the supervisor kills it; if it is gone, this process does)
            pid = self.pids.get(worker)
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _lose(self, worker: int, why: str) -> None:
        self.stalls.end(worker, perf_counter_ns())
        if worker in self.live and worker in self.at_stop and self.stop_asked is not None:
            self.cut[worker] = self.stop_asked
        if worker in self.live:
            self.live.discard(worker)
            self.lost[worker] = why
            text = f"worker {worker} (pid {self.pids.get(worker, '?')}) was lost: {why}"
            self.warn(text)
            for sink in self.sinks:
                sink.on_warning(text)

    # -- per second ----------------------------------------------------------------------------------

    def _sample(self, measured: bool) -> dict[str, Any] | None:
        # Taken when a second's last window arrives, i.e. just after that second ended, so CPU % covers it.
        now = perf_counter_ns()
        if self.sampler is None or now - self.last_sample < self.plan.window_s * NS / 2:
            return None
        self.last_sample = now
        s = self.sampler.sample()
        if measured:  # the self-check judges measured seconds only
            for w, v in s["worker_cpu"].items():
                self.cpu[w].append(v)
        if self.sampler.target_lost:
            self.warn(f"target process {self.plan.target_pid} exited during the run", Once.TARGET)
        return s

    def _flush_seconds(self, final: bool = False) -> None:
        if final:
            upto = max(self.agg.pending, default=0)
        else:
            live_seqs = [self.last_seq.get(w, -(10**9)) for w in self.live]
            upto = min(live_seqs) if live_seqs else max(self.agg.pending, default=0)
        seconds = self.agg.pop_seconds(upto)
        for sec in seconds:
            sample = self._sample(sec.seq >= 1)
            if final and sample is not None and sample.get("target"):
                # Sampled after the workers closed their connections: the target's FDs would read as a
                # drop, hiding a leak of up to -c sockets. Its RSS and CPU stay.
                sample["target"] = {k: v for k, v in sample["target"].items() if k != "fds"}
            if sec.seq < 1:
                # Warmup. A counted request can land here only when the boundary tick ran late: it belongs
                # to the first measured second, so the series still sums to the summary.
                if sec.counters.get("requests"):
                    self.agg.carry_into(sec, 1)
                continue
            entry = second_entry(sec, self.plan.window_s, hists=self.plan.soak is None)
            entry.update(self._targets(sec))
            if sample is not None:
                entry.update(sample)
            if self.scraper is not None:
                scraped = self.scraper.second()
                if scraped:
                    entry["target_metrics"] = scraped
            self.series.append(entry)
            self.second = sec
            for sink in self.sinks:
                sink.on_second(entry, self)
            for text in first_limit_warnings(sec.error_kinds, self.limits_said):
                for sink in self.sinks:
                    sink.on_warning(text)
        if seconds and not final:
            self._progress()

    def _targets(self, sec: Second) -> dict[str, float]:
        """What the load shape asked for in this second, next to what was achieved (rps, users)."""
        plan, shape = self.plan, self.shape
        if plan.open_model:
            offsets = plan.llm.trace_offsets if plan.llm is not None else ()
            if offsets:
                # A trace: the lines due in this second (its bursts and pauses), over the time it was measured
                # (a partial last second: its span; the lines past a -d deadline were never due).
                window, stop = plan.window_s, plan.stop
                start = stop.warmup_s + (sec.seq - 1) * window
                end = start + window
                if stop.duration_s is not None:
                    end = min(end, stop.warmup_s + stop.duration_s)
                span = (sec.t_end - sec.t_start) / NS
                if not 0 < span < 0.9 * window:
                    span = window
                due = bisect_left(offsets, end) - bisect_left(offsets, start)
                return {"target_rps": round(due / span, 3)}
            if shape is None:
                return {"target_rps": plan.load.rate}  # type: ignore[dict-item]
            # The mean rate the shape asked for over the second: its area over the second's span.
            end = plan.stop.warmup_s + sec.seq * plan.window_s
            asked = shape.area(end) - shape.area(end - plan.window_s)
            return {"target_rps": round(asked / plan.window_s, 3)}
        users = plan.load.connections
        if shape is not None:
            users = round(shape.value_at(plan.stop.warmup_s + sec.seq * plan.window_s))
        return {"target_users": users, "users": sec.users}

    def elapsed_s(self) -> float:
        """Measured seconds since the load started (after warmup); 0 before the start."""
        return 0.0 if self.t0 is None else (perf_counter_ns() - self.measure_start) / NS

    # -- the result ----------------------------------------------------------------------------------

    def summary(self, duration_s: float) -> dict[str, Any]:
        """The result's summary on the data so far (judged each second by --abort-on-fail: the target's
        figures, a walk over the whole series, only when a threshold asks for them)."""
        return run_summary(self, duration_s)

    def document(self) -> dict[str, Any]:
        """The JSON-ready result document on the data so far (built in squall.collector.outcome)."""
        return run_document(self)
