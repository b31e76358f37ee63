"""Merging is associative: windows merged in any grouping equal one recorder that saw every sample."""

import random

from squall.collector.aggregate import Aggregate, second_entry
from squall.engine.recorder import Recorder
from squall.hist import summary_ms
from squall.wire import Window, decode, encode

STATUSES = (200, 200, 200, 201, 404, 429, 500, 503)


def _traffic(seed: int, n: int) -> list[tuple[int, int, int, int]]:
    rng = random.Random(seed)
    return [
        (rng.choice(STATUSES), int(rng.lognormvariate(7, 1)), rng.randrange(0, 3), rng.randrange(100, 5000))
        for _ in range(n)
    ]


def _windows(workers: int, per_window: int, windows: int) -> tuple[list[Window], Recorder]:
    """Each worker records its share; `single` records every sample once, as one recorder would."""
    single = Recorder(0, 10)
    out = []
    for w in range(workers):
        rec = Recorder(w, 10)
        for seq in range(1, windows + 1):
            for status, lat, fail, nin in _traffic(w * 1000 + seq, per_window):
                for r in (rec, single):
                    if fail == 0:
                        r.failure("timeout")
                    else:
                        r.response(status, 0, lat // 2 * 1000, lat * 1000, lat * 1000 + 7000, nin)
                    if seq == 2:
                        r.schedule_lag(lat)
            # Round-trip through the wire, as the collector receives it.
            out.append(decode(encode(rec.snapshot(seq, (seq - 1) * 10**9, seq * 10**9, w))))
    return out, single


def _assert_same(agg: Aggregate, ref: Aggregate) -> None:
    assert agg.counters == ref.counters
    assert agg.status_codes == ref.status_codes
    assert agg.error_kinds == ref.error_kinds
    assert sorted(agg.hists) == sorted(ref.hists)
    for name, h in ref.hists.items():
        assert agg.hists[name].equals(h), name
        assert summary_ms(agg.hists[name]) == summary_ms(h)


def test_any_grouping_equals_one_recorder() -> None:
    windows, single = _windows(workers=4, per_window=700, windows=3)
    ref = Aggregate()
    ref.add(single.snapshot(1, 0, 10**9, 0))

    in_order = Aggregate()
    for w in windows:
        in_order.add(w)
    _assert_same(in_order, ref)

    shuffled = list(windows)
    random.Random(3).shuffle(shuffled)
    for cut in (1, 5, 11):
        left, right = Aggregate(), Aggregate()
        for w in shuffled[:cut]:
            left.add(w)
        for w in shuffled[cut:]:
            right.add(w)
        right.merge(left)
        _assert_same(right, ref)

    # ((a + b) + c) == (a + (b + c)) over groups of three.
    groups = [windows[i::3] for i in range(3)]
    parts = []
    for g in groups:
        a = Aggregate()
        for w in g:
            a.add(w)
        parts.append(a)
    ab_c, a_bc = Aggregate(), Aggregate()
    ab_c.merge(parts[0])
    ab_c.merge(parts[1])
    ab_c.merge(parts[2])
    bc = Aggregate()
    bc.merge(parts[1])
    bc.merge(parts[2])
    a_bc.merge(parts[0])
    a_bc.merge(bc)
    _assert_same(ab_c, a_bc)
    _assert_same(a_bc, ref)


def test_counts_are_exact() -> None:
    windows, _ = _windows(workers=2, per_window=500, windows=2)
    agg = Aggregate()
    for w in windows:
        agg.add(w)
    assert agg.counters["requests"] == 2 * 2 * 500
    assert agg.counters["requests"] == agg.counters["ok"] + agg.counters["errors"]
    assert agg.hists["latency"].get_total_count() == agg.counters["requests"] - agg.error_kinds["timeout"]
    summary = agg.summary(2.0, open_model=True)
    assert summary["rps"] == 1000.0
    assert set(summary["latency_ms"]) == {"min", "mean", "p50", "p90", "p95", "p99", "p999", "max"}
    assert "schedule_lag_ms" in summary
    assert "schedule_lag_ms" not in agg.summary(2.0, open_model=False)


def test_per_second_entries() -> None:
    windows, _ = _windows(workers=3, per_window=100, windows=3)
    agg = Aggregate()
    for w in windows:
        agg.add(w)
    secs = agg.pop_seconds(2)
    assert [s.seq for s in secs] == [1, 2]
    entry = second_entry(secs[0], 1.0)
    assert entry["t"] == 1.0
    assert entry["requests"] == 300
    assert entry["rps"] == 300.0
    assert entry["inflight"] == 0 + 1 + 2
    assert [s.seq for s in agg.pop_seconds(10)] == [3]
