"""The collector process: receive windows, merge them, sample processes, show progress, build the result."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import time
from multiprocessing.connection import Connection, wait
from time import perf_counter_ns
from typing import Any

import psutil

from squall import __version__
from squall.collector.aggregate import Aggregate, second_entry
from squall.collector.sampler import Sampler
from squall.collector.verdicts import self_check
from squall.engine.procname import set_process_name
from squall.engine.recorder import LOOP_LAG_P99
from squall.plan import Plan
from squall.report.console import LiveView
from squall.report.json import write_json
from squall.thresholds import judge
from squall.wire import Abort, Done, Failed, Final, Hello, Start, Window, WireError, decode, encode

NS = 1_000_000_000
SCHEMA = "squall/result@1"


def collector_main(plan: Plan, conns: list[Connection], sup: Connection) -> None:
    """Process entry point. Ignores Ctrl-C: it ends when every worker has finished or died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_process_name("squall-collect")
    Collector(plan, conns, sup).run()


class Collector:
    """Owns the Aggregate, the Sampler and the live view for one run."""

    def __init__(self, plan: Plan, conns: list[Connection], sup: Connection) -> None:
        self.plan = plan
        self.conns = {conn: i for i, conn in enumerate(conns)}
        self.sup: Connection | None = sup
        self.agg = Aggregate()
        self.pids: dict[int, int] = {}
        self.last_seq: dict[int, int] = {}
        self.live: set[int] = set(range(len(conns)))
        self.lost: dict[int, str] = {}
        self.done: dict[int, str] = {}
        self.cpu: dict[int, list[float | None]] = {i: [] for i in range(len(conns))}
        self.lag: dict[int, list[float | None]] = {i: [] for i in range(len(conns))}
        self.series: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.t0: int | None = None
        self.started_at = time.time()
        self.sampler: Sampler | None = None
        self.last_sample = 0
        self.failing_since: float | None = None
        self.aborted = False
        self.view = None if plan.quiet else LiveView(plan)

    # -- main loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        while self.live:
            waitables: list[Any] = [c for c, i in self.conns.items() if i in self.live]
            if self.sup is not None:
                waitables.append(self.sup)
            for conn in wait(waitables, 0.5):
                if conn is self.sup:
                    self._on_supervisor()
                else:
                    self._on_worker(conn)  # type: ignore[arg-type]
            self._flush_seconds()
        self._flush_seconds(final=True)
        doc = self.result()
        if self.view is not None:
            self.view.close()
        if self.plan.out_path:
            try:
                write_json(doc, self.plan.out_path)
            except OSError as e:
                doc["warnings"].append(f"could not write {self.plan.out_path}: {e.strerror or e}")
        if self.sup is not None:
            with contextlib.suppress(OSError):
                self.sup.send_bytes(encode(Final(doc)))

    def _on_supervisor(self) -> None:
        assert self.sup is not None
        try:
            msg = decode(self.sup.recv_bytes())
        except (EOFError, OSError):
            self.sup = None  # orphaned: workers notice too and stop; we still write plan.out_path
            return
        if isinstance(msg, Start):
            self.t0 = msg.t0
            self.measure_start = msg.t0 + int(self.plan.warmup_s * NS)
            self.sampler = Sampler(self.pids, self.plan.target_pid)
            self.last_sample = perf_counter_ns()
            if self.sampler.target_lost:
                self.warnings.append(f"target process {self.plan.target_pid} could not be sampled")

    def _on_worker(self, conn: Connection) -> None:
        worker = self.conns[conn]
        try:
            msg = decode(conn.recv_bytes())
        except (EOFError, OSError):
            self._lose(worker, "exited without finishing")
            return
        except WireError as e:
            self._lose(worker, str(e))
            return
        if isinstance(msg, Window):
            lag_us = msg.counters.pop(LOOP_LAG_P99, None)  # before the merge: a percentile, not a count
            self.agg.add(msg)
            self.last_seq[worker] = msg.seq
            self.lag[worker].append(lag_us / 1000 if lag_us is not None else None)
        elif isinstance(msg, Hello):
            self.pids[worker] = msg.pid
        elif isinstance(msg, Done):
            self.done[worker] = msg.reason
            self.live.discard(worker)
        elif isinstance(msg, Failed):
            self._lose(worker, msg.error.strip().splitlines()[-1] if msg.error.strip() else "failed")

    def _lose(self, worker: int, why: str) -> None:
        if worker in self.live:
            self.live.discard(worker)
            self.lost[worker] = why
            pid = self.pids.get(worker, "?")
            self.warnings.append(f"worker {worker} (pid {pid}) was lost: {why}")
            if self.view is not None:
                self.view.warn(self.warnings[-1])

    # -- per second ----------------------------------------------------------------------------------

    def _sample(self) -> dict[str, Any] | None:
        # Taken when a second's last window arrives, i.e. just after that second ended, so CPU % covers it.
        now = perf_counter_ns()
        if self.sampler is None or now - self.last_sample < self.plan.window_s * NS / 2:
            return None
        self.last_sample = now
        s = self.sampler.sample()
        for w, v in s["worker_cpu"].items():
            self.cpu[w].append(v)
        if self.sampler.target_lost and not any("target process" in w for w in self.warnings):
            self.warnings.append(f"target process {self.plan.target_pid} exited during the run")
        return s

    def _flush_seconds(self, final: bool = False) -> None:
        if final:
            upto = max(self.agg.pending, default=0)
        else:
            live_seqs = [self.last_seq.get(w, -(10**9)) for w in self.live]
            upto = min(live_seqs) if live_seqs else max(self.agg.pending, default=0)
        for sec in self.agg.pop_seconds(upto):
            sample = self._sample()
            if sec.seq < 1:
                # Warmup. A counted request can land here only when the boundary tick ran late: it belongs
                # to the first measured second, so the series still sums to the summary.
                if sec.counters.get("requests"):
                    self.agg.carry_into(sec, 1)
                continue
            entry = second_entry(sec, self.plan.window_s)
            if self.plan.rate is not None:
                entry["target_rps"] = self.plan.rate
            if sample is not None:
                entry.update(sample)
            self.series.append(entry)
            if self.view is not None:
                self.view.update(entry, self.agg, self._elapsed_s())
            if self.plan.abort_on_fail and not final:
                self._check_abort()

    def _check_abort(self) -> None:
        """--abort-on-fail: stop once a threshold has failed, on the data so far, for the grace period."""
        if self.aborted or self.sup is None or not self.plan.thresholds:
            return
        elapsed = self._elapsed_s()
        failed = [
            v["expr"] for v in judge(self.plan.thresholds, self._summary(max(elapsed, 1e-9))) if not v["ok"]
        ]
        if not failed:
            self.failing_since = None
            return
        if self.failing_since is None:
            self.failing_since = elapsed
        if elapsed - self.failing_since >= self.plan.abort_grace_s:
            self.aborted = True
            reason = f"threshold {', '.join(failed)} failed for {self.plan.abort_grace_s:g} s: run aborted"
            self.warnings.append(reason)
            with contextlib.suppress(OSError):
                self.sup.send_bytes(encode(Abort(reason)))

    def _elapsed_s(self) -> float:
        return 0.0 if self.t0 is None else (perf_counter_ns() - self.measure_start) / NS

    # -- the result ----------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        """The JSON-ready result document."""
        plan = self.plan
        agg = self.agg
        open_model = plan.open_model
        measure_offset = int(plan.warmup_s * NS)
        measured = max(0, agg.t_last - measure_offset) / NS if agg.t_first is not None else 0.0
        if plan.duration_s is not None and set(self.done.values()) == {"duration"}:
            # Requests completing in the drain were sent in time: the run lasted its duration, unless the
            # generator fell so far behind that completions ran on past the drain.
            late = measured > plan.duration_s + plan.drain_s + plan.window_s
            duration_s = measured if late else plan.duration_s
        else:
            duration_s = measured
        reasons = self_check(
            self.cpu, self.lag, plan.cpu_limit_pct, plan.loop_lag_limit_ms, plan.self_check_span
        )
        if agg.counters["unsent"]:
            reasons.append(
                f"squall fell behind its schedule and never sent {agg.counters['unsent']} due requests"
            )
        generator_limited = bool(reasons)
        warnings = list(self.warnings)
        for r in reasons:
            warnings.append(
                f"generator-limited: {r}; the numbers describe squall's ceiling, not the target's"
            )
        c = agg.counters
        if c["dropped"]:
            warnings.append(
                f"{c['dropped']} requests due by the schedule were never sent: every connection was busy; "
                "the target is slower than the asked rate, or raise --connections"
            )
        if c["interrupted"]:
            warnings.append(f"{c['interrupted']} requests were still in flight at the end and were cancelled")
        if c["overflow"]:
            warnings.append(f"{c['overflow']} values exceeded the histogram range (1 h) and were clamped")
        valid = not self.lost and not generator_limited
        summary = self._summary(duration_s)
        stop_reasons = sorted(set(self.done.values()))
        return {
            "schema": SCHEMA,
            "meta": {
                "command": plan.command,
                "version": __version__,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
                "url": plan.request.url,
                "method": plan.request.method,
                "transport": plan.transport,
                "workers": plan.workers,
                "connections": plan.connections,
                "rate": plan.rate,
                "arrival": plan.arrival if open_model else None,
                "model": "open" if open_model else "closed",
                "duration_s": plan.duration_s,
                "requests": plan.requests,
                "warmup_s": plan.warmup_s,
                "timeout_s": plan.timeout_s,
                "host": socket.gethostname(),
                "pids": {str(w): p for w, p in sorted(self.pids.items())},
                "stop_reason": stop_reasons[0] if len(stop_reasons) == 1 else ",".join(stop_reasons),
                "llm": None
                if plan.llm is None
                else {
                    "api": plan.llm.api,
                    "stream": plan.llm.stream,
                    "model": plan.llm.model,
                    "max_tokens": plan.llm.max_tokens,
                    "prompts": len(plan.llm.prompts),
                    "api_keys": len(plan.llm.api_keys),
                    "goodput": [f"{m}<{v * 1000:g}ms" for m, v in plan.llm.goodput],
                },
            },
            "summary": summary,
            "histograms": {name: h.encode().decode() for name, h in sorted(agg.hists.items())},
            "timeseries": self.series,
            "host": {
                "hostname": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "memory_mb": psutil.virtual_memory().total // (1024 * 1024),
            },
            "valid": valid,
            "generator_limited": generator_limited,
            "workers_lost": {str(w): why for w, why in sorted(self.lost.items())},
            "warnings": warnings,
        } | ({"thresholds": judge(plan.thresholds, summary)} if plan.thresholds else {})

    def _summary(self, duration_s: float) -> dict[str, Any]:
        plan, agg = self.plan, self.agg
        summary = agg.summary(duration_s, plan.open_model)
        if plan.llm is not None:
            summary["llm"] = agg.llm_summary(duration_s, plan.open_model)
        return summary
