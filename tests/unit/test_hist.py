import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squall.hist import (
    HIGHEST_US,
    BadHistogram,
    Hist,
    Merger,
    clear,
    decode,
    encode,
    encode_counts,
    load,
    mean_us,
    merge_into,
    new_histogram,
    percentiles_ms,
    summary_ms,
    values_at,
)
from squall.units import PlanError


def test_fast_recording_equals_the_library() -> None:
    rng = random.Random(1)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(50_000)] + [0, 1, 2047, 2048, HIGHEST_US]
    fast, ref = Hist(), new_histogram()
    for v in values:
        fast.record(v)
        ref.record_value(v)
    got = fast.sync()
    assert got.equals(ref)
    assert fast.count == len(values)
    assert summary_ms(got) == summary_ms(ref)


def test_out_of_range_is_clamped_and_counted() -> None:
    h = Hist()
    h.record(HIGHEST_US * 10)
    h.record(-5)
    h.record(100)
    got = h.sync()
    assert h.overflow == 1
    assert h.count == 3
    assert got.get_max_value() >= HIGHEST_US
    assert got.get_min_value() == 0


def test_encode_decode_and_reset() -> None:
    h = Hist()
    for v in range(1, 10_001):
        h.record(v)
    blob = h.encode()
    assert blob.startswith(b"HISTF")
    back = decode(blob)
    assert back.get_total_count() == 10_000
    assert percentiles_ms(back, (50.0,))[50.0] == percentiles_ms(h.sync(), (50.0,))[50.0]
    h.take()  # hands the counts over and starts empty
    assert h.count == 0
    h.record(42)
    assert decode(h.encode()).get_total_count() == 1


def test_repeated_syncs_accumulate() -> None:
    h = Hist()
    for _ in range(3):
        for v in range(70_000):
            h.record(v)
        assert h.sync().get_total_count() == h.count
    assert h.count == 3 * 70_000


def test_a_percentile_of_nothing_is_none_not_zero() -> None:
    assert summary_ms(new_histogram()) == dict.fromkeys(
        ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
    )
    assert percentiles_ms(new_histogram(), (50.0, 99.9)) == {50.0: None, 99.9: None}
    one = new_histogram()
    one.record_value(1500)
    assert summary_ms(one)["p50"] == 1.5 and percentiles_ms(one)[99.0] == 1.5
    total = new_histogram()
    merge_into(total, new_histogram())
    assert total.get_total_count() == 0


def test_table_fast_path_equals_the_library() -> None:
    from squall.hist import index_table

    table = index_table()
    rng = random.Random(5)
    fast, ref = Hist(table), new_histogram()
    for _ in range(5):
        values = [int(rng.lognormvariate(7, 1.2)) % len(table) for _ in range(20_000)]
        for v in values:
            fast.record(v)
            ref.record_value(v)
        got = fast.sync()  # all in the table range: the fast path
        assert got.equals(ref)
        assert (got.get_min_value(), got.get_max_value()) == (ref.get_min_value(), ref.get_max_value())
    fast.record(len(table) + 5)  # beyond the table: the general path
    ref.record_value(len(table) + 5)
    assert fast.sync().equals(ref)
    many, ref_many = Hist(table), new_histogram()
    many.record_many(array("q", [3, 3, 9000, -1, len(table) + 5, HIGHEST_US * 2]))
    for v in (3, 3, 9000, 0, len(table) + 5, HIGHEST_US):
        ref_many.record_value(v)
    assert many.sync().equals(ref_many) and many.overflow == 1


def test_merger_equals_decode_and_add() -> None:
    from squall.hist import Merger

    rng = random.Random(9)
    merger, fast, slow, second = Merger(), new_histogram(), new_histogram(), new_histogram()
    for round_ in range(20):
        h = Hist()
        for _ in range(rng.randrange(0, 3000)):
            h.record(int(rng.lognormvariate(6, 2)) if round_ % 5 else rng.randrange(0, 3))
        blob = h.encode()
        merger.add(blob, fast, second)
        merge_into(slow, decode(blob))
        assert fast.equals(slow) and second.equals(slow)
        assert (fast.get_min_value(), fast.get_max_value()) == (slow.get_min_value(), slow.get_max_value())
    assert summary_ms(fast) == summary_ms(slow)
    assert all(c == 0 for c in merger.scratch)


def test_windows_encoded_through_one_reused_histogram_equal_fresh_ones() -> None:
    from squall.hist import load

    rng = random.Random(4)
    h = Hist()
    for n in (5000, 10, 0, 3000, 1):  # a big window, then small ones: nothing of the last may remain
        for _ in range(n):
            h.record(int(rng.lognormvariate(7, 2)))
        fresh = bytes(load(list(h.counts)).encode())
        assert bytes(h.take().encode()) == fresh
        assert decode(fresh).get_total_count() == n


# -- reading buckets in C, encoding without a histogram, and inputs that are not histograms ---------------


VALUES = st.lists(
    st.one_of(
        st.integers(0, 3000), st.integers(0, HIGHEST_US), st.sampled_from([0, 1, 2047, 2048, HIGHEST_US])
    ),
    max_size=300,
)
# (the library walks every bucket up to the largest value in Python: below 10 s keeps it quick)
SMALL = st.lists(
    st.one_of(st.integers(0, 3000), st.integers(0, 10_000_000), st.sampled_from([0, 2047, 2048]))
)
PCTS = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)  # (the library's own answers take ms each: few examples)
@given(SMALL, PCTS)
def test_percentiles_and_mean_read_in_c_equal_the_library(values: list[int], pcts: list[float]) -> None:
    h = new_histogram()
    for v in values:
        h.record_value(v)
    if not values:
        assert values_at(h, pcts) == dict.fromkeys(pcts, 0) and mean_us(h) == 0.0
        return
    total = new_histogram()
    Merger().add(h.encode(), total)
    for got in (h, decode(h.encode()), total):  # recorded, decoded, merged: min and max kept three ways
        assert values_at(got, pcts) == got.get_percentile_to_value_dict(pcts)
        assert mean_us(got) == got.get_mean_value()


@settings(max_examples=80, deadline=None)
@given(VALUES)
def test_counts_encode_byte_for_byte_as_the_library_does(values: list[int]) -> None:
    dense, sparse = Hist(), Hist(sparse=True)
    for v in values:
        dense.record(v)
        sparse.record(v)
    want = bytes(load(list(dense.counts)).encode())
    assert dense.encode() == sparse.encode() == want
    assert dense.count == sparse.count == len(values)
    assert bytes(dense.take().encode()) == bytes(sparse.take().encode()) == want
    assert isinstance(sparse.counts, dict) and not sparse.counts  # started empty
    h = decode(want)
    assert encode(h) == want.decode()
    clear(h)
    assert (h.get_total_count(), sum(h.counts)) == (0, 0)
    assert encode_counts([]) == bytes(new_histogram().encode())


@pytest.mark.parametrize(
    "blob, why",
    [
        ("", "empty"),
        ("not a histogram", "not an HDR histogram"),
        ("SElTVEZBQUFBS", "not an HDR histogram, or cut short"),  # a real one cut short
        ("eHh4eHh4eHh4eHh4eHh4eA==", "not an HDR histogram"),  # base64, but not HDR
        (5, "but a number"),
        (None, "but null"),
        ([1, 2], "but a list"),
        ({"a": 1}, "but an object"),
    ],
)
def test_what_is_not_a_histogram_is_a_plan_error_naming_why(blob: object, why: str) -> None:
    for read in (decode, lambda b: Merger().add(b, new_histogram())):
        with pytest.raises(BadHistogram, match=why) as e:
            read(blob)  # type: ignore[arg-type]
        assert isinstance(e.value, PlanError)


def test_a_truncated_real_histogram_is_refused_and_the_merger_stays_clean() -> None:
    h = Hist()
    for v in range(1, 5000, 7):
        h.record(v)
    blob = h.encode()
    merger, total = Merger(), new_histogram()
    for cut in (len(blob) // 2, len(blob) - 4, 12):
        with pytest.raises(BadHistogram):
            merger.add(blob[:cut], total)
    merger.add(blob, total)
    assert total.get_total_count() == h.count
    assert all(c == 0 for c in merger.scratch)
