"""summary.recovery: finding the spike in a shape, the baseline before it, and the recovery after it."""

from typing import Any

import pytest

from squall.collector.recovery import find_spike, meta_shape, spike_recovery
from squall.plan.load import Shape, Stage, profile, steered


def series(p99: list[float | None], ttft: list[float | None] | None = None, start: int = 1) -> list[dict]:
    """Whole seconds t = start, start + 1, ...: their p99 (and TTFT p99)."""
    out: list[dict[str, Any]] = []
    for i, v in enumerate(p99):
        e: dict[str, Any] = {"t": float(start + i), "partial": False, "p99": v}
        if ttft is not None:
            e["ttft_p99"] = ttft[i]
        out.append(e)
    return out


# 10 users for 10 s, 40 users from 10 s to 15 s, back to 10 users until 30 s (instant steps)
STEPPED = Shape(
    "users", (Stage(0, 10), Stage(10, 10), Stage(0, 40), Stage(5, 40), Stage(0, 10), Stage(15, 10))
)


def test_no_shape_or_no_spike_gives_nothing() -> None:
    assert spike_recovery(series([10.0] * 20), None, 0) is None
    assert find_spike(profile("step", "users", 50, 50)) is None  # only goes up
    assert find_spike(profile("ramp", "users", 50, 50)) is None  # rises from 0: no level to come back to
    assert find_spike(profile("soak", "rate", 50, 50)) is None
    assert find_spike(Shape("users", (Stage(0, 10), Stage(10, 12), Stage(10, 10)))) is None  # not well above


def test_spike_profile_is_found() -> None:
    # 10 % for 40 % of -d (2 s ramp), up in 2 s, held to 60 %, down in 2 s, held
    assert find_spike(profile("spike", "users", 100, 50)) == (20.0, 32.0, 10.0, 100.0)
    assert find_spike(profile("spike", "rate", 1000, 100)) == (40.0, 62.0, 100.0, 1000.0)


def test_stepped_stages_and_a_fall_below_the_level_count() -> None:
    assert find_spike(STEPPED) == (10.0, 15.0, 10.0, 40.0)
    below = Shape(
        "rate", (Stage(2, 100), Stage(8, 100), Stage(1, 300), Stage(4, 300), Stage(1, 50), Stage(9, 50))
    )
    assert find_spike(below) == (10.0, 16.0, 100.0, 300.0)


def test_a_steered_shape_up_then_down_is_a_spike() -> None:
    shape = steered(None, "users", 8.0, [(6.0, 32.0), (9.0, 8.0)])
    assert find_spike(shape) == (6.0, 9.0, 8.0, 32.0)
    assert find_spike(steered(None, "users", 8.0, [(6.0, 32.0)])) is None  # up only


def test_recovers_after_the_first_streak_of_three_seconds() -> None:
    # seconds 1-10 before (p99 10), 11-15 the spike, then 30, 20, 10.5 (within 10 %), 9, 11, ...
    p99 = [10.0] * 10 + [50.0] * 5 + [30.0, 20.0, 10.5, 9.0, 11.0, 10.0, 10.0]
    got = spike_recovery(series(p99), STEPPED, 0)
    assert got == {
        "spike_start_s": 10.0,
        "spike_end_s": 15.0,
        "baseline_p99_ms": 10.0,
        "baseline_seconds": 10,
        "p99_recovered_after_s": 2.0,  # the second from 17 s to 18 s starts the streak
        "ttft_baseline_p99_ms": None,
        "ttft_p99_recovered_after_s": None,
        "recovered": True,
    }


def test_one_lucky_second_does_not_count() -> None:
    p99 = [10.0] * 10 + [50.0] * 5 + [10.0, 30.0, 10.0, 10.0, 30.0, 10.0, 10.0, 10.0]
    got = spike_recovery(series(p99), STEPPED, 0)
    assert got is not None and got["p99_recovered_after_s"] == 5.0


def test_immediately_back_is_zero() -> None:
    got = spike_recovery(series([10.0] * 10 + [50.0] * 5 + [10.0] * 5), STEPPED, 0)
    assert got is not None and (got["p99_recovered_after_s"], got["recovered"]) == (0.0, True)


def test_never_recovers_is_null_with_a_note() -> None:
    got = spike_recovery(series([10.0] * 10 + [50.0] * 5 + [20.0] * 10), STEPPED, 0)
    assert got is not None
    assert (got["p99_recovered_after_s"], got["recovered"]) == (None, False)
    assert "never stayed within 10%" in got["note"]


def test_the_run_ending_with_the_spike_has_no_time_to_recover() -> None:
    got = spike_recovery(series([10.0] * 10 + [50.0] * 5), STEPPED, 0)
    assert got is not None and got["recovered"] is False
    assert "had no time to recover" in got["note"]
    assert spike_recovery(series([10.0] * 8), STEPPED, 0) is None  # ended before the spike began


def test_gaps_and_unanswered_seconds_break_a_streak() -> None:
    p99 = [10.0] * 10 + [50.0] * 5 + [10.0, 10.0, None, 10.0, 10.0, 10.0]
    got = spike_recovery(series(p99), STEPPED, 0)
    assert got is not None and got["p99_recovered_after_s"] == 3.0
    gap = series([10.0] * 10 + [50.0] * 5 + [10.0, 10.0])  # then a missing second (18), then three
    gap += series([10.0, 10.0, 10.0], start=19)
    got = spike_recovery(gap, STEPPED, 0)
    assert got is not None and got["p99_recovered_after_s"] == 3.0


def test_baseline_is_the_median_at_the_level_before_the_ramp_left_out() -> None:
    shape = profile("spike", "users", 100, 50)  # level from 2 s; spike 20 s to 32 s
    p99 = [99.0, 99.0] + [10.0] * 9 + [12.0] * 9 + [80.0] * 12 + [11.0] * 18
    got = spike_recovery(series(p99), shape, 0)
    assert got is not None
    assert (got["baseline_p99_ms"], got["baseline_seconds"]) == (11.0, 18)  # seconds 3..20, not the ramp's
    assert got["p99_recovered_after_s"] == 0.0


def test_warmup_moves_the_spike_into_measured_seconds() -> None:
    got = spike_recovery(series([10.0] * 7 + [50.0] * 5 + [10.0] * 5), STEPPED, 3.0)
    assert got is not None
    assert (got["spike_start_s"], got["spike_end_s"], got["baseline_seconds"]) == (7.0, 12.0, 7)
    assert got["p99_recovered_after_s"] == 0.0


def test_partial_seconds_are_left_out_of_the_baseline() -> None:
    s = series([100.0] + [10.0] * 9 + [50.0] * 5 + [10.0] * 3)
    s[0]["partial"] = True
    got = spike_recovery(s, STEPPED, 0)
    assert got is not None and (got["baseline_p99_ms"], got["baseline_seconds"]) == (10.0, 9)


def test_ttft_recovers_on_its_own() -> None:
    p99 = [10.0] * 10 + [50.0] * 5 + [10.0] * 6
    ttft = [4.0] * 10 + [40.0] * 5 + [20.0, 20.0, 4.0, 4.0, 4.2, 4.0]
    got = spike_recovery(series(p99, ttft), STEPPED, 0)
    assert got is not None
    assert (got["ttft_baseline_p99_ms"], got["ttft_p99_recovered_after_s"]) == (4.0, 2.0)
    assert got["recovered"] is True
    ttft[-4:] = [30.0] * 4
    got = spike_recovery(series(p99, ttft), STEPPED, 0)
    assert got is not None and got["p99_recovered_after_s"] == 0.0
    assert (got["ttft_p99_recovered_after_s"], got["recovered"]) == (None, False)
    assert "TTFT p99 never" in got["note"]


def test_nothing_answered_before_the_spike_has_no_baseline() -> None:
    got = spike_recovery(series([None] * 10 + [50.0] * 5 + [10.0] * 5), STEPPED, 0)
    assert got is not None and got["baseline_p99_ms"] is None and got["recovered"] is False
    assert "no whole second answered before the spike" in got["note"]


@pytest.mark.parametrize("model", ["closed", "open"])
def test_meta_shape_rebuilds_the_shape_as_run(model: str) -> None:
    kind = "users" if model == "closed" else "rate"
    meta = {
        "model": model,
        "shape": {"kind": kind, "stages": [{"duration_s": 5, "target": 10}]},
        "warmup_s": 1,
    }
    assert meta_shape(meta) == Shape(kind, (Stage(5.0, 10.0),))
    meta["changes"] = [{"t": 4.0, kind: 40, "by": "dashboard"}, {"t": 8.0, kind: 10, "by": "dashboard"}]
    assert find_spike(meta_shape(meta)) == (5.0, 9.0, 10.0, 40.0)
    assert meta_shape({"model": "closed", "shape": None}) is None
    plain = {
        "model": "closed",
        "shape": None,
        "connections": 4,
        "changes": [{"t": 2, "users": 16}, {"t": 6, "users": 4}],
    }
    assert find_spike(meta_shape(plain)) == (2.0, 6.0, 4.0, 16.0)
