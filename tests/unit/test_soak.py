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
    assert v["fd_growth"] == 20
    assert v["generator_rss_slope_mb_per_h"] == 0.0
    assert len(v["series"]) == 200


def test_without_target_samples_it_says_so() -> None:
    series = _series(50, 1, 0)
    for e in series:
        del e["target"]
    v = verdicts(series, SoakSpec())
    assert v["leak_suspected"] is None and "not sampled" in v["note"]
