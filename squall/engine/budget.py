"""Stop rules, worker side: whether one more send may go, when the clock ends the run, and why it ended.

Each rule is one small object (pure: no clock, no I/O). The driver asks `take(t_ns)` before each send, arms
a timer for the earliest `deadline`, and the worker names the run's end by `reason`. `STOP_RULES` builds the
rules a plan asks for: the abort (Stop from the supervisor, SIGTERM, the supervisor lost, a deadline's timer),
-d (a deadline: the closed model arms a timer for it, the open model's schedule ends at it) and -n (a count;
sends in the warmup are free). The first stop wins and names the run's end. A new rule is one class here (or
in its own module) and one entry in `STOP_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from squall.plan.plan import Plan

NS = 1_000_000_000


class StopRule:
    """One way a run ends; every hook lets the run go on unless overridden.

    A rule that refuses a send refuses every later measured one too (the drivers stop asking after a refusal).
    """

    __slots__ = ()
    reason: str = ""  # the run's end when this rule ends it
    deadline: int | None = None  # when this rule ends the run by the clock (perf_counter ns), once placed

    def begin(self, measure_start: int) -> None:
        """Place the rule in time once the run's t0 is known: the warmup ends at measure_start."""

    def take(self, t_ns: int) -> bool:
        """Whether a send due at t_ns may go; a rule may use up a share of itself for it."""
        return True

    def give_back(self, t_ns: int) -> None:
        """A send due at t_ns that this rule let go never went out (dropped, or refused by a later rule)."""

    @property
    def spent(self) -> bool:
        """No send may go any more by this rule."""
        return False


class Abort(StopRule):
    """Stopped from outside (or by a deadline's timer): no send goes once `reason` is set."""

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

    @property
    def spent(self) -> bool:
        """Stopped."""
        return bool(self.reason)


class Count(StopRule):
    """At most `left` more sends from `measure_start` on; sends before it (the warmup) are free."""

    __slots__ = ("left", "measure_start")
    reason = "requests"

    def __init__(self, left: int, measure_start: int = 0) -> None:
        self.left = left
        self.measure_start = measure_start

    def begin(self, measure_start: int) -> None:
        """Sends from measure_start on are counted."""
        self.measure_start = measure_start

    def take(self, t_ns: int) -> bool:
        """Whether a send at t_ns may go; it uses up one of the count if it is measured."""
        if t_ns < self.measure_start:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def give_back(self, t_ns: int) -> None:
        """A measured send that was taken but never went out does not use up the count."""
        if t_ns >= self.measure_start:
            self.left += 1

    @property
    def spent(self) -> bool:
        """The count is used up."""
        return self.left <= 0


class Duration(StopRule):
    """-d: the run ends `duration_ns` after the warmup; the drivers keep the time (a timer, the schedule)."""

    __slots__ = ("deadline", "duration_ns")
    reason = "duration"

    def __init__(self, duration_ns: int) -> None:
        self.duration_ns = duration_ns
        self.deadline: int | None = None

    def begin(self, measure_start: int) -> None:
        """The deadline is measure_start + the duration."""
        self.deadline = measure_start + self.duration_ns


def _abort(plan: Plan, index: int) -> StopRule:
    return Abort()


def _duration(plan: Plan, index: int) -> StopRule | None:
    return None if plan.stop.duration_s is None else Duration(int(plan.stop.duration_s * NS))


def _count(plan: Plan, index: int) -> StopRule | None:
    return Count(plan.spread.share(plan.stop.requests, index)) if plan.stop.requests else None


RuleMaker = Callable[[Plan, int], StopRule | None]

# name -> what builds the rule for worker `index` of a plan (None: the plan does not ask for it). The order is
# the order rules are asked in: the abort first (a stopped run uses nothing up), the count last.
STOP_RULES: dict[str, RuleMaker] = {"abort": _abort, "duration": _duration, "count": _count}


class Budget:
    """One worker's stop rules at once: `take(t_ns)` says whether a send due at t_ns may go."""

    __slots__ = ("abort", "count", "counted_only", "deadline", "measure_start", "refused", "rules", "takers")

    def __init__(self, rules: list[StopRule]) -> None:
        abort = next((r for r in rules if isinstance(r, Abort)), None)
        if abort is None:  # a run can always be stopped from outside
            abort = Abort()
            rules = [abort, *rules]
        self.abort = abort
        self.rules = tuple(rules)
        # (only the rules that may refuse a send are asked per send)
        self.takers = tuple(r.take for r in rules if type(r).take is not StopRule.take)
        # The count, for the closed model's lean path, which inlines Count.take (drivers/closed.py) when the
        # abort and the count are the only rules asked per send.
        self.count = next((r for r in rules if isinstance(r, Count)), None)
        self.counted_only = all(
            isinstance(r, (Abort, Count)) for r in rules if type(r).take is not StopRule.take
        )
        self.measure_start = 0
        self.deadline: int | None = None  # the earliest rule's deadline, once placed (begin)
        self.refused: StopRule | None = None  # the first rule that refused a send

    def begin(self, measure_start: int) -> None:
        """Place the rules in time once the run's t0 is known: the warmup ends at measure_start."""
        self.measure_start = measure_start
        for rule in self.rules:
            rule.begin(measure_start)
        deadlines = [r.deadline for r in self.rules if r.deadline is not None]
        self.deadline = min(deadlines) if deadlines else None

    def take(self, t_ns: int) -> bool:
        """Whether a send due at t_ns may go: every rule must let it (a refused send uses nothing up)."""
        for take in self.takers:
            if not take(t_ns):
                self._refuse(take, t_ns)
                return False
        return True

    def _refuse(self, refuser: Callable[[int], bool], t_ns: int) -> None:
        for rule in self.rules:
            if rule.take == refuser:
                if self.refused is None:
                    self.refused = rule
                return
            rule.give_back(t_ns)  # it let the send go, but the send does not go

    def stop(self, reason: str) -> bool:
        """Stop for `reason`; False if the run was already stopping."""
        return self.abort.stop(reason)

    def give_back(self, t_ns: int) -> None:
        """A send due at t_ns was taken but dropped: it uses up nothing."""
        for rule in self.rules:
            rule.give_back(t_ns)

    def over(self, t_ns: int) -> str:
        """Why the run is over by the clock at t_ns (the reason of a rule whose deadline passed), else ""."""
        for rule in self.rules:
            if rule.deadline is not None and t_ns >= rule.deadline:
                return rule.reason
        return ""

    @property
    def spent(self) -> bool:
        """No send may go any more: a rule refused one, or is used up (never, without a stop or -n)."""
        if self.refused is not None:
            return True
        return any(rule.spent for rule in self.rules)

    @property
    def reason(self) -> str:
        """Why the run ended: the stop's reason, else the rule that ran out ("requests" if none did)."""
        if self.abort.reason:
            return self.abort.reason
        if self.refused is not None:
            return self.refused.reason
        # (an open schedule that ran out without a deadline is named as before: "requests")
        return next((r.reason for r in self.rules if r.spent), Count.reason)


def make_budget(plan: Plan, index: int, rules: Mapping[str, RuleMaker] = STOP_RULES) -> Budget:
    """Worker `index`'s budget: the stop rules `plan` asks for, built by `rules` (STOP_RULES)."""
    made = (make(plan, index) for make in rules.values())
    return Budget([rule for rule in made if rule is not None])
