"""One worker's histograms and counters for the current window; `snapshot()` ships and resets them."""

from __future__ import annotations

from squall.hist import Hist
from squall.wire import Window

HISTOGRAMS = ("latency", "service", "ttfb", "schedule_lag", "loop_lag")


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
    """Histograms (integer µs) and counters of one worker, reset after every snapshot."""

    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.hists = {name: Hist() for name in HISTOGRAMS}
        self.latency = self.hists["latency"].record
        self.service = self.hists["service"].record
        self.ttfb = self.hists["ttfb"].record
        self.schedule_lag = self.hists["schedule_lag"].record
        self.loop_lag = self.hists["loop_lag"].record
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.ok = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.warmup = 0
        self.dropped = 0
        self.interrupted = 0
        self.unsent = 0
        self.status_codes: dict[int, int] = {}
        self.error_kinds: dict[str, int] = {}

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int, nout: int
    ) -> None:
        """Record one answered request; `start_ns` is the intended send in the open model, else the send."""
        sc = self.status_codes
        sc[status] = sc.get(status, 0) + 1
        if status < 400:
            self.ok += 1
        else:
            kind = classify_status(status)
            ek = self.error_kinds
            ek[kind] = ek.get(kind, 0) + 1  # type: ignore[index]
            self.errors += 1
        self.bytes_in += nin
        self.bytes_out += nout
        self.latency((done_ns - start_ns) // 1000)
        self.service((done_ns - sent_ns) // 1000)
        self.ttfb((first_ns - sent_ns) // 1000)

    def failure(self, kind: str, nout: int) -> None:
        """Count one request that got no HTTP response; it has no place in the latency histograms."""
        ek = self.error_kinds
        ek[kind] = ek.get(kind, 0) + 1
        self.errors += 1
        self.bytes_out += nout

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
        counters = {
            "requests": self.ok + self.errors,
            "ok": self.ok,
            "errors": self.errors,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "warmup": self.warmup,
            "dropped": self.dropped,
            "interrupted": self.interrupted,
            "unsent": self.unsent,
            "overflow": overflow,
        }
        window = Window(
            self.worker, seq, t_start, t_end, counters, self.status_codes, self.error_kinds, blobs, inflight
        )
        self._reset_counters()
        return window
