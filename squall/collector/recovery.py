"""How fast the target recovers after a spike: seconds until p99 (and TTFT p99) are back near the baseline.

Pure: from the per-second series and the load shape (as run: a dashboard's changes make a steered shape).

- The spike is the first stretch where the shape rises from a level L > 0 to a peak P >= 1.5 L and then
  comes back down to L + 25 % of the rise or less (or below L); it starts where the rise starts and ends
  where the fall reaches its next corner (the load is back down). A shape that only goes up, or rises from
  0, has none.
- The baseline is the median of the per-second p99 of the whole seconds at level L before the spike (from
  when the shape last reached L, so a ramp up to it is left out; seconds with nothing answered skipped).
- Recovery is the first second after the spike's end from which p99 stays within 10 % of the baseline
  (at most 1.1 x baseline) for 3 consecutive seconds (so one lucky second does not count); its value is
  the seconds from the spike's end to that second's start, null when it never did within the run.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from squall.plan.load import Closed, Open, Shape, Stage, steer_base, steered

RISE = 1.5  # the peak is at least this many times the level before it
BACK = 0.25  # back down: within this share of the rise above the level before
WITHIN = 0.10  # recovered: p99 at most this much above the baseline
STREAK = 3  # for this many consecutive seconds


def _knots(shape: Shape) -> list[tuple[float, float]]:
    """The shape's corners (s since t0, target): it starts at 0 and moves linearly between them."""
    out, t = [(0.0, 0.0)], 0.0
    for st in shape.stages:
        t += st.duration_s
        out.append((t, float(st.target)))
    return out


def _spike(knots: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The knots where the first spike's rise starts and its fall ends."""
    for i in range(len(knots) - 1):
        level = knots[i][1]
        if level <= 0 or knots[i + 1][1] <= level:
            continue
        peak = level
        for j in range(i + 1, len(knots)):
            v = knots[j][1]
            peak = max(peak, v)
            if peak >= RISE * level and v <= level + BACK * (peak - level):
                return i, j
    return None


def find_spike(shape: Shape | None) -> tuple[float, float, float, float] | None:
    """The first spike of `shape` as (start s, end s, level before, peak), in s since t0; None without one."""
    if shape is None:
        return None
    knots = _knots(shape)
    found = _spike(knots)
    if found is None:
        return None
    i, j = found
    return knots[i][0], knots[j][0], knots[i][1], max(v for _, v in knots[i : j + 1])


def _level_since(shape: Shape) -> float:
    """When the shape last reached the level its spike rises from (within 10 %): the baseline's start."""
    knots = _knots(shape)
    found = _spike(knots)
    assert found is not None
    i = found[0]
    since, level = knots[i]
    for t, v in reversed(knots[:i]):
        if abs(v - level) > WITHIN * level:
            break
        since = t
    return since


def _window(series: list[dict[str, Any]]) -> float:
    steps = [b["t"] - a["t"] for a, b in itertools.pairwise(series) if b["t"] > a["t"]]
    return min(steps) if steps else 1.0


def _baseline(seconds: list[dict[str, Any]], field: str) -> tuple[float | None, int]:
    values = [e[field] for e in seconds if e.get(field) is not None]
    return (round(statistics.median(values), 3), len(values)) if values else (None, 0)


def _recovered_after(
    after: list[dict[str, Any]], field: str, baseline: float, end_s: float, window: float
) -> float | None:
    """Seconds from `end_s` (measured) to the start of the first of STREAK consecutive seconds within
    WITHIN of `baseline`; a second with nothing answered, or a gap in the series, breaks a streak."""
    run_start: float | None = None
    count, last_t = 0, None
    for e in after:
        t = e["t"]
        value = e.get(field)
        contiguous = last_t is not None and abs(t - last_t - window) < window / 2
        last_t = t
        if value is None or value > baseline * (1 + WITHIN):
            count, run_start = 0, None
            continue
        if count and contiguous:
            count += 1
        else:
            count, run_start = 1, t - window
        if count >= STREAK:
            return round(max(0.0, run_start - end_s), 3)  # type: ignore[operator]
    return None


def spike_recovery(
    series: list[dict[str, Any]], shape: Shape | None, warmup_s: float
) -> dict[str, Any] | None:
    """summary.recovery for a shape that steps up and back down (--profile spike, such stages, or changes
    that did so): the seconds after the spike ended until p99 (and TTFT p99) came back within 10 % of the
    pre-spike baseline, or None for each that never did; None for a shape with no spike. `shape` is in s
    since t0; the series' t is measured s (t0 + warmup)."""
    spike = find_spike(shape)
    if spike is None or not series or shape is None:
        return None
    start, end, _, _ = spike
    start_m, end_m = round(start - warmup_s, 3), round(end - warmup_s, 3)
    window = _window(series)
    if start_m >= series[-1]["t"]:
        return None  # the run ended before its spike began
    since_m = _level_since(shape) - warmup_s
    whole = [e for e in series if not e.get("partial")]
    before = [e for e in whole if e["t"] - window >= since_m - 1e-9 and e["t"] <= start_m + 1e-9]
    after = [e for e in series if e["t"] - window >= end_m - 1e-9]
    llm = any("ttft_p99" in e for e in series)
    out: dict[str, Any] = {"spike_start_s": start_m, "spike_end_s": end_m}
    notes = []
    recovered = True
    for field, prefix in (("p99", ""), ("ttft_p99", "ttft_")):
        if field == "ttft_p99" and not llm:
            out["ttft_baseline_p99_ms"] = out["ttft_p99_recovered_after_s"] = None
            continue
        baseline, n = _baseline(before, field)
        out[f"{prefix}baseline_p99_ms"] = baseline
        if field == "p99":
            out["baseline_seconds"] = n
        got = None if baseline is None else _recovered_after(after, field, baseline, end_m, window)
        out[f"{prefix}p99_recovered_after_s"] = got
        recovered = recovered and got is not None
        name = "TTFT p99" if prefix else "p99"
        if baseline is None:
            notes.append(f"no whole second answered before the spike to take a {name} baseline from")
        elif got is None:
            if not after:
                notes.append(f"the run ended when the spike did: {name} had no time to recover")
            else:
                notes.append(
                    f"{name} never stayed within {WITHIN:.0%} of its baseline for {STREAK} seconds in a row "
                    f"in the {len(after)} s after the spike"
                )
    out["recovered"] = recovered
    if notes:
        out["note"] = "; ".join(notes)
    return out


def meta_shape(meta: dict[str, Any]) -> Shape | None:
    """The load shape a result's meta describes, as run: its stages (`meta.shape`) steered by its
    `meta.changes` (for recomputing summary.recovery of merged results)."""
    doc = meta.get("shape")
    shape = None
    if isinstance(doc, dict) and doc.get("stages"):
        stages = tuple(Stage(float(s["duration_s"]), float(s["target"])) for s in doc["stages"])
        shape = Shape(str(doc.get("kind", "users")), stages)
    changes = meta.get("changes") or []
    if not changes:
        return shape
    load = (
        Open(rate=float(meta.get("rate") or 0.0))
        if meta.get("model") == "open"
        else Closed(connections=int(meta.get("connections") or 0))
    )
    kind, base = steer_base(load)
    warmup = float(meta.get("warmup_s") or 0.0)
    points = [(float(c["t"]) + warmup, float(c.get(kind, c.get("users", c.get("rate", 0))))) for c in changes]
    return steered(shape, kind, base, points)
