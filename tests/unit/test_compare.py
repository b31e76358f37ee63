"""compare's verdicts on synthetic results: noise judged across seconds, tails only with enough samples."""

from __future__ import annotations

import random
from typing import Any

import pytest

from squall.hist import Hist
from squall.result.compare import compare, t95, welch_shift


def _hist(values: list[int]) -> Hist:
    h = Hist()
    for v in values:
        h.record(v)
    return h


def doc(seconds: list[list[int]], keep_seconds: bool = True) -> dict[str, Any]:
    """A result whose latency (µs) is `seconds`, one list of answers per second."""
    every = [v for s in seconds for v in s]
    series = []
    for i, s in enumerate(seconds):
        e: dict[str, Any] = {"t": float(i + 1), "partial": False, "rps": float(len(s)), "requests": len(s)}
        if keep_seconds:
            e["latency_hist"] = _hist(s).encode().decode()
        series.append(e)
    n = len(every)
    return {
        "meta": {"url": "http://127.0.0.1:1/", "model": "closed"},
        "summary": {"requests": n, "errors": 0, "rps": n / len(seconds)},
        "histograms": {"latency": _hist(every).encode().decode()},
        "timeseries": series,
    }


def run(seed: int, per_s: int = 2000, n_s: int = 5, scale: float = 1.0, tail: float = 1.0) -> list[list[int]]:
    """`n_s` seconds of about 20 ms answers; `scale` slows every answer, `tail` only the slowest 2 %."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_s):
        second = []
        for _ in range(per_s):
            v = 20_000 + rng.expovariate(1 / 300)
            if rng.random() < 0.02:  # the tail: p99 sits in it
                v = (23_000 + rng.expovariate(1 / 500)) * tail
            second.append(int(v * scale))
        out.append(second)
    return out


def rows(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in out["rows"]}


def test_the_same_distribution_is_the_same() -> None:
    # 20 pairs from one distribution: never a regression; "worse" (one-sided 5 %) in at most 2 of them.
    worse = 0
    for seed in range(20):
        out = compare(doc(run(seed, n_s=4)), doc(run(seed + 100, n_s=4)))
        assert not out["regression"], out["rows"]
        worse += rows(out)["latency p99 ms"]["verdict"] == "worse"
    assert worse <= 2


def test_a_20pct_slower_tail_is_a_regression_at_p99() -> None:
    out = compare(doc(run(1)), doc(run(2, tail=1.2)))
    p99 = rows(out)["latency p99 ms"]
    assert (p99["verdict"], p99["regression"]) == ("worse", True) and 15 < p99["change_pct"] < 25
    assert p99["noise"] == "across time: 5 and 5 blocks of seconds"
    assert rows(out)["latency p50 ms"]["regression"] is False
    assert out["regression"]


def test_one_busy_second_is_noise_not_a_regression() -> None:
    # The current run's third second has every answer 40 % slower (the box was busy for that second):
    # its p99 rises by more than 10 %, and the order-statistic interval alone would call it worse.
    cur = run(2)
    cur[2] = [int(v * 1.4) for v in cur[2]]
    p99 = rows(compare(doc(run(1)), doc(cur)))["latency p99 ms"]
    assert p99["change_pct"] > 10
    # Beyond the floor but not beyond the noise across 5 seconds: inconclusive, never a regression.
    assert (p99["verdict"], p99["regression"]) == ("inconclusive", False)
    assert p99["noise"].endswith(
        "run longer (-d 10s or more) to tell a " + f"{p99['change_pct']:+.1f}% change from noise"
    )
    # Over 10 seconds (one busy) it is the same.
    long = run(2, n_s=10)
    long[2] = [int(v * 1.4) for v in long[2]]
    p99 = rows(compare(doc(run(1, n_s=10)), doc(long)))["latency p99 ms"]
    assert (p99["verdict"], p99["regression"]) == ("same", False)
    # Without per-second histograms only the whole runs can be compared: the row says so.
    p99 = rows(compare(doc(run(1), False), doc(cur, False)))["latency p99 ms"]
    assert p99["noise"].startswith("within each run only") and p99["regression"] is True


def test_a_tail_without_enough_answers_is_not_judged() -> None:
    # 5 s x 1,000 answers: p999 has 5 answers beyond it (needs 10): not judged, even 50 % slower.
    out = compare(doc(run(1, per_s=1000)), doc(run(2, per_s=1000, tail=1.5)))
    p999 = rows(out)["latency p999 ms"]
    assert (p999["verdict"], p999["regression"]) == ("too few samples", False)
    assert p999["noise"] == "needs 10,000 answers in each run (has 5,000 and 5,000)"
    assert rows(out)["latency p99 ms"]["regression"] is True


def test_an_empty_histogram_is_no_data_never_a_regression() -> None:
    base, empty = doc(run(1)), doc([[], [], []])
    out = compare(base, empty)
    lat = [r for m, r in rows(out).items() if m.startswith("latency")]
    assert {(r["verdict"], r["regression"], r["current"]) for r in lat} == {("no data", False, None)}
    from squall.report.tables import fmt_ms, print_compare

    assert fmt_ms(None) == "—"
    print_compare(out, "a.json", "b.json")  # renders None as "—", no error


def test_welch_and_t() -> None:
    assert (t95(1), t95(4), round(t95(60), 3)) == (6.314, 2.132, 1.671)
    assert welch_shift([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]) > 1
    assert -1 < welch_shift([1.0, 1.5, 0.9], [1.1, 1.0, 1.4]) < 1
    assert welch_shift([1.0], [2.0, 3.0]) != welch_shift([1.0], [2.0, 3.0])  # NaN: too few


@pytest.mark.slow
def test_a_long_run_gives_one_block_per_stretch() -> None:
    # 620 seconds of 210 answers: cut into 300 stretches, one block each (a p99 block needs 200 answers,
    # a p999 block 2,000: ten seconds, which a stretch of two or three seconds never holds).
    from squall.result.compare import MAX_BLOCKS, block_percentiles

    long = doc(run(1, per_s=210, n_s=620))
    got = block_percentiles(long, "latency_hist", (50.0, 99.0, 99.9), "baseline")
    assert (len(got[50.0]), len(got[99.0]), len(got[99.9])) == (MAX_BLOCKS, MAX_BLOCKS, 0)
    short = block_percentiles(doc(run(1, per_s=250, n_s=40)), "latency_hist", (99.0, 99.9), "baseline")
    assert (len(short[99.0]), len(short[99.9])) == (40, 5)  # 40 seconds: every second, 8 to a p999 block
    p99 = rows(compare(long, doc(run(2, per_s=210, n_s=620))))["latency p99 ms"]
    assert p99["noise"] == "across time: 300 and 300 blocks of seconds" and not p99["regression"]


def test_a_box_busier_in_one_run_is_warned() -> None:
    base, cur = doc(run(1)), doc(run(2))
    for e in base["timeseries"]:
        e["host_cpu"] = 18.0
    for e in cur["timeseries"]:
        e["host_cpu"] = 67.0
    (warning,) = compare(base, cur)["warnings"]
    assert warning.startswith("the box was much busier during one run (host CPU baseline: 18%, current: 67%)")
    for e in cur["timeseries"]:
        e["host_cpu"] = 30.0
    assert compare(base, cur)["warnings"] == []


def test_a_bare_fraction_is_an_ambiguous_percentage() -> None:
    from squall.units import PlanError, parse_percent

    assert (parse_percent("10"), parse_percent("10%"), parse_percent("0.5%"), parse_percent("0")) == (
        10.0,
        10.0,
        0.5,
        0.0,
    )
    with pytest.raises(PlanError, match=r"ambiguous: write 10% or 0\.1%"):
        parse_percent("0.1", "--max-regression")
