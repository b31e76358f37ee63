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
    """A histogram's counts handed over by `Hist.take`, encoded when the worker has a moment."""

    __slots__ = ("acc", "h")

    def __init__(self, h: HdrHistogram, acc: list[int]) -> None:
        self.h = h
        self.acc = acc

    def encode(self) -> bytes:
        h = self.h
        if h.total_count:
            top = h.get_counts_array_index(h.max_value) + 1
            h.counts[:top] = self.acc[:top]
        return bytes(h.encode())


class Hist:
    """A recording front for one HdrHistogram that keeps the per-value cost to one `array.append`.

    `record` appends raw µs values to a buffer (8 bytes a value, held for at most one window); `fold`, run
    when the window is encoded, counts equal values in C and adds each distinct value once to the
    HdrHistogram's counts. Values above the range are clamped to its top and counted in `overflow`.
    """

    __slots__ = ("_acc", "_buf", "_half", "_mask", "_shift", "_table", "h", "overflow", "record")

    def __init__(self, table: array | None = None) -> None:
        self._table = table if table is not None else index_table(1 << 12)
        self.h = new_histogram()
        self._acc = [0] * self.h.counts_len
        self._mask = self.h.sub_bucket_mask
        self._shift = self.h.sub_bucket_half_count_magnitude
        self._half = self.h.sub_bucket_half_count
        self.overflow = 0
        self._buf = array("q")
        self.record = self._buf.append

    def fold(self) -> None:
        """Move buffered values into the histogram."""
        buf = self._buf
        if not buf:
            return
        lo, hi = min(buf), max(buf)
        if lo >= 0 and hi < len(self._table):
            # The common case, all in C but the last loop, which runs once per distinct bucket and adds into
            # a plain list (a ctypes array's item access costs several times more); encode() copies it over.
            h, counts = self.h, self._acc
            for index, n in Counter(map(self._table.__getitem__, buf)).items():
                counts[index] += n
            h.total_count += len(buf)
            h.min_value = min(h.min_value, lo)
            h.max_value = max(h.max_value, hi)
            del buf[:]
            return
        h, counts, mask, shift, half = self.h, self._acc, self._mask, self._shift, self._half
        lo, hi, total = h.min_value, h.max_value, 0
        for value, n in Counter(self._buf).items():
            if value > HIGHEST_US:
                value = HIGHEST_US
                self.overflow += n
            elif value < 0:
                value = 0
            # unit_magnitude is 0 for LOWEST_US == 1, so the bucket math needs no unit shift.
            bucket = (value | mask).bit_length() - shift - 1
            counts[((bucket + 1) << shift) + (value >> bucket) - half] += n
            total += n
            if value > hi:
                hi = value
            if value < lo:
                lo = value
        h.total_count += total
        h.min_value, h.max_value = lo, hi
        del self._buf[:]

    def record_many(self, values: array) -> None:
        """Record every value of an array('q') of µs."""
        self._buf.extend(values)

    @property
    def count(self) -> int:
        return self.h.total_count + len(self._buf)

    def sync(self) -> HdrHistogram:
        """Fold, then copy the counts into the HdrHistogram (up to the highest bucket used); returns it."""
        self.fold()
        h = self.h
        if h.total_count:
            top = h.get_counts_array_index(h.max_value) + 1
            h.counts[:top] = self._acc[:top]
        return h

    def encode(self) -> bytes:
        """The standard base64 HdrHistogram V2 encoding."""
        return bytes(self.sync().encode())

    def take(self) -> Taken:
        """Hand over what was recorded (to encode later) and start empty: O(1) but two allocations."""
        self.fold()
        taken = Taken(self.h, self._acc)
        self.h = new_histogram()
        self._acc = [0] * len(self._acc)
        self.overflow = 0
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
