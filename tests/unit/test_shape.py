import random

import pytest

from squall.engine.pacer import make_pacer
from squall.plan.load import Open, Shape, Stage, parse_stages, parse_think, profile
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec
from squall.units import PlanError

NS = 1_000_000_000


def test_stages_parse_by_kind() -> None:
    shape = parse_stages(["30s:200/s", "5m:200/s", "30s:0/s"])
    assert shape == Shape("rate", (Stage(30, 200), Stage(300, 200), Stage(30, 0)))
    assert (shape.total_s, shape.peak) == (360, 200)
    assert parse_stages(["10s:50", "1m:50"]) == Shape("users", (Stage(10, 50), Stage(60, 50)))
    assert parse_stages([]) is None


@pytest.mark.parametrize(
    ("stages", "needle"),
    [
        (["30s:10", "30s:10/s"], "mixing"),
        (["30s"], "DURATION:TARGET"),
        (["xs:10"], "duration"),
        (["30s:-1"], "DURATION:TARGET"),
    ],
)
def test_bad_stages_name_the_problem(stages: list[str], needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        parse_stages(stages)


def test_area_and_its_inverse_follow_the_ramp() -> None:
    shape = Shape("rate", (Stage(10, 100), Stage(10, 100), Stage(10, 0)))
    assert shape.value_at(5) == 50
    assert shape.value_at(15) == 100
    assert shape.value_at(25) == 50
    assert shape.area(10) == pytest.approx(500)
    assert shape.area(20) == pytest.approx(1500)
    assert shape.area(30) == pytest.approx(2000)
    for area in (0.0, 1.0, 499.5, 500, 1200, 1999.9):
        t = shape.time_at_area(area)
        assert t is not None and shape.area(t) == pytest.approx(area, abs=1e-6)
    assert shape.time_at_area(2000.1) is None


def test_a_zero_stage_holds_no_sends_and_time_skips_it() -> None:
    shape = Shape("rate", (Stage(5, 0), Stage(5, 10)))  # 0 for 5 s, then 0 → 10/s
    assert shape.area(5) == 0
    t = shape.time_at_area(1)
    assert t is not None and 5 < t < 10 and shape.area(t) == pytest.approx(1)


def test_constant_arrivals_through_a_shape_send_exactly_its_area() -> None:
    # What the worker does: pace at rate 1 in area, map each area to its time; count sends before the end.
    shape = Shape("rate", (Stage(1, 200), Stage(1, 0)))  # 100 + 100 requests
    for workers in (1, 3):
        sent = []
        for w in range(workers):
            pacer = make_pacer("constant", 1.0, w, workers, 0)
            while (t := shape.time_at_area(pacer.next_send() / NS)) is not None and t < shape.total_s:
                sent.append(t)
        assert len(sent) == 200
        assert sum(1 for t in sent if t < 1) == 100


def test_poisson_through_a_shape_follows_the_rate() -> None:
    shape = Shape("rate", (Stage(50, 400),))  # 0 → 400/s: 10,000 expected, 2,500 in the first half
    pacer = make_pacer("poisson", 1.0, 0, 1, seed=3)
    times = []
    while (t := shape.time_at_area(pacer.next_send() / NS)) is not None:
        times.append(t)
    assert 9_700 < len(times) < 10_300
    assert 2_350 < sum(1 for t in times if t < 25) < 2_650


@pytest.mark.parametrize("name", ["ramp", "step", "spike", "soak"])
def test_profiles_span_the_duration_and_reach_the_target(name: str) -> None:
    shape = profile(name, "users", 100, 120)
    assert shape.total_s == pytest.approx(120)
    assert shape.peak == 100
    assert all(s.duration_s > 0 for s in shape.stages)


def test_plan_takes_its_duration_and_peak_from_the_shape() -> None:
    req = RequestSpec("http://127.0.0.1:1/")
    plan = assemble(req, shape=parse_stages(["2s:300/s", "1s:0/s"]), warmup_s=0.5).validate()
    assert (plan.load.rate, plan.stop.duration_s, plan.open_model) == (300, 2.5, True)
    plan = assemble(req, shape=parse_stages(["2s:40", "1s:10"])).validate()
    assert (plan.load.connections, plan.stop.duration_s, plan.open_model) == (40, 3, False)
    with pytest.raises(PlanError, match="closed model"):
        Plan(req, load=Open(rate=10, shape=parse_stages(["2s:40"]))).validate()
    with pytest.raises(PlanError, match="warmup"):
        assemble(req, shape=parse_stages(["2s:40"]), warmup_s=3).validate()
    with pytest.raises(PlanError, match="think"):
        assemble(req, rate=10, think=parse_think("1s")).validate()


def test_think_times() -> None:
    rng = random.Random(1)
    uniform = parse_think("1s-3s").sampler(rng)
    draws = [uniform() for _ in range(2000)]  # type: ignore[operator]
    assert min(draws) >= 1 and max(draws) <= 3 and 1.9 < sum(draws) / len(draws) < 2.1
    exp = parse_think("exp:200ms").sampler(rng)
    draws = [exp() for _ in range(5000)]  # type: ignore[operator]
    assert 0.18 < sum(draws) / len(draws) < 0.22
    assert parse_think("500ms").sampler(rng)() == 0.5  # type: ignore[operator]
    for bad in ("3s-1s", "exp:0s", "soon"):
        with pytest.raises(PlanError, match="--think"):
            parse_think(bad)
