"""A run's outcome from the collector's state: the result document, its summary, its verdict and warnings."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from squall.collector.recovery import spike_recovery
from squall.collector.result import (
    Verdict,
    build_result,
    build_summary,
    host_info,
    nothing_answered,
    plan_meta,
    plan_outline,
    target_summary,
)
from squall.collector.verdicts import (
    box_delayed,
    busy_box_warning,
    host_busy,
    limit_warning,
    others_cpu_pct,
    over_limits,
    self_check,
)
from squall.engine.limits import limit_warnings
from squall.hist import decode as hist_decode
from squall.plan.plan import Plan
from squall.result.document import USAGE_ERROR
from squall.wire import Progress

if TYPE_CHECKING:
    from squall.collector.collector import Collector

NS = 1_000_000_000


def run_summary(collector: Collector, duration_s: float) -> dict[str, Any]:
    """The result's summary on the data so far (judged each second by --abort-on-fail: the target's
    figures, a walk over the whole series, only when a threshold asks for them)."""
    outline = plan_outline(collector.plan, collector.agg)
    wanted = any(t.on_target for t in collector.plan.thresholds)
    return build_summary(
        collector.agg,
        collector.parts,
        duration_s,
        outline,
        target_summary(collector.series) if wanted else None,
    )


def run_document(collector: Collector) -> dict[str, Any]:
    """The JSON-ready result document on the data so far."""
    plan, agg = collector.plan, collector.agg
    measured = max(0, agg.t_last - int(plan.stop.warmup_s * NS)) / NS if agg.t_first is not None else 0.0
    if plan.stop.duration_s is not None and set(collector.done.values()) == {"duration"}:
        # Requests completing in the drain were sent in time: the run lasted its duration, unless the
        # generator fell so far behind that completions ran on past the drain.
        late = measured > plan.stop.duration_s + plan.stop.drain_s + plan.window_s
        duration_s = measured if late else plan.stop.duration_s
    else:
        duration_s = measured
    stop_reasons = sorted(set(collector.done.values()) | set(collector.cut.values()))
    if collector.stop_asked in stop_reasons:
        # Ctrl-C, SIGTERM or a threshold ended some worker: it ended the run; the workers that had
        # finished before it (their count done, say) did not.
        stop_reasons = [collector.stop_asked]
    verdict, checked = _verdict(collector, stop_reasons)
    target = target_summary(collector.series)
    verdict = dataclasses.replace(
        verdict, warnings=verdict.warnings + _data_warnings(collector, duration_s, target)
    )
    doc = build_result(
        plan_meta(plan, collector.started_at, collector.load_epoch, collector.pids, stop_reasons),
        agg,
        collector.parts,
        duration_s,
        plan_outline(plan, agg),
        collector.series,
        host_info(),
        verdict,
        plan.thresholds,
        target,
    )
    if not verdict.valid or checked.get("timings_unreliable") or checked.get("host_busy"):
        doc["self_check"] = checked
    if collector.refused and set(collector.refused) == set(collector.lost) and not agg.counters["requests"]:
        doc[USAGE_ERROR] = collector.refused[min(collector.refused)]
    if plan.soak is not None:
        from squall.collector.leaks import verdicts

        doc["soak"] = verdicts(collector.series, plan.soak, in_process=plan.py is not None)
    if collector.changes:
        doc["meta"]["changes"] = [dict(c) for c in collector.changes]
    if collector.stopped_by is not None:
        doc["meta"]["stopped_by"] = collector.stopped_by
    recovery = spike_recovery(collector.series, collector.shape, plan.stop.warmup_s)
    if recovery is not None:
        doc["summary"]["recovery"] = recovery
    if collector.scraper is not None:
        doc["target_metrics"] = collector.scraper.summary()
    if collector.unwritten_files:
        doc["unwritten"] = dict(collector.unwritten_files)
    stalled = collector.stalls.doc(collector.pids, collector.measure_start)
    if stalled:
        doc["stalled"] = stalled
    if collector.error_samples:
        doc["error_samples"] = dict(sorted(collector.error_samples.items()))
    if "tracemalloc" in collector.notes:
        doc["tracemalloc"] = collector.notes["tracemalloc"]
    return doc


def _data_warnings(collector: Collector, duration_s: float, target: dict[str, Any] | None) -> list[str]:
    """What the numbers lack: no answer at all (refused, timed out), no target samples for a bound."""
    plan, agg = collector.plan, collector.agg
    out = []
    summary = agg.summary(duration_s, open_model=False)  # (its counts and rates)
    timeout = f"--timeout {plan.client.timeout_s:g}s"
    said = nothing_answered(summary, in_process=plan.py is not None, timeout=timeout)
    if said is not None:
        out.append(said)
    on_target = [t.expr for t in plan.thresholds if t.on_target]
    if on_target and target is None:
        why = (
            "no target process was sampled: give --target-pid PID (or, with soak, --target-cmd CMD)"
            if plan.target_pid is None
            else f"target process {plan.target_pid} gave no sample in the measured seconds"
        )
        out.append(f"{', '.join(on_target)} cannot be judged (no data, so it fails): {why}")
    return out


def _verdict(collector: Collector, stop_reasons: list[str]) -> tuple[Verdict, dict[str, Any]]:
    """Valid or not, the warnings that say why, and what the self-check found (for the console)."""
    plan, c = collector.plan, collector.agg.counters
    limits = (plan.self_check.cpu_limit_pct, plan.self_check.loop_lag_limit_ms, plan.self_check.span)
    over = over_limits(collector.cpu, collector.lag, *limits)
    others = others_cpu_pct(collector.series, os.cpu_count() or 1)
    # A py workload shares the worker's loop: its blocking calls are its own lag, busy box or not.
    delayed = [] if plan.py is not None else box_delayed(collector.cpu, over["loop_lag"], others)
    reasons = self_check(collector.cpu, collector.lag, *limits, excused=delayed)
    if c["unsent"]:
        reasons.append(f"squall fell behind its schedule and never sent {c['unsent']} due requests")
    stalled = collector.stalls.doc(collector.pids, collector.measure_start)
    for stall in stalled:
        reasons.append(
            f"worker {stall['worker']} stalled: it sent no window for {stall['for_s']:.1f} s from "
            f"{stall['at_s']:.1f} s (the process was suspended, or its event loop blocked)"
        )
    generator_limited = bool(reasons)
    warnings = list(collector.warnings)
    if collector.scraper is not None:
        warnings.extend(collector.scraper.warnings())
    limited = [limit_warning(r, in_process=plan.py is not None) for r in reasons]
    warnings.extend(limited)
    warnings.extend(limit_warnings(collector.agg.error_kinds))  # connects that met this box's limits
    if "keys_pooled" in collector.notes:  # (a scenario's worker met more keys than it keeps apart)
        cap = max(collector.notes["keys_pooled"].values())
        warnings.append(
            f'summary.by_key: keys past the first {cap} of a worker are counted together as "other"'
        )
    if c["dropped"]:
        warnings.append(
            f"{c['dropped']} requests due by the schedule were never sent: every connection was busy; "
            "the target is slower than the asked rate, or raise --connections"
        )
    # A timed run ends with requests in flight; cancelling a few after the drain is the end working (they
    # stay in summary.interrupted): worth a warning only when they are a share the numbers miss.
    if c["interrupted"] and 100 * c["interrupted"] >= c["requests"]:  # 1 % or more
        n = c["interrupted"]
        warnings.append(
            f"{n} requests were still in flight at the end, and cancelled: answers slower than the "
            f"drain ({plan.stop.drain_s:g} s) are missing from the numbers"
        )
    if "internal" in collector.error_samples:
        n = collector.agg.error_kinds.get("internal", 0)
        cost = f"{n:,} requests were counted as `internal`" if n else "no request was lost to it"
        warnings.append(
            f"squall hit an internal error and went on ({cost}); the first traceback is in the "
            "result's error_samples.internal: please report it"
        )
    if c["overflow"]:
        warnings.append(f"{c['overflow']} values exceeded the histogram range (1 h) and were clamped")
    if plan.spread.start_at is not None and collector.load_epoch - plan.spread.start_at > 1.0:
        warnings.append(
            f"the load started {collector.load_epoch - plan.spread.start_at:.1f} s after --start-at: "
            "this shard was late, so merged seconds near the start hold fewer shards"
        )
    valid = not collector.lost and not generator_limited
    if "no worker started" in stop_reasons:
        valid = False
        warnings.append("no worker process started within 30 s, so nothing was sent")
    if "supervisor lost" in stop_reasons:  # the main process was killed: the run was cut where it stood
        valid = False
        warnings.append(
            "the main squall process died (killed?) and the run stopped there; the collector wrote what "
            "the workers had recorded"
        )
    busy = host_busy(others)
    top = collector.sampler.top_others() if busy and collector.sampler is not None else []
    if delayed and others is not None:  # (delayed only when the box was busy)
        warnings.append(
            busy_box_warning(others, top, delayed, plan.self_check.loop_lag_limit_ms, plan.self_check.span)
        )
    checked = {
        "reasons": limited,
        "cpu_workers": over["cpu"],
        "loop_lag_workers": over["loop_lag"],
        "cpu_limit_pct": plan.self_check.cpu_limit_pct,
        "loop_lag_limit_ms": plan.self_check.loop_lag_limit_ms,
        "span_s": plan.self_check.span,
        "unsent": c["unsent"],
        "box_delayed_workers": delayed,
        "others_cpu_pct": others,
        "stalled": sorted({s["worker"] for s in stalled}),
        # squall was the limit (generator_limited), or the box was busy and delayed it: either way the
        # timings carry a delay that is not the target's.
        "host_busy": busy,
        "top_others": top,
        "timings_unreliable": generator_limited or bool(delayed),
    }
    lost = {str(w): why for w, why in sorted(collector.lost.items())}
    return Verdict(valid, generator_limited, lost, warnings), checked


def orphan_document(
    plan: Plan,
    pids: dict[int, int],
    started_at: float,
    load_epoch: float,
    why: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The result the supervisor writes when the collector died: the totals of the collector's last
    Progress (no per-second series), the cause, never valid."""
    from squall.collector.collector import Collector  # (collector.py imports this module)

    c = Collector(plan, [], None, lambda _p, _t: [])
    c.started_at, c.load_epoch, c.pids = started_at, load_epoch, dict(pids)
    for worker in range(plan.spread.workers):
        c.done[worker] = "collector lost"
        c.lost[worker] = f"its later numbers went to the collector, which died ({why})"
    if progress is None:
        kept = "the numbers the workers had sent it are lost; this result holds only what the run was"
    else:
        agg = c.agg
        for k, v in progress.counters.items():
            agg.counters[k] = v
        agg.status_codes.update(progress.status_codes)
        agg.error_kinds.update(progress.error_kinds)
        for name, blob in progress.histograms.items():
            agg.hists[name] = hist_decode(blob)
        agg.t_first, agg.t_last = progress.t_first, progress.t_last
        kept = "this result holds the totals up to its last second; the per-second series is lost"
    c.warn(f"the collector process died ({why}): {kept}")
    return run_document(c)
