"""Where a run's numbers go while it runs and when it ends: one Sink each, handed to the collector.

The collector accumulates; sinks render. Adding an output is one Sink class (it decides from the plan whether
it applies: `for_plan`) and one entry in `SINKS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from enum import Enum
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

from squall.hist import merge_into, new_histogram
from squall.plan.plan import Plan

if TYPE_CHECKING:
    from squall.collector.aggregate import Aggregate, Second
    from squall.plan.load import Shape

NS = 1_000_000_000
FIRST_CHECKPOINT_S = 5.0  # a soak's first checkpoint, measured s: a kill soon after the start keeps it


class Once(Enum):
    """A warning said at most once a run, however often its cause recurs (the key, not its text, decides)."""

    TARGET = "target"  # the target process could not be sampled, or exited
    HDR_LOG = "hdr_log"  # the --hdr-log could not be written


class Totals(Protocol):
    """What a sink may read from the collector (and what it may do: warn, note, abort)."""

    plan: Plan
    agg: Aggregate
    series: list[dict[str, Any]]
    second: Second | None  # the merged second just turned into `series[-1]`
    received: int  # windows received so far
    started_at: float  # wall-clock time the collector started
    t0: int | None  # the run's start (perf_counter_ns), once the supervisor has sent it
    closing: bool  # every worker has finished: the final seconds are being flushed
    stop_asked: (
        str | None
    )  # the run is stopping early for this reason (Ctrl-C, SIGTERM, a threshold, the page)
    changes: list[dict[str, Any]]  # the dashboard's changes of users or rate so far (meta.changes)
    pids: dict[int, int]  # worker index -> pid
    shape: Shape | None  # the load's shape as steered so far (None: a plain run, not steered)

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

    def warn(self, text: str, once: Once | None = None) -> None:
        """Add a warning to the result (only the first of those with the same `once` key)."""
        ...

    def steer(
        self, users: int | None = None, rate: float | None = None, by: str = "dashboard"
    ) -> dict[str, Any]:
        """Change the users or rate from now on (every worker within a second); raises PlanError."""
        ...

    def stop_run(self, reason: str = "interrupted", by: str | None = None) -> bool:
        """Stop the run as Ctrl-C would (`by`: who asked, meta.stopped_by); False when there is no
        supervisor to ask."""
        ...

    def unwritten(self, output: str, why: str) -> None:
        """An output could not be written: the result says so and the run ends in an error."""
        ...

    def note(self, text: str) -> None:
        """Tell the user something while the run goes on (the live view prints it; quiet runs drop it)."""
        ...


class Sink:
    """An output fed by the collector; every hook does nothing unless overridden."""

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> Sink | None:
        """This output for `plan`, or None when the plan does not ask for it."""
        raise NotImplementedError

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        """A measured second ended: `entry` is its series entry; `totals` the run so far."""

    def on_tick(self, totals: Totals, final: bool) -> None:
        """The collector's loop turned (at least twice a second); `final` once, after the last second."""

    def on_warning(self, text: str) -> None:
        """A warning arose during the run (a worker lost)."""

    def on_note(self, text: str) -> None:
        """A sink told the user something while the run goes on (Totals.note)."""

    def on_final(self, doc: dict[str, Any]) -> None:
        """The run's result document; a sink may add a warning to it (before the supervisor gets it)."""


SinkFactory = Callable[[Plan, Totals], list[Sink]]  # what the supervisor hands the collector
SinkMaker = Callable[[Plan, Totals], Sink | None]  # one output for a plan, or None


class LiveSink(Sink):
    """The terminal's live line (stderr), its warnings and notes."""

    def __init__(self, plan: Plan) -> None:
        from squall.report.live import LiveView

        self.view = LiveView(plan)

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> LiveSink | None:
        """Unless --quiet."""
        return None if plan.outputs.quiet else cls(plan)

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        self.view.update(entry, totals.agg, totals.elapsed_s())

    def on_warning(self, text: str) -> None:
        self.view.warn(text)

    def on_note(self, text: str) -> None:
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
            totals.warn(f"--prometheus-port: cannot listen on {plan.outputs.prometheus}: {e.strerror or e}")

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> PrometheusSink | None:
        """With --prometheus-port."""
        return None if plan.outputs.prometheus is None else cls(plan, totals)

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

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.noting = (
            not plan.outputs.quiet
        )  # each checkpoint's leak verdict so far, as a note above the live line
        self.due: int | None = None  # the next checkpoint (perf_counter ns), once the run has started
        self.interval = new_histogram()  # latency since the last checkpoint, for the HDR interval log
        self.interval_start = 0.0
        self.log_started = False

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> CheckpointSink | None:
        """Soak runs."""
        return None if plan.soak is None else cls(plan)

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        if self.plan.outputs.hdr_log and totals.second is not None:
            merge_into(self.interval, totals.second.latency)

    def on_tick(self, totals: Totals, final: bool) -> None:
        soak = self.plan.soak
        if totals.t0 is None:
            return
        now = perf_counter_ns()
        if self.due is None and not final:
            # The first one early in the measured time (after the warmup), then one every checkpoint_s.
            if totals.elapsed_s() < min(FIRST_CHECKPOINT_S, soak.checkpoint_s):
                return
        elif not final and now < self.due:  # type: ignore[operator]
            return
        self.due = now + int(soak.checkpoint_s * NS)
        if self.plan.outputs.hdr_log and self.interval.get_total_count():
            try:
                self._log_interval(totals)
            except (OSError, ValueError) as e:  # the log is a by-product: it must never end the run
                totals.warn(f"could not write the --hdr-log: {e}", Once.HDR_LOG)
        if final or not (self.plan.outputs.out_path or self.noting):
            return  # the final document is written by the -o sink
        doc = totals.document()
        verdict = doc.get("soak", {})
        if self.noting and verdict.get("rss_slope_mb_per_h") is not None:
            lo, hi = verdict["rss_slope_ci_mb_per_h"]
            leak = "leak suspected" if verdict["leak_suspected"] else "no leak so far"
            totals.note(
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
                at = f"(at {totals.elapsed_s():.0f} s)"
                totals.unwritten("checkpoint", f"{self.plan.outputs.out_path}: {e.strerror or e} {at}")

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

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> AbortSink | None:
        """With --abort-on-fail and a threshold to watch."""
        return cls(plan) if plan.stop.abort_on_fail and plan.thresholds else None

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
                totals.warn(reason)


class OutFileSink(Sink):
    """-o: the result, written by the collector process (so a killed main process still leaves it)."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> OutFileSink | None:
        """With -o."""
        return cls(plan.outputs.out_path) if plan.outputs.out_path else None

    def on_final(self, doc: dict[str, Any]) -> None:
        from squall.report.json import write_json

        try:
            write_json(doc, self.path)
        except OSError as e:
            # The document goes on to the supervisor, which says it was not written and exits non-zero.
            why = f"{self.path}: {e.strerror or e}"
            doc.setdefault("unwritten", {})["-o"] = why
            doc["warnings"].append(f"could not write -o {why}")


def dashboard_sink(plan: Plan, totals: Totals) -> Sink | None:
    """--dashboard: the live page and its API (squall.collector.dashboard)."""
    if plan.outputs.dashboard is None:
        return None
    from squall.collector.dashboard import DashboardSink

    return DashboardSink.for_plan(plan, totals)


# name -> what makes that output for a plan (None: the plan does not ask for it), in the order the sinks are
# fed: the -o file last, so it sees every warning.
SINKS: dict[str, SinkMaker] = {
    "live": LiveSink.for_plan,
    "prometheus": PrometheusSink.for_plan,
    "checkpoint": CheckpointSink.for_plan,
    "abort": AbortSink.for_plan,
    # -o before the dashboard: its last event says "done" once the file is there.
    "out": OutFileSink.for_plan,
    "dashboard": dashboard_sink,
}


def default_sinks(plan: Plan, totals: Totals, makers: Mapping[str, SinkMaker] = SINKS) -> list[Sink]:
    """The sinks a plan asks for, made by `makers` (SINKS), in their order."""
    made = (make(plan, totals) for make in makers.values())
    return [sink for sink in made if sink is not None]
