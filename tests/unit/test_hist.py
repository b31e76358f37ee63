import random
from array import array

from squall.hist import HIGHEST_US, Hist, decode, merge_into, new_histogram, percentiles_ms, summary_ms


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


def test_empty_summary_is_zeros() -> None:
    assert set(summary_ms(new_histogram()).values()) == {0.0}
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
