"""One worker's histograms and counters for the current window; `snapshot()` ships and resets them."""

from __future__ import annotations

from squall.hist import Hist, index_table
from squall.wire import Window

HISTOGRAMS = ("latency", "service", "ttfb", "schedule_lag", "loop_lag")
STATUS_SLOTS = 1000  # status codes 0-999; anything else is counted as 0


def classify_status(status: int) -> str | None:
    """The error kind of an HTTP status, or None when it counts as ok (1xx-3xx)."""
    if status < 400:
        return None
    if status == 429:
        return "http_429"
    if status < 500:
        return "http_4xx"
    return "http_5xx"


class Recorder:
    """Histograms (integer µs) and counters of one worker, reset after every snapshot.

    The per-response path does the least it can: one list increment per status code, one byte count and
    three appends; ok/errors and the kinds of HTTP errors are derived from the status counts once a window.
    """

    def __init__(self, worker: int, request_bytes: int = 0) -> None:
        self.worker = worker
        self.request_bytes = request_bytes
        table = index_table()
        self.hists = {name: Hist(table) for name in HISTOGRAMS}
        self.latency = self.hists["latency"].record
        self.service = self.hists["service"].record
        self.ttfb = self.hists["ttfb"].record
        self.schedule_lag = self.hists["schedule_lag"].record
        self.loop_lag = self.hists["loop_lag"].record
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.status = [0] * STATUS_SLOTS
        self.failures = 0
        self.bytes_in = 0
        self.warmup = 0
        self.dropped = 0
        self.interrupted = 0
        self.unsent = 0
        self.error_kinds: dict[str, int] = {}

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        """Record one answered request; `start_ns` is the intended send in the open model, else the send."""
        self.status[status if 0 <= status < STATUS_SLOTS else 0] += 1
        self.bytes_in += nin
        self.latency((done_ns - start_ns) // 1000)
        self.service((done_ns - sent_ns) // 1000)
        self.ttfb((first_ns - sent_ns) // 1000)

    def failure(self, kind: str) -> None:
        """Count one request that got no HTTP response; it has no place in the latency histograms."""
        ek = self.error_kinds
        ek[kind] = ek.get(kind, 0) + 1
        self.failures += 1

    def fold(self) -> None:
        """Fold buffered values into the histograms; called every few ms so no single fold is long."""
        for hist in self.hists.values():
            hist.fold()

    def snapshot(self, seq: int, t_start: int, t_end: int, inflight: int) -> Window:
        """The window's deltas as a message; then start a fresh window."""
        overflow = 0
        blobs = {}
        for name, hist in self.hists.items():
            if hist.count:
                blobs[name] = hist.encode()
                overflow += hist.overflow
                hist.reset()
        status_codes = {code: n for code, n in enumerate(self.status) if n}
        error_kinds = dict(self.error_kinds)
        ok = http_errors = 0
        for code, n in status_codes.items():
            kind = classify_status(code)
            if kind is None:
                ok += n
            else:
                http_errors += n
                error_kinds[kind] = error_kinds.get(kind, 0) + n
        requests = ok + http_errors + self.failures
        counters = {
            "requests": requests,
            "ok": ok,
            "errors": http_errors + self.failures,
            "bytes_in": self.bytes_in,
            "bytes_out": requests * self.request_bytes,
            "warmup": self.warmup,
            "dropped": self.dropped,
            "interrupted": self.interrupted,
            "unsent": self.unsent,
            "overflow": overflow,
        }
        window = Window(
            self.worker, seq, t_start, t_end, counters, status_codes, error_kinds, blobs, inflight
        )
        self._reset_counters()
        return window


class NullRecorder(Recorder):
    """Records nothing: for measuring what recording itself costs (`--no-record`); windows stay empty."""

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        pass

    def failure(self, kind: str) -> None:
        pass
