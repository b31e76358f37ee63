"""The collector's sinks, fed by hand: what each one does with a second, a tick and the final document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from squall.collector.aggregate import Aggregate, Second
from squall.collector.collector import Collector
from squall.collector.sinks import (
    SINKS,
    AbortSink,
    CheckpointSink,
    Once,
    PrometheusSink,
    Sink,
    Totals,
    default_sinks,
)
from squall.plan.plan import Outputs, Plan, assemble
from squall.plan.specs import RequestSpec, SoakSpec
from squall.plan.stop import Stop
from squall.plan.thresholds import parse_threshold


@dataclass
class FakeTotals:
    """The collector as a sink sees it, with a clock the test sets."""

    plan: Plan
    elapsed: float = 0.0
    p99_ms: float = 0.0
    agg: Aggregate = field(default_factory=Aggregate)
    series: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    second: Second | None = None
    received: int = 0
    started_at: float = 0.0
    t0: int | None = 0
    closing: bool = False
    aborts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    supervisor: bool = True
    doc: dict[str, Any] = field(default_factory=dict)
    warned: set[Once] = field(default_factory=set)
    unwritten_files: dict[str, str] = field(default_factory=dict)

    def elapsed_s(self) -> float:
        return self.elapsed

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {"requests": 10, "errors": 0, "latency_ms": {"p99": self.p99_ms}}

    def document(self) -> dict[str, Any]:
        return dict(self.doc)

    def abort(self, reason: str) -> bool:
        self.aborts.append(reason)
        return self.supervisor

    def warn(self, text: str, once: Once | None = None) -> None:
        if once is not None:
            if once in self.warned:
                return
            self.warned.add(once)
        self.warnings.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def unwritten(self, output: str, why: str) -> None:
        if output not in self.unwritten_files:
            self.unwritten_files[output] = why
            self.warn(f"could not write {output}: {why}")


def _plan(**kw: Any) -> Plan:
    return assemble(RequestSpec("http://127.0.0.1:1/"), duration_s=60.0, **kw)


def test_the_abort_watcher_stops_a_run_once_a_threshold_failed_for_its_grace() -> None:
    plan = _plan(thresholds=(parse_threshold("p99<100ms"),), abort_on_fail=True, abort_grace_s=3.0)
    totals = FakeTotals(plan)
    sink = AbortSink(plan)
    for t, p99 in (
        (1, 150.0),
        (2, 150.0),
        (3, 50.0),
        (4, 150.0),
        (5, 150.0),
        (6, 150.0),
        (7, 150.0),
        (8, 150.0),
    ):
        totals.elapsed, totals.p99_ms = float(t), p99
        sink.on_second({}, totals)
    # Failing from 4 s on (3 s passed, so the first stretch did not count): aborted at 7 s, once.
    want = "threshold p99<100ms failed for 3 s: run aborted"
    assert totals.aborts == [want] and totals.warnings == [want]


def test_the_abort_watcher_is_quiet_while_the_run_closes() -> None:
    plan = _plan(thresholds=(parse_threshold("p99<100ms"),), abort_on_fail=True, abort_grace_s=0.0)
    totals = FakeTotals(plan, p99_ms=500.0, closing=True)
    AbortSink(plan).on_second({}, totals)
    assert totals.aborts == [] and totals.warnings == []


def test_the_plan_picks_the_sinks() -> None:
    def kinds(plan: Plan) -> list[str]:
        return [type(s).__name__ for s in default_sinks(plan, FakeTotals(plan))]

    assert kinds(_plan(quiet=True)) == []
    assert kinds(_plan(quiet=True, out_path="r.json")) == ["OutFileSink"]
    assert kinds(_plan(quiet=True, abort_on_fail=True, thresholds=(parse_threshold("p99<1s"),))) == [
        "AbortSink"
    ]
    assert kinds(_plan(quiet=True, soak=SoakSpec())) == ["CheckpointSink"]
    assert kinds(_plan(out_path="r.json")) == ["LiveSink", "OutFileSink"]


def test_every_output_in_feeding_order() -> None:
    plan = _plan(
        out_path="r.json",
        prometheus=("127.0.0.1", 0),
        soak=SoakSpec(),
        abort_on_fail=True,
        thresholds=(parse_threshold("p99<1s"),),
    )
    sinks = default_sinks(plan, FakeTotals(plan))
    try:
        assert list(SINKS) == ["live", "prometheus", "checkpoint", "abort", "out", "dashboard"]
        assert [type(s).__name__ for s in sinks] == [
            "LiveSink",
            "PrometheusSink",
            "CheckpointSink",
            "AbortSink",
            "OutFileSink",
        ]
    finally:
        for sink in sinks:
            if isinstance(sink, PrometheusSink):
                sink.on_final({})


class Beeper(Sink):
    """A made-up output: one entry in the registry and it is fed like the others."""

    def __init__(self) -> None:
        self.seconds = 0

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> Beeper | None:
        return cls() if plan.stop.duration_s is not None and plan.stop.duration_s > 30 else None

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        self.seconds += 1


def test_a_new_output_is_one_sink_and_one_registry_entry() -> None:
    makers = {**SINKS, "beeper": Beeper.for_plan}
    plan = _plan(quiet=True, out_path="r.json")
    got = default_sinks(plan, FakeTotals(plan), makers)
    assert [type(s).__name__ for s in got] == ["OutFileSink", "Beeper"]
    short = Plan(RequestSpec("http://127.0.0.1:1/"), stop=Stop(duration_s=5.0), outputs=Outputs(quiet=True))
    assert default_sinks(short, FakeTotals(short), makers) == []


def test_warnings_said_once_go_by_their_key_not_their_text() -> None:
    plan = _plan(quiet=True)
    c = Collector(plan, [], None, lambda _p, _t: [])
    c.warn("could not write the --hdr-log: disk full", Once.HDR_LOG)
    c.warn("could not write the --hdr-log: disk full again", Once.HDR_LOG)
    c.warn("target process 7 could not be sampled", Once.TARGET)
    c.warn("target process 7 exited during the run", Once.TARGET)
    c.warn("threshold p99<1s failed")
    c.warn("threshold p99<1s failed")  # without a key, every time
    assert c.warnings == [
        "could not write the --hdr-log: disk full",
        "target process 7 could not be sampled",
        "threshold p99<1s failed",
        "threshold p99<1s failed",
    ]


def test_a_checkpoint_that_cannot_be_written_is_an_unwritten_output_said_once(tmp_path: Any) -> None:
    out = str(tmp_path / "no" / "r.json")
    plan = _plan(out_path=out, soak=SoakSpec(checkpoint_s=1.0))
    verdict = {
        "rss_slope_mb_per_h": 1.5,
        "rss_slope_ci_mb_per_h": [0.5, 2.5],
        "fd_growth": 0,
        "leak_suspected": False,
        "subject": "target",
    }
    totals = FakeTotals(plan, elapsed=60.0, doc={"soak": verdict})
    sink = CheckpointSink.for_plan(plan, totals)
    assert sink is not None
    sink.on_tick(totals, final=False)  # (60 s measured: the first checkpoint is due)
    sink.due = 0
    sink.on_tick(totals, final=False)
    # Said once, though both checkpoints failed; the run will end in an error for it.
    assert len(totals.warnings) == 1
    assert totals.warnings[0].startswith(f"could not write checkpoint: {out}: No such file")
    assert list(totals.unwritten_files) == ["checkpoint"]
    note = "soak 60 s: target RSS +1.5 MB/h (+0.5 to +2.5), FD growth 0: no leak so far"
    assert totals.notes == [note, note]
    # Quiet: no note (and with no -o, no document is made at all).
    quiet = _plan(quiet=True, soak=SoakSpec(checkpoint_s=1.0))
    totals = FakeTotals(quiet, doc={"soak": verdict})
    sink = CheckpointSink.for_plan(quiet, totals)
    assert sink is not None
    sink.on_tick(totals, final=False)
    assert totals.notes == [] and totals.warnings == []


def test_the_first_checkpoint_comes_early_then_one_every_interval(tmp_path: Any) -> None:
    from time import perf_counter_ns

    out = tmp_path / "r.json"
    plan = _plan(quiet=True, out_path=str(out), soak=SoakSpec(checkpoint_s=60.0))
    totals = FakeTotals(plan, elapsed=4.9, doc={"soak": {}})  # measured seconds (after the warmup)
    sink = CheckpointSink.for_plan(plan, totals)
    assert sink is not None
    sink.on_tick(totals, final=False)
    assert sink.due is None and not out.exists()
    totals.elapsed = 5.0  # 5 s in, not 60
    sink.on_tick(totals, final=False)
    assert out.exists()
    assert sink.due is not None and sink.due - perf_counter_ns() > 50 * 10**9  # then the interval
