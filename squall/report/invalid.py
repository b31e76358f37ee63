"""Why a result is not valid, and what to do about it, in plain words (for the console and the report)."""

from __future__ import annotations

from typing import Any

from squall.collector.verdicts import BUSY_PCT


def _workers(ids: list[int]) -> str:
    return ("worker " if len(ids) == 1 else "workers ") + ", ".join(str(w) for w in ids)


def why_not_valid(doc: dict[str, Any]) -> list[str]:
    """Why a result is not valid and what to do about it, in plain words: one sentence per cause."""
    out = []
    meta = doc.get("meta") or {}
    stop = meta.get("stop_reason") or ""
    if "no worker started" in stop:
        out.append(
            "no worker process started, so nothing was sent. What to do: check that this box can start "
            "processes (memory, process limits) and run again."
        )
    if "supervisor lost" in stop:
        out.append(
            "the main squall process died during the run, so the load stopped early. What to do: run again "
            "and keep the main process alive (a killed terminal or an out-of-memory kill end it)."
        )
    if "collector lost" in stop:
        out.append(
            "the collector process died during the run, and the numbers the workers had sent it with it. "
            "What to do: run again; if it was killed for memory, use a shorter run or fewer workers."
        )
    for stall in doc.get("stalled") or ():
        out.append(
            f"worker {stall['worker']} stalled: it sent no numbers for {stall['for_s']:.1f} s from "
            f"{stall['at_s']:.1f} s (its process was suspended, or its event loop blocked), so the load it "
            "was to send did not go out then. What to do: keep the box from suspending squall (no "
            "kill -STOP, enough memory); in a py workload, do not block the loop (await, not time.sleep)."
        )
    lost = {} if "collector lost" in stop else doc.get("workers_lost") or {}  # (the collector said it all)
    for worker, why in sorted(lost.items()):
        out.append(
            f"worker {worker} was lost ({why}), so its share of the load was never measured. What to do: "
            "fix what the warning names; if it ran out of memory, use fewer connections/streams or more "
            "workers."
        )
    check = doc.get("self_check") or {}
    span = check.get("span_s", 3)
    if check.get("unsent") and meta.get("model") == "open":
        out.append(
            f"the rate was not delivered: squall fell behind its schedule and never sent {check['unsent']:,} "
            "due requests. What to do: use more workers (-w), fewer connections/streams, a lower rate, "
            "or a quieter box."
        )
    if check.get("cpu_workers"):
        out.append(
            f"the generator's CPU was the limit: {_workers(check['cpu_workers'])} stayed at or above "
            f"{check['cpu_limit_pct']:g}% CPU for {span} s, so the numbers are squall's ceiling, not the "
            "target's. What to do: use fewer connections/streams or more workers (-w), or a quieter box."
        )
    delayed = set(check.get("box_delayed_workers") or ())
    lagging = [w for w in check.get("loop_lag_workers") or () if w not in delayed]
    if lagging:
        out.append(
            f"the generator's event loop ran late: {_workers(lagging)} woke more than "
            f"{check['loop_lag_limit_ms']:g} ms late (p99) for {span} s, so latencies include squall's own "
            "delay. What to do: use fewer connections/streams or more workers (-w), or a quieter box."
        )
    if not out and doc.get("generator_limited"):
        out.append(
            "the generator, not the target, was the limit (see the warnings). What to do: use fewer "
            "connections/streams or more workers (-w), or a quieter box."
        )
    others = check.get("others_cpu_pct")
    if out and others is not None and others >= BUSY_PCT:  # context for the reasons, never a reason alone
        out.append(
            f"the box was also busy: other processes used {others:.0f}% of its CPU during the run, taking "
            "time from squall. What to do: run on a quieter box (or stop what else runs here)."
        )
    return out
