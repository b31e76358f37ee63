"""Budget: the worker's stop rules (count with its free warmup, deadline, abort), exactly."""

from __future__ import annotations

import itertools

from squall.engine.budget import Abort, Budget, Count

WARM = 1_000  # measure_start, in ns


def takes(budget: Budget, times: list[int]) -> list[bool]:
    return [budget.take(t) for t in times]


def test_without_rules_every_send_goes() -> None:
    b = Budget(None)
    b.begin(WARM, None)
    assert all(takes(b, list(range(0, 10_000, 7))))
    assert not b.spent and not b.stopped and b.deadline is None


def test_a_count_lets_exactly_n_measured_sends_go() -> None:
    for n in (1, 2, 5, 64):
        b = Budget(n)
        b.begin(WARM, None)
        got = takes(b, [WARM + i for i in range(n + 10)])
        assert got == [True] * n + [False] * 10
        assert b.spent and b.reason == "requests" and not b.stopped


def test_warmup_sends_are_free() -> None:
    b = Budget(3)
    b.begin(WARM, None)
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
    b = Budget(2)
    b.begin(WARM, None)
    assert takes(b, [WARM, WARM]) == [True, True]
    b.give_back(WARM)
    assert not b.spent and b.count is not None and b.count.left == 1
    b.give_back(0)  # a warmup send never used the count
    assert b.count.left == 1
    assert takes(b, [WARM, WARM]) == [True, False]


def test_the_first_stop_wins_and_refuses_every_later_send() -> None:
    b = Budget(10)
    b.begin(WARM, 5_000)
    assert b.take(WARM)
    assert b.stop("interrupted") is True
    assert b.stop("duration") is False
    assert (b.stopped, b.reason) == (True, "interrupted")
    assert takes(b, [0, WARM, WARM + 1]) == [False, False, False]  # a warmup send neither
    assert b.count is not None and b.count.left == 9  # refused sends use nothing up


def test_a_stop_names_the_end_even_when_the_count_is_spent() -> None:
    b = Budget(1)
    b.begin(WARM, None)
    assert takes(b, [WARM, WARM]) == [True, False]
    assert b.reason == "requests"
    b.stop("terminated")
    assert b.reason == "terminated"


def test_begin_places_the_deadline_and_the_warmup() -> None:
    b = Budget(1)
    assert b.take(0) and b.spent  # before begin() everything is measured
    b = Budget(1)
    b.begin(WARM, WARM + 3_000)
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
            b = Budget(n)
            b.begin(WARM, None)
            got = takes(b, list(pattern))
            measured_taken = sum(g for g, t in zip(got, pattern, strict=True) if t >= WARM)
            assert measured_taken == min(n, pattern.count(WARM))
            assert all(g for g, t in zip(got, pattern, strict=True) if t < WARM)
