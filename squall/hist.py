"""The one histogram geometry (integer µs, 1 µs to 1 h, 3 significant figures): record, encode, merge."""

from __future__ import annotations

import base64
import ctypes
import sys
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from itertools import accumulate, chain, compress, repeat
from typing import Any

import pyhdrh  # type: ignore[import-not-found]
from hdrh.codec import (
    ExternalHeader,
    HdrHistogramEncoder,
    PayloadHeader,
    ext_header_size,
    get_compression_cookie,
    get_encoding_cookie,
    payload_header_size,
)
from hdrh.histogram import HdrHistogram

from squall.units import PlanError

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
SUMMARY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
# The geometry's bucket layout, as HdrHistogram derives it from the three numbers above (unit magnitude 0).
_HALF_MAGNITUDE = (2 * 10**SIGNIFICANT_FIGURES - 1).bit_length() - 1  # 10: 1,024 sub-buckets a half
_HALF = 1 << _HALF_MAGNITUDE
_SUB_MASK = 2 * _HALF - 1
COUNTS_LEN = ((HIGHEST_US >> _HALF_MAGNITUDE).bit_length() + 1) * _HALF  # 23,552 buckets


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

    __slots__ = ("counts", "top")

    def __init__(self, counts: list[int] | dict[int, int], top: int) -> None:
        self.counts = counts
        self.top = top

    def encode(self) -> bytes:
        return encode_counts(self.counts, self.top)


def _dense(counts: list[int] | dict[int, int], top: int | None = None) -> array:
    """The counts as array('q'), from index 0 to the last bucket used (a dict: sparse counts)."""
    if isinstance(counts, dict):
        used = [i for i, n in counts.items() if n]
        out = array("q", bytes(8 * (max(used) + 1))) if used else array("q")
        for i in used:
            out[i] = counts[i]
        return out
    raw = array("q", counts if top is None else counts[:top]).tobytes().rstrip(b"\0")
    return array("q", raw + bytes(-len(raw) % 8))


def encode_counts(counts: list[int] | dict[int, int], top: int | None = None) -> bytes:
    """The standard base64 HdrHistogram V2 encoding of bucket counts of the one geometry.

    Byte for byte what `HdrHistogram.encode` gives for the same counts, without building a histogram (188 KB
    of counts each): the work is proportional to the buckets in use.
    """
    dense = _dense(counts, top)
    n = len(dense)
    room = n * 9  # the C encoder asks for room for the worst case: 9 bytes a count
    buf = (ctypes.c_byte * (payload_header_size + room))()
    varint_len = 0
    if n:
        start = ctypes.addressof(buf) + payload_header_size
        varint_len = pyhdrh.encode(dense.buffer_info()[0], n, 8, start, room)
    head = PayloadHeader()
    head.cookie = get_encoding_cookie()
    head.payload_len = varint_len
    head.normalizing_index_offset = 0
    head.conversion_ratio_bits = 1
    head.significant_figures = SIGNIFICANT_FIGURES
    head.lowest_trackable_value = LOWEST_US
    head.highest_trackable_value = HIGHEST_US
    ctypes.memmove(ctypes.addressof(buf), ctypes.addressof(head), payload_header_size)
    compressed = zlib.compress(ctypes.string_at(buf, payload_header_size + varint_len))
    outer = ExternalHeader()
    outer.cookie = get_compression_cookie()
    outer.length = len(compressed)
    return base64.b64encode(ctypes.string_at(ctypes.addressof(outer), ext_header_size) + compressed)


def encode(h: HdrHistogram) -> str:
    """`h.encode()` as text."""
    return bytes(h.encode()).decode()


def load(counts: list[int]) -> HdrHistogram:
    """An HdrHistogram of the one geometry holding these bucket counts (min/max from the buckets used)."""
    h = new_histogram()
    raw = array("q", counts).tobytes()
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

    `sparse`: count into a dict (a Counter: the same `counts[i] += 1` works) instead of a 188 KB list, for
    the many small recorders of a scenario's steps, which see a few values each a second.
    """

    __slots__ = ("counts", "hi", "overflow", "sparse", "table")

    def __init__(self, table: array | None = None, sparse: bool = False) -> None:
        self.table = table if table is not None else index_table(1 << 12)
        self.sparse = sparse
        self.counts: list[int] | Counter[int] = Counter() if sparse else [0] * COUNTS_LEN
        self.overflow = 0
        self.hi = 0

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
        self.counts[index_of(value)] += n
        if value > self.hi:
            self.hi = value

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
        return index_of(min(self.hi, HIGHEST_US)) + 1

    @property
    def count(self) -> int:
        if isinstance(self.counts, dict):
            return sum(self.counts.values())
        return sum(self.counts[: self.top])

    def sync(self) -> HdrHistogram:
        """An HdrHistogram holding what was recorded so far."""
        return load(list(_dense(self.counts, self.top)))

    def encode(self) -> bytes:
        """The standard base64 HdrHistogram V2 encoding."""
        return encode_counts(self.counts, self.top)

    def take(self) -> Taken:
        """Hand over what was recorded (to encode later) and start empty."""
        taken = Taken(self.counts, self.top)
        self.counts = Counter() if self.sparse else [0] * COUNTS_LEN
        self.overflow = 0
        self.hi = 0
        return taken


def index_of(value: int) -> int:
    """The counts-array index of a value (0 <= value <= HIGHEST_US) in the one geometry."""
    # unit_magnitude is 0 for LOWEST_US == 1, so the bucket math needs no unit shift.
    bucket = (value | _SUB_MASK).bit_length() - _HALF_MAGNITUDE - 1
    return ((bucket + 1) << _HALF_MAGNITUDE) + (value >> bucket) - _HALF


def _low_of(index: int) -> int:
    """The lowest value of the bucket at `index`."""
    bucket = (index >> _HALF_MAGNITUDE) - 1
    if bucket < 0:
        return index
    return ((index & (_HALF - 1)) + _HALF) << bucket


def _width_of(index: int) -> int:
    """How many values share the bucket at `index`."""
    return 1 << max((index >> _HALF_MAGNITUDE) - 1, 0)


# What a JSON value that should have been an encoded histogram is, in an error message.
_KINDS = {
    type(None): "null",
    bool: "true or false",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "an object",
}


class BadHistogram(PlanError):
    """An encoded histogram in an input that cannot be read (not HDR, empty, truncated, of the wrong type)."""


class Merger:
    """Adds encoded histograms into totals without building a histogram per blob.

    `HdrHistogram.decode` allocates and initialises a whole histogram for every blob; a collector with many
    workers decodes hundreds a second. This decodes each blob's counts (hdrh's own C decoder) into one
    reused scratch array, adds them (hdrh's C add) into every total given, and zeroes what it used.
    """

    def __init__(self) -> None:
        self.counts_len = COUNTS_LEN
        self.scratch: Any = None  # made at the first add: an unused merger costs nothing
        self.geometry = (LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)

    def add(self, blob: bytes | str, *totals: HdrHistogram) -> None:
        """Add one encoded histogram into each of `totals` (BadHistogram when it cannot be read)."""
        payload = _payload(blob)
        head = payload.payload
        geometry = (head.lowest_trackable_value, head.highest_trackable_value, head.significant_figures)
        if geometry != self.geometry:  # not ours: take the library's general path
            other = decode(blob)
            for total in totals:
                merge_into(total, other)
            return
        if self.scratch is None:
            self.scratch = (ctypes.c_ulonglong * COUNTS_LEN)()
        try:
            got = pyhdrh.decode(
                payload._data, payload_header_size, ctypes.addressof(self.scratch), self.counts_len, 8
            )
        except (ValueError, IndexError, TypeError) as e:  # (a bad varint stream: nothing to add)
            ctypes.memset(ctypes.addressof(self.scratch), 0, ctypes.sizeof(self.scratch))
            raise BadHistogram(f"not an HDR histogram ({e})") from None
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


def _payload(blob: object) -> Any:
    """The decompressed payload of an encoded histogram, or BadHistogram saying what is wrong with it."""
    if not isinstance(blob, (str, bytes)):
        raise BadHistogram(f"not an encoded histogram but {_KINDS.get(type(blob), type(blob).__name__)}")
    if not blob:
        raise BadHistogram("empty: not an encoded histogram")
    try:
        payload = HdrHistogramEncoder.decode(blob)
    except Exception as e:  # binascii, zlib, hdrh's cookie and length errors: all one verdict
        why = str(e) or type(e).__name__
        raise BadHistogram(f"not an HDR histogram, or cut short ({why})") from None
    head = payload.payload
    if not (
        1 <= head.significant_figures <= 5
        and head.lowest_trackable_value >= 1
        and 2 * head.lowest_trackable_value <= head.highest_trackable_value <= 1 << 62
    ):
        raise BadHistogram("an HDR histogram with an impossible range or precision")
    return payload


def decode(blob: bytes | str) -> HdrHistogram:
    """Decode a base64 HdrHistogram V2 blob; BadHistogram (a PlanError) when it is not one."""
    payload = _payload(blob)
    head = payload.payload
    try:
        h = HdrHistogram(
            head.lowest_trackable_value,
            head.highest_trackable_value,
            head.significant_figures,
            hdr_payload=payload,
        )
    except (ValueError, IndexError, TypeError, OverflowError, MemoryError) as e:
        raise BadHistogram(f"not an HDR histogram ({str(e) or type(e).__name__})") from None
    return h


def merge_into(total: HdrHistogram, other: HdrHistogram) -> None:
    """Add `other`'s counts to `total` (exact; same geometry, so the fast path)."""
    if other.get_total_count():
        total.add(other)


def clear(h: HdrHistogram) -> None:
    """Empty a histogram for reuse, zeroing only the buckets it used."""
    if h.total_count:
        top = h.counts_len
        if 0 < h.max_value <= h.highest_trackable_value:
            top = min(h.get_counts_array_index(h.max_value) + 1, top)
        ctypes.memset(ctypes.addressof(h.counts), 0, top * 8)
    h.total_count, h.min_value, h.max_value = 0, sys.maxsize, 0


def _used(h: HdrHistogram) -> tuple[int, list[int]]:
    """(first, counts): the bucket counts from the lowest used to the highest used, and the index of the
    first (a C copy, not the library's Python loops)."""
    if not h.get_total_count():
        return 0, []
    first, top = _span(h)
    used = array("q", ctypes.string_at(ctypes.addressof(h.counts) + 8 * first, 8 * (top - first))).tolist()
    if sum(used) != h.get_total_count():  # min or max not kept (a histogram built by hand): read them all
        first, used = 0, h.counts[: h.counts_len]
    while used and not used[-1]:
        used.pop()
    return first, used


def _ours(h: HdrHistogram) -> bool:
    return (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures) == (
        LOWEST_US,
        HIGHEST_US,
        SIGNIFICANT_FIGURES,
    )


def _span(h: HdrHistogram) -> tuple[int, int]:
    """(first, top): the buckets from the lowest to the highest value kept, or the whole array."""
    first, top = 0, h.counts_len
    if 0 < h.max_value <= h.highest_trackable_value:
        top = min(h.get_counts_array_index(h.max_value) + 1, top)
        if 0 < h.min_value <= h.max_value:
            first = h.get_counts_array_index(h.min_value)
    return first, top


_CHUNK = 256  # buckets summed at a time to find a percentile's neighbourhood


def values_at(h: HdrHistogram, pcts: Iterable[float]) -> dict[float, int]:
    """Percentile → value in µs, as `HdrHistogram.get_value_at_percentile` gives it, read in C-sized steps.

    The buckets are copied out in one go, summed a chunk at a time, and only the chunk holding a percentile
    is added up bucket by bucket: about one pass over the used buckets for any number of percentiles.
    """
    pcts = list(pcts)
    total = h.get_total_count()
    if not total:
        return dict.fromkeys(pcts, 0)
    if not _ours(h):
        return {p: h.get_value_at_percentile(p) for p in pcts}
    first, top = _span(h)
    counts = array("q", ctypes.string_at(ctypes.addressof(h.counts) + 8 * first, 8 * (top - first)))
    sums = [sum(counts[i : i + _CHUNK]) for i in range(0, len(counts), _CHUNK)]
    if sum(sums) != total:  # min or max not kept (a histogram built by hand): read every bucket
        first = 0
        counts = array("q", ctypes.string_at(ctypes.addressof(h.counts), 8 * h.counts_len))
        sums = [sum(counts[i : i + _CHUNK]) for i in range(0, len(counts), _CHUNK)]
    chunks = list(accumulate(sums))
    out = {}
    for p in pcts:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        c = min(bisect_left(chunks, target), len(chunks) - 1)
        within = list(accumulate(counts[c * _CHUNK : (c + 1) * _CHUNK], initial=chunks[c - 1] if c else 0))
        j = min(bisect_left(within, target, 1) - 1, len(within) - 2)
        index = first + c * _CHUNK + j
        low = _low_of(index)
        out[p] = low + _width_of(index) - 1 if p else low
    return out


def mean_us(h: HdrHistogram) -> float:
    """The mean in µs, as `HdrHistogram.get_mean_value` gives it (each bucket at its middle)."""
    if not _ours(h):
        return float(h.get_mean_value())
    first, used = _used(h)
    if not used:
        return 0.0
    total = 0
    for i in compress(range(len(used)), used):
        index = first + i
        total += used[i] * (_low_of(index) + (_width_of(index) >> 1))
    return float(total) / h.get_total_count()


def percentiles_ms(h: HdrHistogram, pcts: tuple[float, ...] = (50.0, 99.0)) -> dict[float, float | None]:
    """Percentile → value in ms; None for each when empty (a percentile of nothing is not 0 ms)."""
    if not h.get_total_count():
        return dict.fromkeys(pcts)
    values = values_at(h, pcts)
    return {p: values[p] / 1000.0 for p in pcts}


def summary_ms(h: HdrHistogram) -> dict[str, float | None]:
    """`min, mean, p50, p90, p95, p99, p999, max` in ms; each None for an empty histogram (no data)."""
    if not h.get_total_count():
        return dict.fromkeys(SUMMARY_KEYS)
    values = values_at(h, PERCENTILES)
    pv = {p: values[p] / 1000.0 for p in PERCENTILES}
    return {
        "min": h.get_min_value() / 1000.0,
        "mean": round(mean_us(h) / 1000.0, 3),
        "p50": pv[50.0],
        "p90": pv[90.0],
        "p95": pv[95.0],
        "p99": pv[99.0],
        "p999": pv[99.9],
        "max": h.get_max_value() / 1000.0,
    }
