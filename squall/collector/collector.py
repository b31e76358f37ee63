"""The collector process: receive windows, merge them, sample processes, show progress, build the result."""

from __future__ import annotations

import contextlib
import dataclasses
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
from squall.collector.aggregate import Aggregate, Second, part_doc, parts_summary, second_entry
from squall.collector.sampler import Sampler
from squall.collector.verdicts import self_check
from squall.engine.procname import set_process_name
from squall.engine.recorder import LOOP_LAG_P99
from squall.hist import merge_into, new_histogram
from squall.plan.plan import Plan
from squall.plan.thresholds import judge
from squall.report.console import LiveView
from squall.report.json import write_json
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
        self.parts: dict[str, Aggregate] = {}  # scenario runs: "step:NAME" and "journey:NAME" totals
        self.error_samples: dict[str, str] = {}  # py runs: the first traceback of each exception type
        self.notes: dict[str, dict[str, Any]] = {}  # py runs: per-worker notes (tracemalloc growth)
        self.last_checkpoint = self.last_publish = perf_counter_ns()
        self.fresh = False  # a window arrived since /metrics was last rendered
        self.interval = new_histogram()  # latency since the last checkpoint, for the HDR interval log
        self.interval_start = 0.0
        self.log_started = False
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
        self.load_epoch = self.started_at  # t0 on the wall clock, once Start gives t0
        self.sampler: Sampler | None = None
        self.last_sample = 0
        self.failing_since: float | None = None
        self.aborted = False
        self.view = None if plan.quiet else LiveView(plan)
        self.metrics = None
        if plan.prometheus is not None:
            from squall.collector.prometheus import MetricsServer

            try:
                self.metrics = MetricsServer(*plan.prometheus)
            except OSError as e:
                self.warnings.append(
                    f"--prometheus-port: cannot listen on {plan.prometheus}: {e.strerror or e}"
                )

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
            self._checkpoint()
            self._publish()
        self._flush_seconds(final=True)
        self._checkpoint(final=True)
        self._publish(final=True)
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
        if self.metrics is not None:
            self.metrics.close()

    def _publish(self, final: bool = False) -> None:
        """Refresh the /metrics rendering: soon after new windows arrive, else once a second."""
        if self.metrics is None:
            return
        now = perf_counter_ns()
        # New windows are rendered within 0.2 s (a scrape sees a short run's counts before it ends); 64
        # workers' windows falling due together still cost one rendering.
        if not final and now - self.last_publish < (NS // 5 if self.fresh else NS):
            return
        self.last_publish = now
        self.fresh = False
        from squall.collector.prometheus import render

        last = self.series[-1] if self.series else {}
        gauges = {
            k: last[k] for k in ("inflight", "users", "target_rps", "target_users") if last.get(k) is not None
        }
        gauges["elapsed_seconds"] = round(self._elapsed_s(), 3)
        agg = self.agg
        self.metrics.text = render(agg.counters, agg.status_codes, agg.error_kinds, agg.hists, gauges)

    def _checkpoint(self, final: bool = False) -> None:
        """Soak runs: every checkpoint_s, the cumulative result to --out and the interval to the HDR log."""
        soak = self.plan.soak
        if soak is None or self.t0 is None:
            return
        now = perf_counter_ns()
        if not final and now - self.last_checkpoint < soak.checkpoint_s * NS:
            return
        self.last_checkpoint = now
        if self.plan.hdr_log and self.interval.get_total_count():
            try:
                self._log_interval()
            except (OSError, ValueError) as e:  # the log is a by-product: it must never end the run
                if not any("--hdr-log" in w for w in self.warnings):
                    self.warnings.append(f"could not write the --hdr-log: {e}")
        if not final and (self.plan.out_path or self.view is not None):
            doc = self.result()
            verdict = doc.get("soak", {})
            if self.view is not None and verdict.get("rss_slope_mb_per_h") is not None:
                lo, hi = verdict["rss_slope_ci_mb_per_h"]
                leak = "leak suspected" if verdict["leak_suspected"] else "no leak so far"
                self.view.note(
                    f"soak {self._elapsed_s():,.0f} s: {verdict.get('subject', 'target')} "
                    f"RSS {verdict['rss_slope_mb_per_h']:+,.1f} MB/h "
                    f"({lo:+,.1f} to {hi:+,.1f}), FD growth {verdict['fd_growth']}: {leak}"
                )
        if self.plan.out_path and not final:  # the final document is written by run() itself
            doc["checkpoint"] = {"at_s": round(self._elapsed_s(), 3), "final": False}
            try:
                write_json(doc, self.plan.out_path)
            except OSError as e:
                if not any("checkpoint" in w for w in self.warnings):
                    self.warnings.append(f"could not write a checkpoint to {self.plan.out_path}: {e}")

    def _log_interval(self) -> None:
        from hdrh.log import HistogramLogWriter

        # A new run starts a new log (a rerun with the same -o must not append to the last one's).
        with open(self.plan.hdr_log, "a" if self.log_started else "w") as f:  # type: ignore[arg-type]
            writer = HistogramLogWriter(f)
            if not self.log_started:
                writer.output_comment("squall latency (µs), one interval per checkpoint")
                writer.output_log_format_version()
                # (hdrh's output_start_time takes ms as seconds; the line is written here instead)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started_at))
                # Whole ms, rounded down: no interval (its start truncated to ms) may begin before it.
                start_ms = int(self.started_at * 1000) / 1000
                f.write(f"#[StartTime: {start_ms:.3f} (seconds since epoch), {stamp}]\n")
                writer.output_legend()
                self.log_started = True
            start = self.interval_start
            end = self._elapsed_s() + self.plan.warmup_s
            self.interval.set_start_time_stamp(int((self.started_at + start) * 1000))
            self.interval.set_end_time_stamp(int((self.started_at + end) * 1000))
            writer.output_interval_histogram(self.interval, max_value_unit_ratio=1000.0)
            self.interval_start = end
        self.interval = new_histogram()

    def _on_supervisor(self) -> None:
        assert self.sup is not None
        try:
            msg = decode(self.sup.recv_bytes())
        except (EOFError, OSError):
            self.sup = None  # orphaned: workers notice too and stop; we still write plan.out_path
            return
        if isinstance(msg, Start):
            self.t0 = msg.t0
            # t0 on the wall clock (later than now with --start-at): what merges align on.
            self.load_epoch = time.time() + (msg.t0 - perf_counter_ns()) / 1e9
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
            self.fresh = True
            for key, value in msg.notes.items():
                if key == "error_samples":
                    for kind, text in value.items():
                        if kind not in self.error_samples and len(self.error_samples) < 20:
                            self.error_samples[kind] = text
                else:
                    self.notes.setdefault(key, {})[str(worker)] = value
            for name, part in msg.parts.items():
                agg = self.parts.get(name)
                if agg is None:
                    agg = self.parts[name] = Aggregate(seconds=False)
                agg.add(part)
            self.last_seq[worker] = msg.seq
            # The self-check judges measured, whole seconds: a warmup's start-up and the last sliver of a
            # run would otherwise make three "seconds" of a 1 s hunt step.
            if msg.seq >= 1 and msg.t_end - msg.t_start >= 0.9 * self.plan.window_s * NS:
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
            if self.plan.hdr_log:
                merge_into(self.interval, sec.latency)
            entry = second_entry(sec, self.plan.window_s, hists=self.plan.soak is None)
            entry.update(self._targets(sec))
            if sample is not None:
                entry.update(sample)
            self.series.append(entry)
            if self.view is not None:
                self.view.update(entry, self.agg, self._elapsed_s())
            if self.plan.abort_on_fail and not final:
                self._check_abort()

    def _targets(self, sec: Second) -> dict[str, float]:
        """What the load shape asked for in this second, next to what was achieved (rps, users)."""
        plan, shape = self.plan, self.plan.shape
        if plan.open_model:
            if shape is None:
                return {"target_rps": plan.rate}  # type: ignore[dict-item]
            # The mean rate the shape asked for over the second: its area over the second's span.
            end = plan.warmup_s + sec.seq * plan.window_s
            asked = shape.area(end) - shape.area(end - plan.window_s)
            return {"target_rps": round(asked / plan.window_s, 3)}
        users = plan.connections
        if shape is not None:
            users = round(shape.value_at(plan.warmup_s + sec.seq * plan.window_s))
        return {"target_users": users, "users": sec.users}

    def _check_abort(self) -> None:
        """--abort-on-fail: stop once a threshold has failed, on the data so far, for the grace period."""
        if self.aborted or self.sup is None or not self.plan.thresholds:
            return
        elapsed = self._elapsed_s()
        failed = [
            v["expr"]
            for v in judge(self.plan.thresholds, self._summary(max(elapsed, 1e-9)))
            if not v["ok"] and v["value"] is not None  # no data yet (nothing answered) is not a failure yet
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
            if plan.py is not None:  # the workload shares the worker's loop: its own blocking counts here
                warnings.append(
                    f"generator-limited: {r}; the workload runs in squall's loop, so blocking calls in it "
                    "(or --tracemalloc's cost) show here too: the numbers describe this process's ceiling"
                )
                continue
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
            n = c["interrupted"]
            were = "request was" if n == 1 else "requests were"
            warnings.append(f"{n} {were} still in flight at the end, and cancelled")
        if c["overflow"]:
            warnings.append(f"{c['overflow']} values exceeded the histogram range (1 h) and were clamped")
        if plan.start_at is not None and self.load_epoch - plan.start_at > 1.0:
            warnings.append(
                f"the load started {self.load_epoch - plan.start_at:.1f} s after --start-at: this shard "
                "was late, so merged seconds near the start hold fewer shards"
            )
        valid = not self.lost and not generator_limited
        summary = self._summary(duration_s)
        stop_reasons = sorted(set(self.done.values()))
        if "no worker started" in stop_reasons:
            valid = False
            warnings.append("no worker process started within 30 s, so nothing was sent")
        if "supervisor lost" in stop_reasons:  # the main process was killed: the run was cut where it stood
            valid = False
            warnings.append(
                "the main squall process died (killed?) and the run stopped there; the collector wrote what "
                "the workers had recorded"
            )
        return (
            {
                "schema": SCHEMA,
                "meta": {
                    "command": plan.command,
                    "version": __version__,
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
                    "started_at_epoch": round(self.load_epoch, 6),
                    "shard": list(plan.shard) if plan.shard else None,
                    # A py run has no URL: it names its workload instead.
                    "url": plan.request.url if plan.py is None else f"py:{plan.py.target}",
                    "method": plan.request.method if plan.py is None else "CALL",
                    "transport": plan.transport,
                    "workers": plan.workers,
                    "connections": plan.connections,
                    "rate": plan.rate,
                    "arrival": plan.arrival if open_model else None,
                    "burstiness": plan.burstiness if open_model and plan.arrival == "gamma" else None,
                    "model": "open" if open_model else "closed",
                    "duration_s": plan.duration_s,
                    "requests": plan.requests,
                    "warmup_s": plan.warmup_s,
                    "timeout_s": plan.timeout_s,
                    "shape": None
                    if plan.shape is None
                    else {
                        "kind": plan.shape.kind,
                        "stages": [
                            {"duration_s": s.duration_s, "target": s.target} for s in plan.shape.stages
                        ],
                    },
                    "think": None if plan.think is None else dataclasses.asdict(plan.think),
                    "scenario": None if plan.scenario is None else plan.scenario.source,
                    "py": None
                    if plan.py is None
                    else {"target": plan.py.target, "params": dict(plan.py.params)},
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
                "counters": dict(sorted(agg.counters.items())),  # raw, for exact merges (squall merge)
                "timeseries": self.series,
                "parts": {name: part_doc(part) for name, part in sorted(self.parts.items())},
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
            }
            | ({"thresholds": judge(plan.thresholds, summary)} if plan.thresholds else {})
            | self._soak()
            | self._py()
        )

    def _py(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.error_samples:
            out["error_samples"] = dict(sorted(self.error_samples.items()))
        if "tracemalloc" in self.notes:
            out["tracemalloc"] = self.notes["tracemalloc"]
        return out

    def _soak(self) -> dict[str, Any]:
        if self.plan.soak is None:
            return {}
        from squall.studies.soak import verdicts

        return {"soak": verdicts(self.series, self.plan.soak, in_process=self.plan.py is not None)}

    def _summary(self, duration_s: float) -> dict[str, Any]:
        plan, agg = self.plan, self.agg
        open_model = plan.open_model and plan.scenario is None and plan.py is None  # the transport records
        summary = agg.summary(duration_s, open_model)
        if plan.llm is not None or "ttft" in agg.hists:
            summary["llm"] = agg.llm_summary(duration_s, open_model)
        custom = {k[7:]: v for k, v in agg.counters.items() if k.startswith("custom:")}
        if custom:
            summary["counters"] = dict(sorted(custom.items()))
        sc = plan.scenario
        steps = list(sc.step_names) if sc is not None else []
        journeys = [(j.name, j.weight) for j in sc.journeys] if sc is not None else []
        summary.update(parts_summary(self.parts, duration_s, steps, journeys))
        return summary
