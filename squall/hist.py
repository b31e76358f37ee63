"""The one histogram geometry (integer µs, 1 µs to 1 h, 3 significant figures): record, encode, merge."""

from __future__ import annotations

import ctypes
import sys
from array import array
from collections import Counter
from itertools import chain, repeat

import pyhdrh  # type: ignore[import-not-found]
from hdrh.codec import HdrHistogramEncoder, payload_header_size
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
SUMMARY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")


def new_histogram() -> HdrHistogram:
    """An empty histogram of the one geometry every part of squall uses."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def index_table(limit_us: int = 1 << 20) -> array:
    """counts-array index of every value below `limit_us` in the one geometry, for folding in C."""
    h = new_histogram()
    shift, half = h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count
    table = array("I", range(min(limit_us, 2 * half)))
    bucket = 1
    while len(table) < limit_us:
        base = ((bucket + 1) << shift) - half
        table.extend(chain.from_iterable(repeat(base + s, 1 << bucket) for s in range(half, 2 * half)))
        bucket += 1
    del table[limit_us:]
    return table


class Taken:
    """A histogram's bucket counts handed over by `Hist.take`, encoded when the worker has a moment."""

    __slots__ = ("counts", "scratch", "top")

    def __init__(self, counts: list[int], top: int, scratch: HdrHistogram | None = None) -> None:
        self.counts = counts
        self.top = top
        self.scratch = scratch

    def encode(self) -> bytes:
        return bytes(load(self.counts, self.top, self.scratch).encode())


def load(counts: list[int], top: int | None = None, into: HdrHistogram | None = None) -> HdrHistogram:
    """An HdrHistogram of the one geometry holding these bucket counts (min/max from the buckets used).

    `top`: no bucket at or above this index is used (the list is scanned when it is not known). `into`: a
    histogram to reuse (emptied first). An HdrHistogram and its encoder reference each other, so one made
    per window lives until the cycle collector finds it (188 KB of counts each): a worker reuses one.
    """
    if into is None:
        h = new_histogram()
    else:
        h = into
        ctypes.memset(h.counts, 0, ctypes.sizeof(h.counts))
        h.total_count, h.min_value, h.max_value = 0, sys.maxsize, 0
    raw = array("q", counts if top is None else counts[:top]).tobytes()
    used = raw.rstrip(b"\0")
    if not used:
        return h
    top = (len(used) + 7) // 8
    low = (len(raw) - len(raw.lstrip(b"\0"))) // 8
    ctypes.memmove(h.counts, raw, top * 8)
    h.total_count = sum(counts[:top])
    h.min_value = h.get_lowest_equivalent_value(h.get_value_from_index(low))
    h.max_value = h.get_highest_equivalent_value(h.get_value_from_index(top - 1))
    return h


class Hist:
    """Counts values (integer µs) straight into a plain list of the HdrHistogram's buckets.

    `record` is one table lookup and one list increment for values under the table's limit (the table maps
    value → bucket index); the few values above it take the bucket arithmetic. Values above the range are
    clamped to its top and counted in `overflow`; negatives count as 0. `hi` (at least the largest value
    recorded) bounds the buckets in use, so handing over and encoding touch only those. Hot paths may inline
    the lookup: `counts[table[v]] += 1` for 0 <= v < len(table), and must then raise `hi` to v.
    """

    __slots__ = ("_half", "_mask", "_scratch", "_shift", "counts", "hi", "overflow", "table")

    def __init__(self, table: array | None = None) -> None:
        self.table = table if table is not None else index_table(1 << 12)
        h = new_histogram()
        self.counts = [0] * h.counts_len
        self._mask = h.sub_bucket_mask
        self._shift = h.sub_bucket_half_count_magnitude
        self._half = h.sub_bucket_half_count
        self.overflow = 0
        self.hi = 0
        self._scratch = h  # reused to encode every window this Hist hands over

    def record(self, value: int) -> None:
        """Count one value."""
        if 0 <= value < len(self.table):
            self.counts[self.table[value]] += 1
            if value > self.hi:
                self.hi = value
        else:
            self.record_general(value)

    def record_general(self, value: int, n: int = 1) -> None:
        """Count `n` of a value of any size: clamped into the range, bucket found by arithmetic."""
        if value > HIGHEST_US:
            value = HIGHEST_US
            self.overflow += n
        elif value < 0:
            value = 0
        self.counts[self._index(value)] += n
        if value > self.hi:
            self.hi = value

    def _index(self, value: int) -> int:
        # unit_magnitude is 0 for LOWEST_US == 1, so the bucket math needs no unit shift.
        bucket = (value | self._mask).bit_length() - self._shift - 1
        return ((bucket + 1) << self._shift) + (value >> bucket) - self._half

    def record_many(self, values: array) -> None:
        """Record every value of an array('q') of µs (equal values counted once, in C)."""
        table, counts, limit = self.table, self.counts, len(self.table)
        for value, n in Counter(values).items():
            if 0 <= value < limit:
                counts[table[value]] += n
                if value > self.hi:
                    self.hi = value
            else:
                self.record_general(value, n)

    @property
    def top(self) -> int:
        """No bucket at or above this index has been used."""
        return self._index(min(self.hi, HIGHEST_US)) + 1

    @property
    def count(self) -> int:
        return sum(self.counts[: self.top])

    def sync(self) -> HdrHistogram:
        """An HdrHistogram holding what was recorded so far."""
        return load(self.counts, self.top)

    def encode(self) -> bytes:
        """The standard base64 HdrHistogram V2 encoding."""
        return bytes(self.sync().encode())

    def take(self) -> Taken:
        """Hand over what was recorded (to encode later) and start empty."""
        taken = Taken(self.counts, self.top, self._scratch)
        self.counts = [0] * len(self.counts)
        self.overflow = 0
        self.hi = 0
        return taken


class Merger:
    """Adds encoded histograms into totals without building a histogram per blob.

    `HdrHistogram.decode` allocates and initialises a whole histogram for every blob; a collector with many
    workers decodes hundreds a second. This decodes each blob's counts (hdrh's own C decoder) into one
    reused scratch array, adds them (hdrh's C add) into every total given, and zeroes what it used.
    """

    def __init__(self) -> None:
        h = new_histogram()
        self.counts_len = h.counts_len
        self.scratch = (ctypes.c_ulonglong * h.counts_len)()
        self.geometry = (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures)

    def add(self, blob: bytes | str, *totals: HdrHistogram) -> None:
        """Add one encoded histogram of the one geometry into each of `totals`."""
        payload = HdrHistogramEncoder.decode(blob)
        head = payload.payload
        geometry = (head.lowest_trackable_value, head.highest_trackable_value, head.significant_figures)
        if geometry != self.geometry:  # not ours: take the library's general path
            other = decode(blob)
            for total in totals:
                merge_into(total, other)
            return
        got = pyhdrh.decode(
            payload._data, payload_header_size, ctypes.addressof(self.scratch), self.counts_len, 8
        )
        if not got["total"]:
            return
        top = got["max_nonzero_index"] + 1
        first = totals[0]
        low = first.get_lowest_equivalent_value(first.get_value_from_index(got["min_nonzero_index"]))
        high = first.get_highest_equivalent_value(first.get_value_from_index(got["max_nonzero_index"]))
        for total in totals:
            pyhdrh.add_array(ctypes.addressof(total.counts), ctypes.addressof(self.scratch), top, 8)
            low_before = total.get_min_value() if total.total_count else sys.maxsize
            total.total_count += got["total"]
            total.max_value = max(total.max_value, high)
            total.min_value = min(low_before, low)
        ctypes.memset(ctypes.addressof(self.scratch), 0, top * 8)


def decode(blob: bytes | str) -> HdrHistogram:
    """Decode a base64 HdrHistogram V2 blob."""
    return HdrHistogram.decode(blob)


def merge_into(total: HdrHistogram, other: HdrHistogram) -> None:
    """Add `other`'s counts to `total` (exact; same geometry, so the fast path)."""
    if other.get_total_count():
        total.add(other)


def percentiles_ms(h: HdrHistogram, pcts: tuple[float, ...] = (50.0, 99.0)) -> dict[float, float]:
    """Percentile → value in ms; zeros when empty."""
    if not h.get_total_count():
        return dict.fromkeys(pcts, 0.0)
    values = h.get_percentile_to_value_dict(list(pcts))
    return {p: values[p] / 1000.0 for p in pcts}


def summary_ms(h: HdrHistogram) -> dict[str, float]:
    """`min, mean, p50, p90, p95, p99, p999, max` in ms (zeros for an empty histogram)."""
    if not h.get_total_count():
        return dict.fromkeys(SUMMARY_KEYS, 0.0)
    pv = percentiles_ms(h, PERCENTILES)
    return {
        "min": h.get_min_value() / 1000.0,
        "mean": round(h.get_mean_value() / 1000.0, 3),
        "p50": pv[50.0],
        "p90": pv[90.0],
        "p95": pv[95.0],
        "p99": pv[99.0],
        "p999": pv[99.9],
        "max": h.get_max_value() / 1000.0,
    }
