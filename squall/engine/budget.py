"""Stop rules, worker side: whether one more send may go, and why the run stopped (pure: no clock, no I/O).

The rules are a request count (-n; sends in the warmup are free), a deadline (-d: the closed model arms a
timer for it, the open model's schedule ends at it) and an abort (Stop from the supervisor, SIGTERM, the
supervisor lost, the deadline's timer): the first stop wins and names the run's end.
"""

from __future__ import annotations

from typing import ClassVar


class Count:
    """At most `left` more sends from `measure_start` on; sends before it (the warmup) are free."""

    __slots__ = ("left", "measure_start")
    reason: ClassVar[str] = "requests"

    def __init__(self, left: int, measure_start: int = 0) -> None:
        self.left = left
        self.measure_start = measure_start

    def take(self, t_ns: int) -> bool:
        """Whether a send at t_ns may go; it uses up one of the count if it is measured."""
        if t_ns < self.measure_start:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self) -> None:
        """A measured send that was taken but never went out (dropped) does not use up the count."""
        self.left += 1

    @property
    def spent(self) -> bool:
        return self.left <= 0


class Abort:
    """Stopped from outside (or by the deadline's timer): no send goes once `reason` is set."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason = ""

    def take(self, t_ns: int) -> bool:
        """Whether a send may go: until the stop."""
        return not self.reason

    def stop(self, reason: str) -> bool:
        """Stop for `reason`; False if already stopped (the first reason stands)."""
        if self.reason:
            return False
        self.reason = reason
        return True


class Budget:
    """One worker's stop rules at once: `take(t_ns)` says whether a send due at t_ns may go."""

    __slots__ = ("abort", "count", "deadline", "measure_start")

    def __init__(self, requests: int | None, measure_start: int = 0, deadline: int | None = None) -> None:
        self.abort = Abort()
        self.count = None if requests is None else Count(requests, measure_start)
        self.measure_start = measure_start
        self.deadline = deadline  # when -d ends the run (measure_start + duration), in perf_counter ns

    def begin(self, measure_start: int, deadline: int | None) -> None:
        """Place the run in time once its t0 is known: the warmup ends at measure_start, -d at deadline."""
        self.measure_start = measure_start
        self.deadline = deadline
        if self.count is not None:
            self.count.measure_start = measure_start

    def take(self, t_ns: int) -> bool:
        """Whether a send due at t_ns may go: not once stopped, nor once the count is spent."""
        if self.abort.reason:
            return False
        return self.count is None or self.count.take(t_ns)

    def stop(self, reason: str) -> bool:
        """Stop for `reason`; False if the run was already stopping."""
        return self.abort.stop(reason)

    def give_back(self, t_ns: int) -> None:
        """A send due at t_ns was taken but dropped: it does not use up the count."""
        if self.count is not None and t_ns >= self.measure_start:
            self.count.give_back()

    @property
    def stopped(self) -> bool:
        return bool(self.abort.reason)

    @property
    def spent(self) -> bool:
        """The count is used up (never, without -n)."""
        return self.count is not None and self.count.spent

    @property
    def reason(self) -> str:
        """Why the run ended: the stop's reason, else "requests" (the count was spent)."""
        return self.abort.reason or Count.reason
