"""The result document, assembled once: from a run's totals (the collector) or from results (squall merge)."""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import time
from typing import Any

from squall import __version__
from squall.collector.aggregate import Aggregate, keys_summary, part_doc, parts_summary, turns_summary
from squall.plan.plan import Plan
from squall.plan.thresholds import judge
from squall.redact import redact_doc
from squall.result.document import SCHEMA

CUSTOM = "custom:"  # how the document's raw `counters` keep squall.sdk.count() totals


@dataclasses.dataclass(frozen=True, slots=True)
class Outline:
    """What the summary is made of besides the totals: the model, and the scenario's names in order."""

    open_model: bool = False
    llm: bool = False
    steps: tuple[str, ...] = ()
    journeys: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the numbers can be trusted, and the sentences that say why not."""

    valid: bool
    generator_limited: bool
    workers_lost: dict[str, str]
    warnings: list[str]


def build_summary(
    agg: Aggregate,
    parts: dict[tuple[str, str], Aggregate] | None,
    duration_s: float,
    outline: Outline,
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The result's `summary` from the totals (and the parts' totals, when they are known; the target
    process's figures, when it was sampled)."""
    summary = agg.summary(duration_s, outline.open_model)
    if outline.llm:
        summary["llm"] = agg.llm_summary(duration_s, outline.open_model)
    if agg.custom:
        summary["counters"] = dict(sorted(agg.custom.items()))
    if parts is not None:
        summary.update(parts_summary(parts, duration_s, list(outline.steps), list(outline.journeys)))
        if outline.llm and any(kind == "turn" for kind, _ in parts):
            summary["llm"]["by_turn"] = turns_summary(parts)
        if any(kind == "key" for kind, _ in parts):
            summary["by_key"] = keys_summary(parts, outline.llm)
    if target is not None:
        summary["target"] = target
    return summary


def target_summary(series: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`summary.target` from the measured seconds' samples of the target process (--target-pid, soak's
    --target-cmd): mean and highest CPU % (100 is one core), highest and last RSS; None when none came."""
    samples = [e["target"] for e in series if e.get("target")]
    cpu = [t["cpu"] for t in samples if t.get("cpu") is not None]
    rss = [t["rss_mb"] for t in samples if t.get("rss_mb") is not None]
    if not cpu and not rss:
        return None
    return {
        "samples": len(samples),
        "cpu_mean_pct": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "cpu_max_pct": max(cpu) if cpu else None,
        "rss_max_mb": max(rss) if rss else None,
        "rss_last_mb": rss[-1] if rss else None,
    }


# What a request that got no HTTP answer ran into, in words any count can precede ("5 could not connect").
_NO_ANSWER = {
    "connect": "could not connect (connect: refused, unreachable or no such host)",
    "timeout": "timed out (timeout: no complete answer within {timeout})",
    "tls": "failed the TLS handshake (tls)",
    "reset": "saw the connection reset or closed before an answer (reset)",
    "truncated": "had the answer cut off after its head (truncated)",
    "protocol": "got bytes that are not HTTP/1.1 (protocol)",
    "ports_exhausted": "found no free local port on this box (ports_exhausted)",
    "fd_exhausted": "found no free file descriptor on this box (fd_exhausted)",
    "bad_request": "could not be built (bad_request)",
    "internal": "hit a bug in squall (internal)",
}
_NAMED = 3  # the most frequent kinds named; the rest summed


def nothing_answered(
    summary: dict[str, Any], in_process: bool = False, timeout: str = "--timeout"
) -> str | None:
    """A warning in plain words when requests ended but none got an HTTP answer (a py run: no iteration
    completed), naming what they ran into, most frequent first; None when something answered or nothing
    ended at all."""
    answered = sum(summary.get("status_codes", {}).values())  # (a py run: its completed iterations)
    failed = sorted(summary.get("error_kinds", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    interrupted = summary.get("interrupted", 0)
    if answered or not (failed or interrupted):
        return None
    words = []
    for kind, n in failed[:_NAMED]:
        if in_process and kind != "timeout":
            words.append(f"{n:,} raised {kind}")
        else:
            words.append(f"{n:,} " + _NO_ANSWER.get(kind, f"failed ({kind})").format(timeout=timeout))
    rest = failed[_NAMED:]
    if rest:
        words.append(f"{sum(n for _, n in rest):,} failed in {len(rest)} other ways")
    if interrupted:
        words.append(f"{interrupted:,} were still waiting when the run ended, and were cancelled")
    what = "no iteration completed" if in_process else "no request got an answer"
    rate = f"{summary.get('rps', 0.0):,.1f}/s" if in_process else f"{summary.get('rps', 0.0):,.1f} req/s"
    return (
        f"{what}: {', '.join(words)}; so there is no latency to report (every percentile is null), "
        f"and the {rate} counts these failures (ok_rps {summary.get('ok_rps', 0.0):g})"
    )


def raw_counters(agg: Aggregate) -> dict[str, int]:
    """The document's `counters`: the raw totals, custom counts as "custom:NAME", for exact merges."""
    out = dict(agg.counters)
    out.update({CUSTOM + name: n for name, n in agg.custom.items()})
    return dict(sorted(out.items()))


def split_counters(counters: dict[str, int], into: Aggregate) -> None:
    """Add a document's `counters` into an aggregate: the inverse of `raw_counters`."""
    for k, v in counters.items():
        if k.startswith(CUSTOM):
            name = k[len(CUSTOM) :]
            into.custom[name] = into.custom.get(name, 0) + v
        elif k == "retry_after_max_ms":  # a maximum, not a sum
            into.counters[k] = max(into.counters.get(k, 0), v)
        else:
            into.counters[k] = into.counters.get(k, 0) + v


def build_result(
    meta: dict[str, Any],
    agg: Aggregate,
    parts: dict[tuple[str, str], Aggregate] | None,
    duration_s: float,
    outline: Outline,
    series: list[dict[str, Any]],
    host: dict[str, Any],
    verdict: Verdict,
    thresholds: tuple[Any, ...] = (),
    target: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole result document; `parts` None leaves the step and phase sections out (an input had none);
    `target`: the target process's figures (`target_summary`)."""
    summary = build_summary(agg, parts, duration_s, outline, target)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": meta,
        "summary": summary,
        "histograms": {name: h.encode().decode() for name, h in sorted(agg.hists.items())},
        "counters": raw_counters(agg),
        "timeseries": series,
    }
    if parts is not None:
        doc["parts"] = {f"{k}:{n}": part_doc(part) for (k, n), part in sorted(parts.items())}
    doc.update(
        {
            "host": host,
            "valid": verdict.valid,
            "generator_limited": verdict.generator_limited,
            "workers_lost": verdict.workers_lost,
            "warnings": verdict.warnings,
        }
    )
    if thresholds:
        doc["thresholds"] = judge(thresholds, summary)
    return redact_doc(doc)


def plan_outline(plan: Plan, agg: Aggregate) -> Outline:
    """A run's outline from its plan (the transport records the open model's schedule lag itself)."""
    sc = plan.scenario
    return Outline(
        open_model=plan.open_model and sc is None and plan.py is None,
        llm=plan.llm is not None or "e2e" in agg.hists,
        steps=tuple(sc.step_names) if sc is not None else (),
        journeys=tuple((j.name, j.weight) for j in sc.journeys) if sc is not None else (),
    )


def plan_meta(
    plan: Plan, started_at: float, load_epoch: float, pids: dict[int, int], stop_reasons: list[str]
) -> dict[str, Any]:
    """The result's `meta`: what was asked for, by which squall, where and when."""
    open_model = plan.open_model
    return {
        "command": plan.command,
        "version": __version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_at)),
        "started_at_epoch": round(load_epoch, 6),
        "shard": list(plan.spread.shard) if plan.spread.shard else None,
        # A py run has no URL: it names its workload instead.
        "url": plan.request.url if plan.py is None else f"py:{plan.py.target}",
        "method": plan.request.method if plan.py is None else "CALL",
        "transport": plan.client.transport,
        "workers": plan.spread.workers,
        "connections": plan.load.connections,
        "rate": plan.load.rate,
        "arrival": plan.load.arrival if open_model else None,
        "burstiness": plan.load.burstiness if open_model and plan.load.arrival == "gamma" else None,
        "model": "open" if open_model else "closed",
        "duration_s": plan.stop.duration_s,
        "requests": plan.stop.requests,
        "warmup_s": plan.stop.warmup_s,
        "timeout_s": plan.client.timeout_s,
        # Processes, imports and connections before the load started (not in the measured time).
        "setup_s": round(max(0.0, load_epoch - started_at), 3) if plan.spread.start_at is None else None,
        "source_ips": list(plan.client.source_ips) or None,
        "shape": None
        if plan.load.shape is None
        else {
            "kind": plan.load.shape.kind,
            "stages": [{"duration_s": s.duration_s, "target": s.target} for s in plan.load.shape.stages],
        },
        "think": None if plan.load.think is None else dataclasses.asdict(plan.load.think),
        "scenario": None if plan.scenario is None else plan.scenario.source,
        "py": None if plan.py is None else {"target": plan.py.target, "params": dict(plan.py.params)},
        "host": socket.gethostname(),
        "pids": {str(w): p for w, p in sorted(pids.items())},
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
            "turns": plan.llm.turns,
            "max_inflight": plan.llm.max_inflight,
            "prefixes": len(plan.llm.prefixes),
            "exact_output": plan.llm.exact_output,
            "cancel_after_s": plan.llm.cancel_after,
            "cancel_rate": plan.llm.cancel_rate,
            "trace": {"lines": len(plan.llm.trace_offsets), "span_s": round(plan.llm.trace_offsets[-1], 3)}
            if plan.llm.trace_offsets
            else None,
        },
    }


def host_info() -> dict[str, Any]:
    """The result's `host`: the machine the generator ran on."""
    import psutil

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_mb": psutil.virtual_memory().total // (1024 * 1024),
    }
