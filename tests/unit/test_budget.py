"""Budget: the worker's stop rules (count with its free warmup, deadline, abort), exactly."""

from __future__ import annotations

import itertools

from squall.engine.budget import (
    NS,
    STOP_RULES,
    Abort,
    Budget,
    Count,
    Duration,
    StopRule,
    make_budget,
)
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec

WARM = 1_000  # measure_start, in ns


def budget(requests: int | None, duration_ns: int | None = None) -> Budget:
    """A budget of the abort, -d (if given) and -n (if given), as STOP_RULES builds it."""
    rules: list[StopRule] = [Abort()]
    if duration_ns is not None:
        rules.append(Duration(duration_ns))
    if requests is not None:
        rules.append(Count(requests))
    return Budget(rules)


def takes(budget: Budget, times: list[int]) -> list[bool]:
    return [budget.take(t) for t in times]


def test_without_rules_every_send_goes() -> None:
    b = budget(None)
    b.begin(WARM)
    assert all(takes(b, list(range(0, 10_000, 7))))
    assert not b.spent and not b.abort.reason and b.deadline is None


def test_a_count_lets_exactly_n_measured_sends_go() -> None:
    for n in (1, 2, 5, 64):
        b = budget(n)
        b.begin(WARM)
        got = takes(b, [WARM + i for i in range(n + 10)])
        assert got == [True] * n + [False] * 10
        assert b.spent and b.reason == "requests" and not b.abort.reason


def test_warmup_sends_are_free() -> None:
    b = budget(3)
    b.begin(WARM)
    assert takes(b, [0, 10, WARM - 1, WARM, WARM + 1, 5, WARM + 2, WARM + 3, 999]) == [
        True,
        True,
        True,
        True,
        True,
        True,  # a send due in the warmup goes even once the measured count is running
        True,
        False,
        True,
    ]
    assert b.spent


def test_a_dropped_measured_send_is_given_back() -> None:
    b = budget(2)
    b.begin(WARM)
    assert takes(b, [WARM, WARM]) == [True, True]
    b.give_back(WARM)
    assert not b.spent and b.count is not None and b.count.left == 1
    b.give_back(0)  # a warmup send never used the count
    assert b.count.left == 1
    assert takes(b, [WARM, WARM]) == [True, False]


def test_the_first_stop_wins_and_refuses_every_later_send() -> None:
    b = budget(10, 4_000)
    b.begin(WARM)
    assert b.take(WARM)
    assert b.stop("interrupted") is True
    assert b.stop("duration") is False
    assert (bool(b.abort.reason), b.reason) == (True, "interrupted")
    assert takes(b, [0, WARM, WARM + 1]) == [False, False, False]  # a warmup send neither
    assert b.count is not None and b.count.left == 9  # refused sends use nothing up


def test_a_stop_names_the_end_even_when_the_count_is_spent() -> None:
    b = budget(1)
    b.begin(WARM)
    assert takes(b, [WARM, WARM]) == [True, False]
    assert b.reason == "requests"
    b.stop("terminated")
    assert b.reason == "terminated"


def test_begin_places_the_deadline_and_the_warmup() -> None:
    b = budget(1)
    assert b.take(0) and b.spent  # before begin() everything is measured
    b = budget(1, 3_000)
    b.begin(WARM)
    assert (b.measure_start, b.deadline) == (WARM, WARM + 3_000)
    assert b.count is not None and b.count.measure_start == WARM


def test_rules_alone() -> None:
    c = Count(2, measure_start=10)
    assert [c.take(t) for t in (0, 10, 11, 12, 9)] == [True, True, True, False, True]
    assert c.spent and Count.reason == "requests"
    a = Abort()
    assert a.take(0) and a.stop("x") and not a.take(0) and not a.stop("y") and a.reason == "x"


def test_counts_are_exact_for_every_interleaving_of_warmup_and_measured_sends() -> None:
    for n in range(1, 5):
        for pattern in itertools.product((0, WARM), repeat=8):
            b = budget(n)
            b.begin(WARM)
            got = takes(b, list(pattern))
            measured_taken = sum(g for g, t in zip(got, pattern, strict=True) if t >= WARM)
            assert measured_taken == min(n, pattern.count(WARM))
            assert all(g for g, t in zip(got, pattern, strict=True) if t < WARM)


def test_a_duration_places_its_deadline_after_the_warmup() -> None:
    d = Duration(3 * NS)
    assert d.deadline is None and d.take(10**18) and not d.spent  # it ends the run by the clock, not per send
    d.begin(WARM)
    assert (d.deadline, d.reason) == (WARM + 3 * NS, "duration")
    b = budget(5, 3 * NS)
    b.begin(WARM)
    assert (b.deadline, b.over(WARM + 3 * NS - 1), b.over(WARM + 3 * NS)) == (WARM + 3 * NS, "", "duration")


def test_the_abort_alone() -> None:
    a = Abort()
    assert (a.take(0), a.spent, a.deadline) == (True, False, None)
    assert a.stop("terminated") and (a.take(0), a.spent, a.reason) == (False, True, "terminated")


def test_a_budget_always_has_an_abort() -> None:
    b = Budget([Count(1)])
    assert [type(r) for r in b.rules] == [Abort, Count]
    assert b.stop("interrupted") and not b.take(0) and b.count is not None and b.count.left == 1


def plan(**kw: object) -> Plan:
    kw.setdefault("workers", 1)
    return assemble(RequestSpec("http://127.0.0.1:1/"), **kw)  # type: ignore[arg-type]


def test_the_registry_builds_the_rules_a_plan_asks_for() -> None:
    def kinds(p: Plan, index: int = 0) -> list[type[StopRule]]:
        return [type(r) for r in make_budget(p, index).rules]

    assert list(STOP_RULES) == ["abort", "duration", "count"]
    assert kinds(plan()) == [Abort]
    assert kinds(plan(duration_s=2.5)) == [Abort, Duration]
    assert kinds(plan(requests=10)) == [Abort, Count]
    assert kinds(plan(requests=10, duration_s=1.0)) == [Abort, Duration, Count]
    # Each worker counts its share of -n; the deadline is -d after the warmup.
    p = plan(requests=10, duration_s=2.5, workers=3)
    assert [make_budget(p, i).count.left for i in range(3)] == [4, 3, 3]  # type: ignore[union-attr]
    b = make_budget(p, 0)
    b.begin(WARM)
    assert b.deadline == WARM + int(2.5 * NS)


class EveryOther(StopRule):
    """A made-up rule: lets every other measured send go, and ends the run at its first refusal."""

    reason = "every-other"

    def __init__(self) -> None:
        self.n = 0
        self.given_back: list[int] = []

    def take(self, t_ns: int) -> bool:
        self.n += 1
        return self.n % 2 == 1

    def give_back(self, t_ns: int) -> None:
        self.given_back.append(t_ns)


class Until(StopRule):
    """A made-up rule that ends the run by the clock, `after_ns` after the warmup."""

    reason = "until"

    def __init__(self, after_ns: int) -> None:
        self.after_ns = after_ns

    def begin(self, measure_start: int) -> None:
        self.deadline = measure_start + self.after_ns


def test_a_new_rule_is_one_class_and_one_registry_entry() -> None:
    rules = {**STOP_RULES, "every_other": lambda p, i: EveryOther()}
    b = make_budget(plan(requests=5), 0, rules)
    b.begin(WARM)
    assert [type(r) for r in b.rules] == [Abort, Count, EveryOther]
    assert not b.counted_only  # the closed model's lean path would skip it: the driver takes the general one
    assert (b.take(WARM), b.spent) == (True, False)
    assert (b.take(WARM + 1), b.spent, b.reason) == (False, True, "every-other")
    # The refused send used nothing up: the count took it, and had it back.
    assert b.count is not None and b.count.left == 4
    # An earlier rule refusing never asks the later ones.
    other = b.rules[2]
    assert isinstance(other, EveryOther) and other.given_back == []
    b.stop("interrupted")
    assert (b.take(WARM + 2), other.n, b.reason) == (False, 2, "interrupted")


def test_a_rule_refused_after_it_let_a_send_go_gives_it_back() -> None:
    class Never(StopRule):
        reason = "never"

        def take(self, t_ns: int) -> bool:
            return False

    first = EveryOther()
    b = Budget([Abort(), first, Never()])
    b.begin(WARM)
    assert (b.take(WARM + 7), first.given_back, b.reason) == (False, [WARM + 7], "never")


def test_a_rule_with_a_deadline_takes_the_earliest() -> None:
    b = make_budget(plan(duration_s=10.0), 0, {**STOP_RULES, "until": lambda p, i: Until(NS)})
    b.begin(WARM)
    assert b.counted_only  # no rule of its own asked per send
    assert (b.deadline, b.over(WARM + NS), b.over(WARM + 10 * NS)) == (WARM + NS, "until", "duration")
    assert b.reason == "requests"  # nothing ended the run yet: named as before
