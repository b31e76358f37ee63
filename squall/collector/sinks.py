"""Where a run's numbers go while it runs and when it ends: one Sink each, handed to the collector.

The collector accumulates; sinks render. Adding an output is one class here and one line in `default_sinks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

from squall.hist import merge_into, new_histogram
from squall.plan.plan import Plan

if TYPE_CHECKING:
    from squall.collector.aggregate import Aggregate, Second

NS = 1_000_000_000


class Totals(Protocol):
    """What a sink may read from the collector (and the two things it may do: warn, abort)."""

    plan: Plan
    agg: Aggregate
    series: list[dict[str, Any]]
    warnings: list[str]
    second: Second | None  # the merged second just turned into `series[-1]`
    received: int  # windows received so far
    started_at: float  # wall-clock time the collector started
    t0: int | None  # the run's start (perf_counter_ns), once the supervisor has sent it
    closing: bool  # every worker has finished: the final seconds are being flushed

    def elapsed_s(self) -> float:
        """Measured seconds since the load started (after warmup)."""
        ...

    def summary(self, duration_s: float) -> dict[str, Any]:
        """The result's summary on the data so far."""
        ...

    def document(self) -> dict[str, Any]:
        """The result document on the data so far."""
        ...

    def abort(self, reason: str) -> bool:
        """Ask the supervisor to stop the run; False when there is no supervisor to ask."""
        ...


class Sink:
    """An output fed by the collector; every hook does nothing unless overridden."""

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        """A measured second ended: `entry` is its series entry; `totals` the run so far."""

    def on_tick(self, totals: Totals, final: bool) -> None:
        """The collector's loop turned (at least twice a second); `final` once, after the last second."""

    def on_warning(self, text: str) -> None:
        """A warning arose during the run (a worker lost)."""

    def on_final(self, doc: dict[str, Any]) -> None:
        """The run's result document; a sink may add a warning to it (before the supervisor gets it)."""


SinkFactory = Callable[[Plan, Totals], list[Sink]]


class LiveSink(Sink):
    """The terminal's live line (stderr), its warnings and notes."""

    def __init__(self, plan: Plan) -> None:
        from squall.report.live import LiveView

        self.view = LiveView(plan)

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        self.view.update(entry, totals.agg, totals.elapsed_s())

    def on_warning(self, text: str) -> None:
        self.view.warn(text)

    def note(self, text: str) -> None:
        """Print a line above the live one."""
        self.view.note(text)

    def on_final(self, doc: dict[str, Any]) -> None:
        self.view.close()


class PrometheusSink(Sink):
    """The live `/metrics` endpoint, rendered from the cumulative totals."""

    def __init__(self, plan: Plan, totals: Totals) -> None:
        from squall.collector.prometheus import MetricsServer

        self.server: MetricsServer | None = None
        self.last_publish = perf_counter_ns()
        self.seen = 0
        try:
            self.server = MetricsServer(*plan.outputs.prometheus)  # type: ignore[misc]
        except OSError as e:
            totals.warnings.append(
                f"--prometheus-port: cannot listen on {plan.outputs.prometheus}: {e.strerror or e}"
            )

    def on_tick(self, totals: Totals, final: bool) -> None:
        if self.server is None:
            return
        now = perf_counter_ns()
        fresh = totals.received != self.seen
        # New windows are rendered within 0.2 s (a scrape sees a short run's counts before it ends); 64
        # workers' windows falling due together still cost one rendering.
        if not final and now - self.last_publish < (NS // 5 if fresh else NS):
            return
        self.last_publish, self.seen = now, totals.received
        from squall.collector.prometheus import render

        last = totals.series[-1] if totals.series else {}
        gauges = {
            k: last[k] for k in ("inflight", "users", "target_rps", "target_users") if last.get(k) is not None
        }
        gauges["elapsed_seconds"] = round(totals.elapsed_s(), 3)
        agg = totals.agg
        self.server.text = render(agg.counters, agg.status_codes, agg.error_kinds, agg.hists, gauges)

    def on_final(self, doc: dict[str, Any]) -> None:
        if self.server is not None:
            self.server.close()


class CheckpointSink(Sink):
    """Soak runs: every checkpoint_s, the cumulative result to -o and the interval to the HDR log."""

    def __init__(self, plan: Plan, note: Callable[[str], None] | None) -> None:
        self.plan = plan
        self.note = note
        self.last = perf_counter_ns()
        self.interval = new_histogram()  # latency since the last checkpoint, for the HDR interval log
        self.interval_start = 0.0
        self.log_started = False

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        if self.plan.outputs.hdr_log and totals.second is not None:
            merge_into(self.interval, totals.second.latency)

    def on_tick(self, totals: Totals, final: bool) -> None:
        soak = self.plan.soak
        if totals.t0 is None:
            return
        now = perf_counter_ns()
        if not final and now - self.last < soak.checkpoint_s * NS:
            return
        self.last = now
        if self.plan.outputs.hdr_log and self.interval.get_total_count():
            try:
                self._log_interval(totals)
            except (OSError, ValueError) as e:  # the log is a by-product: it must never end the run
                if not any("--hdr-log" in w for w in totals.warnings):
                    totals.warnings.append(f"could not write the --hdr-log: {e}")
        if final or not (self.plan.outputs.out_path or self.note is not None):
            return  # the final document is written by the -o sink
        doc = totals.document()
        verdict = doc.get("soak", {})
        if self.note is not None and verdict.get("rss_slope_mb_per_h") is not None:
            lo, hi = verdict["rss_slope_ci_mb_per_h"]
            leak = "leak suspected" if verdict["leak_suspected"] else "no leak so far"
            self.note(
                f"soak {totals.elapsed_s():,.0f} s: {verdict.get('subject', 'target')} "
                f"RSS {verdict['rss_slope_mb_per_h']:+,.1f} MB/h "
                f"({lo:+,.1f} to {hi:+,.1f}), FD growth {verdict['fd_growth']}: {leak}"
            )
        if self.plan.outputs.out_path:
            from squall.report.json import write_json

            doc["checkpoint"] = {"at_s": round(totals.elapsed_s(), 3), "final": False}
            try:
                write_json(doc, self.plan.outputs.out_path)
            except OSError as e:
                if not any("checkpoint" in w for w in totals.warnings):
                    totals.warnings.append(
                        f"could not write a checkpoint to {self.plan.outputs.out_path}: {e}"
                    )

    def _log_interval(self, totals: Totals) -> None:
        from hdrh.log import HistogramLogWriter

        started_at = totals.started_at
        # A new run starts a new log (a rerun with the same -o must not append to the last one's).
        with open(self.plan.outputs.hdr_log, "a" if self.log_started else "w") as f:  # type: ignore[arg-type]
            writer = HistogramLogWriter(f)
            if not self.log_started:
                writer.output_comment("squall latency (µs), one interval per checkpoint")
                writer.output_log_format_version()
                # (hdrh's output_start_time takes ms as seconds; the line is written here instead)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started_at))
                # Whole ms, rounded down: no interval (its start truncated to ms) may begin before it.
                start_ms = int(started_at * 1000) / 1000
                f.write(f"#[StartTime: {start_ms:.3f} (seconds since epoch), {stamp}]\n")
                writer.output_legend()
                self.log_started = True
            start = self.interval_start
            end = totals.elapsed_s() + self.plan.stop.warmup_s
            self.interval.set_start_time_stamp(int((started_at + start) * 1000))
            self.interval.set_end_time_stamp(int((started_at + end) * 1000))
            writer.output_interval_histogram(self.interval, max_value_unit_ratio=1000.0)
            self.interval_start = end
        self.interval = new_histogram()


class AbortSink(Sink):
    """--abort-on-fail: stop once a threshold has failed, on the data so far, for the grace period."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.failing_since: float | None = None
        self.aborted = False

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        from squall.plan.thresholds import judge

        if self.aborted or totals.closing:
            return
        elapsed = totals.elapsed_s()
        failed = [
            v["expr"]
            for v in judge(self.plan.thresholds, totals.summary(max(elapsed, 1e-9)))
            if not v["ok"] and v["value"] is not None  # no data yet (nothing answered) is not a failure yet
        ]
        if not failed:
            self.failing_since = None
            return
        if self.failing_since is None:
            self.failing_since = elapsed
        if elapsed - self.failing_since >= self.plan.stop.abort_grace_s:
            self.aborted = True
            reason = (
                f"threshold {', '.join(failed)} failed for {self.plan.stop.abort_grace_s:g} s: run aborted"
            )
            if totals.abort(reason):
                totals.warnings.append(reason)


class OutFileSink(Sink):
    """-o: the result, written by the collector process (so a killed main process still leaves it)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_final(self, doc: dict[str, Any]) -> None:
        from squall.report.json import write_json

        try:
            write_json(doc, self.path)
        except OSError as e:
            doc["warnings"].append(f"could not write {self.path}: {e.strerror or e}")


def default_sinks(plan: Plan, totals: Totals) -> list[Sink]:
    """The sinks a plan asks for, in the order they are fed (the -o file last: it sees every warning)."""
    sinks: list[Sink] = []
    live = None if plan.outputs.quiet else LiveSink(plan)
    if live is not None:
        sinks.append(live)
    if plan.outputs.prometheus is not None:
        sinks.append(PrometheusSink(plan, totals))
    if plan.soak is not None:
        sinks.append(CheckpointSink(plan, live.note if live is not None else None))
    if plan.stop.abort_on_fail and plan.thresholds:
        sinks.append(AbortSink(plan))
    if plan.outputs.out_path:
        sinks.append(OutFileSink(plan.outputs.out_path))
    return sinks
