"""Judgements over aggregates: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence


def sustained(values: Sequence[float | None], limit: float, span: int) -> bool:
    """True when at least `span` consecutive values are at or above `limit` (None breaks a run)."""
    run = 0
    for v in values:
        run = run + 1 if v is not None and v >= limit else 0
        if run >= span:
            return True
    return False


def self_check(
    cpu: dict[int, list[float | None]],
    loop_lag_p99_ms: dict[int, list[float | None]],
    cpu_limit: float,
    lag_limit_ms: float,
    span: int,
) -> list[str]:
    """Reasons the generator, not the target, limited the run (empty when it did not)."""
    reasons = []
    for worker in sorted(cpu):
        if sustained(cpu[worker], cpu_limit, span):
            reasons.append(f"worker {worker} CPU stayed at or above {cpu_limit:g}% for {span} s")
    for worker in sorted(loop_lag_p99_ms):
        if sustained(loop_lag_p99_ms[worker], lag_limit_ms, span):
            reasons.append(
                f"worker {worker} event loop ran late (timer lateness p99 > {lag_limit_ms:g} ms) for {span} s"
            )
    return reasons
