"""Schedule: exact due times of pacer x rate shape x shard phase, and the stop at the end."""

from __future__ import annotations

import math

import pytest

from squall.engine.pacer import NS, ConstantPacer, PoissonPacer
from squall.engine.schedule import NEVER, Schedule, make_schedule
from squall.plan.load import Shape, Stage
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec

T0 = 7_000_000_000  # a perf_counter t0: due times are absolute
MS = 1_000_000
# 0 -> 100/s over 1 s (area 50 t^2), then 100/s for 1 s: 150 requests in all.
RAMP = Shape("rate", (Stage(1.0, 100.0), Stage(1.0, 100.0)))


def plan(**kw: object) -> Plan:
    kw.setdefault("workers", 1)
    return assemble(RequestSpec("http://127.0.0.1:1/"), **kw)  # type: ignore[arg-type]


def dues(schedule: Schedule, most: int = 1_000_000) -> list[int]:
    """Every due time until the schedule stops (bounded)."""
    out = []
    for _ in range(most):
        due = schedule.next_due()
        if due is None:
            return out
        out.append(due)
    raise AssertionError("the schedule did not stop")


def test_constant_dues_are_exact_and_stop_at_the_end() -> None:
    s = make_schedule(plan(rate=4.0), 0, T0, T0 + 2 * NS)
    assert dues(s) == [T0 + k * 250 * MS for k in range(8)]
    assert s.next_due() is None  # stopped for good


def test_the_end_is_exclusive_and_counts_are_rate_times_duration() -> None:
    for rate in (0.5, 1.0, 3.0, 7.0, 100.0, 333.0, 1000.0):
        for workers in (1, 2, 3, 7):
            for seconds in (1, 2, 5):
                got = sum(
                    len(dues(make_schedule(plan(rate=rate, workers=workers), w, T0, T0 + seconds * NS)))
                    for w in range(workers)
                )
                assert got == math.ceil(rate * seconds), (rate, workers, seconds)


def test_workers_interleave_into_one_even_schedule() -> None:
    merged = sorted(
        d for w in range(3) for d in dues(make_schedule(plan(rate=30.0, workers=3), w, T0, T0 + NS))
    )
    assert merged == [T0 + math.ceil(k * NS / 30) for k in range(30)]


def test_no_end_and_no_shape_never_stops() -> None:
    s = make_schedule(plan(rate=1000.0), 0, T0, None)
    got = [s.next_due() for _ in range(10_000)]
    assert got[-1] == T0 + 9_999 * MS


@pytest.mark.parametrize("n", [2, 3, 4])
def test_shards_interleave_into_the_whole_runs_even_schedule(n: int) -> None:
    # The whole run: 60/s over n boxes, each with its share of the rate (as the CLI splits it).
    merged = sorted(
        d for i in range(n) for d in dues(make_schedule(plan(rate=60.0 / n, shard=(i, n)), 0, T0, T0 + NS))
    )
    want = [T0 + round(k * NS / 60) for k in range(60)]
    assert len(merged) == 60
    assert all(abs(got - w) <= 1 for got, w in zip(merged, want, strict=True))  # (each side rounds once)
    assert make_schedule(plan(rate=60.0 / n, shard=(1, n)), 0, T0, None).next_due() == T0 + round(NS / 60)


def test_a_rate_shape_sends_its_area_at_the_times_it_reaches_it() -> None:
    s = make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, T0 + 2 * NS)
    got = dues(s)
    assert len(got) == 150  # area 150, the 151st would be due at the end itself
    # k-th send when the area reaches k: 50 t^2 = k in the ramp, 50 + 100 (t - 1) = k in the hold.
    assert got[0] == T0
    assert got[2] == T0 + 200 * MS
    assert got[50] == T0 + NS
    assert got[100] == T0 + 1500 * MS
    assert got[149] == T0 + 1990 * MS
    assert got == sorted(got)


def test_a_rate_shape_stops_after_its_last_stage_without_an_end() -> None:
    s = make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, None)
    got = dues(s)
    assert len(got) == 151 and got[-1] == T0 + 2 * NS  # area 150 is reached at the last instant
    assert s.next_due() is None


def test_a_shape_is_shared_by_workers() -> None:
    merged = sorted(
        d
        for w in range(2)
        for d in dues(make_schedule(plan(rate=100.0, shape=RAMP, workers=2), w, T0, T0 + 2 * NS))
    )
    single = dues(make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, T0 + 2 * NS))
    assert merged == single


def test_shards_of_a_shape_interleave_into_the_whole_shape() -> None:
    # Each of n shards follows 1/n of the shape (the CLI divides every stage's rate); together they make
    # the whole shape's sequence.
    whole = dues(make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, T0 + 2 * NS))
    for n in (2, 3, 5):
        part = Shape("rate", tuple(Stage(s.duration_s, s.target / n) for s in RAMP.stages))
        merged = sorted(
            d
            for i in range(n)
            for d in dues(make_schedule(plan(rate=100.0 / n, shape=part, shard=(i, n)), 0, T0, T0 + 2 * NS))
        )
        assert len(merged) == len(whole) == 150
        assert all(abs(a - b) <= 1 for a, b in zip(merged, whole, strict=True)), n


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
def test_random_arrivals_repeat_by_seed_and_keep_the_rate(arrival: str) -> None:
    def run(seed: int, shape: Shape | None = None) -> list[int]:
        p = plan(
            rate=1000.0,
            arrival=arrival,
            burstiness=2.0 if arrival == "gamma" else 1.0,
            seed=seed,
            shape=shape,
        )
        return dues(make_schedule(p, 0, T0, T0 + 20 * NS))

    a, b = run(3), run(3)
    assert a == b and a == sorted(a) and a != run(4)
    assert abs(len(a) - 20_000) < 5 * math.sqrt(20_000)
    assert all(T0 <= d < T0 + 20 * NS for d in a)
    # A shape stretches the same process: 1000/s held after a 2 s ramp holds 19,000 requests in 20 s.
    held = Shape("rate", (Stage(2.0, 1000.0), Stage(18.0, 1000.0)))
    c = run(3, held)
    assert c == sorted(c) and abs(len(c) - 19_000) < 5 * math.sqrt(19_000)
    assert sum(d < T0 + NS for d in c) < sum(T0 + NS <= d < T0 + 2 * NS for d in c)  # the ramp rises


def test_shapes_map_the_pacers_own_sequence() -> None:
    # The schedule is the pacer at rate 1 time-changed by the shape: due = t0 + time_at_area(send).
    s = Schedule(PoissonPacer(1.0, 11), T0, None, shape=RAMP)
    p = PoissonPacer(1.0, 11)
    for _ in range(100):
        at = RAMP.time_at_area(p.next_send() / NS)
        assert s.next_due() == (None if at is None else T0 + round(at * NS))


def test_due_between_counts_the_schedules_sends() -> None:
    flat = Schedule(ConstantPacer(50.0), T0, rate=50.0)
    assert flat.due_between(T0 + NS, T0 + 3 * NS) == 100.0
    shaped = Schedule(ConstantPacer(1.0, 0, 2), T0, shape=RAMP, workers=2)
    assert shaped.due_between(T0, T0 + NS) == 25.0  # half of the ramp's 50
    assert shaped.due_between(T0 + NS, T0 + 2 * NS) == 50.0


def test_without_a_shape_each_due_time_is_one_call_of_the_pacer() -> None:
    # The fast path the open driver inlines: due = origin + step(), over once due >= until.
    s = make_schedule(plan(rate=60.0 / 3, shard=(1, 3)), 0, T0, T0 + NS)
    assert s.step.__self__ is s.pacer and s.step.__func__ is ConstantPacer.next_send  # type: ignore[attr-defined]
    assert (s.origin, s.until) == (T0 + round(NS / 60), T0 + NS)
    twin = make_schedule(plan(rate=60.0 / 3, shard=(1, 3)), 0, T0, T0 + NS)
    inlined = []
    while (due := s.origin + s.step()) < s.until:
        inlined.append(due)
    assert inlined == dues(twin) and len(inlined) == 20


def test_with_a_shape_the_step_ends_at_never() -> None:
    s = make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, None)
    assert (s.origin, s.until) == (0, NEVER)
    got = []
    while (due := s.origin + s.step()) < s.until:
        got.append(due)
    assert got == dues(make_schedule(plan(rate=100.0, shape=RAMP), 0, T0, None)) and len(got) == 151
