import random

import pytest

from squall.collector.leaks import slope, verdicts
from squall.plan.specs import SoakSpec


def _series(n: int, rss: float, per_s: float, noise: float = 0.0, p99: float = 5.0) -> list[dict]:
    rng = random.Random(3)
    return [
        {
            "t": float(t),
            "partial": False,
            "requests": 100,
            "errors": 0 if t < n // 2 else 2,
            "p50": 1.0,
            "p99": p99 if t < n // 2 else 2 * p99,
            "target": {"rss_mb": rss + per_s * t + rng.gauss(0, noise), "cpu": 10.0, "fds": 20 + t // 10},
            "worker_rss_mb": {"0": 40.0},
        }
        for t in range(1, n + 1)
    ]


def test_slope_and_its_interval() -> None:
    b, lo, hi = slope([(x, 3.0 * x + 1) for x in range(10)])  # type: ignore[misc]
    assert b == pytest.approx(3.0) and lo == pytest.approx(3.0) and hi == pytest.approx(3.0)
    assert slope([(1, 1), (2, 2)]) is None and slope([(1, 1), (1, 2), (1, 3)]) is None


def test_a_steady_climb_is_a_leak_and_noise_is_not() -> None:
    spec = SoakSpec(leak_threshold_mb_h=10)
    leak = verdicts(_series(600, 100, 0.01, noise=0.5), spec)  # 36 MB/h
    assert leak["leak_suspected"] is True
    assert 30 < leak["rss_slope_mb_per_h"] < 42
    lo, hi = leak["rss_slope_ci_mb_per_h"]
    assert lo < leak["rss_slope_mb_per_h"] < hi
    flat = verdicts(_series(600, 100, 0.0, noise=0.5), spec)
    assert flat["leak_suspected"] is False
    small = verdicts(_series(600, 100, 0.001), spec)  # 3.6 MB/h: significant, but under the threshold
    assert small["leak_suspected"] is False and small["rss_slope_ci_mb_per_h"][0] > 0


def test_drift_fd_growth_and_generator_rss() -> None:
    v = verdicts(_series(200, 50, 0.0), SoakSpec())
    d = v["latency_drift"]
    assert (d["stretch_s"], d["p99_first_ms"], d["p99_last_ms"], d["p99_ratio"]) == (20, 5.0, 10.0, 2.0)
    assert v["error_drift"] == {"first_pct": 0.0, "last_pct": 2.0, "change_pct": 2.0}
    assert v["fd_growth"] == 19  # to second 199: the last one is sampled after squall closes its connections
    assert v["generator_rss_growth_mb"] == 0.0 and v["generator_rss_slope_mb_per_h"] is None  # (139 s judged)
    assert len(v["series"]) == 200


def test_without_target_samples_it_says_so() -> None:
    series = _series(50, 1, 0)
    for e in series:
        del e["target"]
    v = verdicts(series, SoakSpec())
    assert v["leak_suspected"] is None and "not sampled" in v["note"]


def _gen_series(n: int, settle_s: int, start_mb_per_s: float, then_mb_per_s: float) -> list[dict]:
    """squall's own memory: `start_mb_per_s` for `settle_s` seconds (starting up), then `then_mb_per_s`."""
    out = []
    for t in range(1, n + 1):
        grown = start_mb_per_s * min(t, settle_s) + then_mb_per_s * max(0, t - settle_s)
        out.append(
            {
                "t": float(t),
                "partial": False,
                "requests": 100,
                "errors": 0,
                "p50": 1.0,
                "p99": 2.0,
                "worker_rss_mb": {"0": 40.0 + grown, "1": 40.0},
                "collector_rss_mb": 30.0,
            }
        )
    return out


def test_squall_rss_is_judged_after_start_up() -> None:
    # A 60-s soak that grew 0.245 MB/s while starting (882 MB/h) is too short to judge, and says so.
    v = verdicts(_gen_series(60, 60, 0.245, 0.0), SoakSpec())
    assert v["generator_rss_slope_mb_per_h"] is None and v["generator_rss_growth_mb"] is None
    assert v["generator_rss_note"] == (
        "too short to judge squall's own memory: it settles in its first 60 s, and needs 10 s after that "
        "(a soak of 72 s or more)"
    )
    # 150 s: the growth after the first 60 s, in MB; no per-hour rate from 90 s of it.
    v = verdicts(_gen_series(150, 60, 0.245, 0.0), SoakSpec())
    assert (v["generator_rss_growth_mb"], v["generator_rss_from_s"], v["generator_rss_to_s"]) == (
        0.0,
        61.0,
        150.0,
    )
    assert v["generator_rss_slope_mb_per_h"] is None
    # An hour: flat after start-up reads 0 MB/h, not the start-up's climb.
    v = verdicts(_gen_series(3600, 60, 0.245, 0.0), SoakSpec())
    assert v["generator_rss_slope_mb_per_h"] == 0.0 and v["generator_rss_slope_ci_mb_per_h"] == [0.0, 0.0]
    assert v["generator_rss_from_s"] == 361.0  # a tenth of the run, when that is longer than 60 s
    # ... and real growth after it is still seen: 0.01 MB/s = 36 MB/h.
    v = verdicts(_gen_series(3600, 60, 0.245, 0.01), SoakSpec())
    assert v["generator_rss_slope_mb_per_h"] == pytest.approx(36.0)
    assert v["generator_rss_growth_mb"] == pytest.approx(0.01 * (3600 - 361))


def test_target_fds_are_judged_only_while_squalls_connections_are_open() -> None:
    series = _series(30, 50, 0.0)
    for e in series:
        e["target"]["fds"] = 30  # 20 of its own and squall's 10 connections
    series[-1]["target"]["fds"] = 20  # the last second: sampled after squall closed them
    v = verdicts(series, SoakSpec())
    assert (v["fd_growth"], v["fd_seconds"]) == (0, [1.0, 29.0])
    series[-3]["worker_rss_mb"] = {"0": 0.0}  # a worker gone (its connections closed with it)
    series[-3]["target"]["fds"] = series[-2]["target"]["fds"] = 25
    for e in series[20:27]:  # a real change while they were open counts
        e["target"]["fds"] = 33
    v = verdicts(series, SoakSpec())
    assert (v["fd_growth"], v["fd_seconds"]) == (3, [1.0, 27.0])


def test_a_worker_gone_is_left_out_of_squalls_rss() -> None:
    series = _gen_series(200, 60, 0.0, 0.0)
    series[100]["worker_rss_mb"] = {"0": None, "1": 40.0}  # the sampler's mark for a worker it lost
    series[101]["worker_rss_mb"] = {"0": 0.0, "1": 40.0}
    v = verdicts(series, SoakSpec())
    assert v["generator_rss_growth_mb"] == 0.0 and v["generator_rss_to_s"] == 200.0


def test_the_length_the_note_asks_for_is_enough() -> None:
    # (the note asks one second more than the synthetic series needs: a real run's last may hold no sample)
    v = verdicts(_gen_series(69, 60, 0.245, 0.0), SoakSpec())
    assert "a soak of 72 s or more" in v["generator_rss_note"]
    v = verdicts(_gen_series(72, 60, 0.245, 0.0), SoakSpec())
    assert v["generator_rss_growth_mb"] is not None and "generator_rss_note" not in v
