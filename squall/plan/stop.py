"""When a run stops: after a duration or a count, after an unmeasured warmup, or early on a failing bound."""

from __future__ import annotations

from dataclasses import dataclass

from squall.units import MAX_SECONDS, PlanError

MAX_COUNT = 2**62


@dataclass(frozen=True, slots=True)
class Stop:
    """Measure for `duration_s` or until `requests` are answered (the first to come; one of them is given
    once validated), after `warmup_s` unmeasured; `drain_s` lets answers in flight land; with
    `abort_on_fail` a threshold failing for `abort_grace_s` ends the run."""

    duration_s: float | None = None
    requests: int | None = None
    warmup_s: float = 0.0
    drain_s: float = 2.0
    abort_on_fail: bool = False
    abort_grace_s: float = 5.0

    def validate(self) -> None:
        """Raise PlanError for a duration, count, warmup, drain or grace out of range."""
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_SECONDS:
            raise PlanError("--duration must be greater than 0 and at most 30 days")
        if self.requests is not None and not 1 <= self.requests <= MAX_COUNT:
            raise PlanError(f"--requests must be from 1 to {MAX_COUNT} (got {self.requests})")
        if not 0 <= self.warmup_s <= MAX_SECONDS:
            raise PlanError("--warmup must be from 0 to 30 days")
        if self.drain_s < 0:
            raise PlanError("drain time must not be negative")
        if not 0 <= self.abort_grace_s <= MAX_SECONDS:
            raise PlanError("--abort-grace must be from 0 to 30 days")
