"""One worker's histograms and counters for the current window; `snapshot()` ships and resets them."""

from __future__ import annotations

import traceback
from collections import deque
from typing import Any

from squall.engine.llm.history import TurnReader, turn_part
from squall.engine.llm.record import LLM_COUNTERS, LLM_HISTOGRAMS, AnswerRecording
from squall.engine.llm.stream import AnswerReader
from squall.hist import Hist, Taken, index_table
from squall.wire import Window

HISTOGRAMS = ("latency", "service", "ttfb", "schedule_lag")
STATUS_SLOTS = 1000  # status codes 0-999; anything else is counted as 0
SAMPLE_CHARS = 4000  # an error sample's traceback, at most (its end, where the cause is)


def classify_status(status: int) -> str | None:
    """The error kind of an HTTP status, or None when it counts as ok (1xx-3xx)."""
    if status < 400:
        return None
    if status == 429:
        return "http_429"
    if status == 401:
        return "http_401"
    if status == 403:
        return "http_403"
    if status < 500:
        return "http_4xx"
    return "http_5xx"


class Recorder(AnswerRecording):
    """Histograms (integer µs) and counters of one worker, reset after every snapshot.

    The per-response path does the least it can: one list increment per status code, one byte count and
    three appends; ok/errors and the kinds of HTTP errors are derived from the status counts once a window.
    """

    def __init__(
        self,
        worker: int,
        request_bytes: int = 0,
        llm: bool = False,
        goodput: tuple[tuple[str, float], ...] = (),
        open_model: bool = True,
        table: Any = None,
        sparse: bool = False,
    ) -> None:
        """`table`: a bucket index table to share (squall.hist.index_table; 4 MB each). `sparse`: count
        into dicts, not 188 KB lists (for the many sub-recorders of a scenario's steps)."""
        self.worker = worker
        self.open_model = open_model
        self.request_bytes = request_bytes
        self.llm = llm
        self.goodput_us = tuple((metric, int(limit * 1e6)) for metric, limit in goodput)
        self.last_good = False
        table = table if table is not None else index_table()
        self.table = table
        self.table_len = len(table)
        self.hists = {name: Hist(table, sparse) for name in HISTOGRAMS + (LLM_HISTOGRAMS if llm else ())}
        self.schedule_lag = self.hists["schedule_lag"].record
        self.hi = 0  # the largest latency counted by the inlined path this window (>= its service and ttfb)
        self._bind_counts()
        # Closed windows waiting to be encoded: a histogram key is its name, or (kind, part, name).
        self.closed: deque[tuple[Window, dict[Any, Taken]]] = deque()
        # Sub-recorders keyed (kind, name), kind in wire.PART_KINDS: scenario steps and journeys, py phases.
        self.parts: dict[tuple[str, str], Recorder] = {}
        self.custom: dict[str, int] = {}  # squall.sdk.count() totals this window (py runs)
        self.notes: dict[str, Any] = {}  # sent once with the next window: error samples, tracemalloc
        self.lags: list[int] = []  # the loop probe's lateness (µs) this window: ~100 values, judged here
        self.loop_lag = self.lags.append
        self.internal_seen = False  # the first internal error's traceback has been kept
        self._reset_counters()

    def _bind_counts(self) -> None:
        # The per-response path increments these lists directly; take() replaces them every window.
        hists = self.hists
        self.c_latency = hists["latency"].counts
        self.c_service = hists["service"].counts
        self.c_ttfb = hists["ttfb"].counts

    def _reset_counters(self) -> None:
        self.status = [0] * STATUS_SLOTS
        self.expected: dict[int, int] = {}  # error statuses a check asked for: counted ok
        self.failures = 0
        self.bytes_in = 0
        self.warmup = 0
        self.dropped = 0
        self.interrupted = 0
        self.unsent = 0
        self.error_kinds: dict[str, int] = {}
        self.llm_counts = dict.fromkeys(LLM_COUNTERS, 0)

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        """Record one answered request; `start_ns` is the intended send in the open model, else the send.

        Times must be ordered (start <= sent <= first <= done): then every value is non-negative, and when
        latency, the largest, is under the bucket table's limit so are the others.
        """
        latency = (done_ns - start_ns) // 1000
        if latency < self.table_len:
            if latency > self.hi:
                self.hi = latency
            table = self.table
            self.c_latency[table[latency]] += 1
            self.c_ttfb[table[(first_ns - sent_ns) // 1000]] += 1
            # In the closed model a request is sent when it is due, so service time *is* latency: it is
            # counted once and the latency histogram shipped under both names.
            if self.open_model:
                self.c_service[table[(done_ns - sent_ns) // 1000]] += 1
        else:
            hists = self.hists
            hists["latency"].record(latency)
            hists["ttfb"].record((first_ns - sent_ns) // 1000)
            if self.open_model:
                hists["service"].record((done_ns - sent_ns) // 1000)
        # Counted last: a response whose times could not be recorded is not counted here (the caller counts
        # it as `internal` instead), so it is never counted twice.
        self.status[status if 0 <= status < STATUS_SLOTS else 0] += 1
        self.bytes_in += nin

    def failure(self, kind: str, reader: Any = None) -> None:
        """Count one request that got no HTTP response; it has no place in the latency histograms. `reader`:
        its AnswerReader, when it has one (a conversation's turn is counted in its turn's part too)."""
        ek = self.error_kinds
        ek[kind] = ek.get(kind, 0) + 1
        self.failures += 1
        if reader is not None and reader.__class__ is not AnswerReader and getattr(reader, "parted", False):
            for part in self._answer_parts(reader):
                part.failure(kind)

    def internal(self, exc: BaseException, counted: bool = True) -> None:
        """A bug in squall caught where it would have ended the worker: count the request it cost as the
        error kind `internal` (`counted`: False when the request is counted already), keep the first
        traceback (shipped once, with the next window)."""
        if counted:
            self.failure("internal")
        if not self.internal_seen:
            self.internal_seen = True
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.notes.setdefault("error_samples", {})["internal"] = text[-SAMPLE_CHARS:]

    def close_window(self, seq: int, t_start: int, t_end: int, inflight: int, users: int = 0) -> None:
        """End the window: take its counters and histograms (cheap), and queue it for `encode_step`."""
        overflow = 0
        taken: dict[str, Taken] = {}
        for name in ("latency", "service", "ttfb"):
            hist = self.hists[name]
            hist.hi = max(hist.hi, self.hi)  # the hot path raised only the recorder's
        self.hi = 0
        for name, hist in self.hists.items():
            if hist.count:
                overflow += hist.overflow
                taken[name] = hist.take()
        self._bind_counts()
        lags = sorted(self.lags)
        self.lags.clear()
        status_codes = {code: n for code, n in enumerate(self.status) if n}
        error_kinds = dict(self.error_kinds)
        ok = http_errors = 0
        bad_answers = self.llm_counts["bad_answers"]
        for code, n in status_codes.items():
            kind = classify_status(code)
            expected = min(n, self.expected.get(code, 0))  # a scenario step that asked for this status
            if kind is None or expected:
                ok += n if kind is None else expected
            if kind is not None and n > expected:
                http_errors += n - expected
                error_kinds[kind] = error_kinds.get(kind, 0) + n - expected
        requests = ok + http_errors + self.failures + self.llm_counts["cancelled"]
        counters = {
            "requests": requests,
            "ok": ok - bad_answers,  # 2xx answers whose stream failed are errors (their kind is counted)
            "errors": http_errors + self.failures + bad_answers,
            "bytes_in": self.bytes_in,
            "bytes_out": requests * self.request_bytes,
            "warmup": self.warmup,
            "dropped": self.dropped,
            "interrupted": self.interrupted,
            "unsent": self.unsent,
            "overflow": overflow,
        }
        if self.llm:
            counters.update(self.llm_counts)
        window = Window(
            self.worker,
            seq,
            t_start,
            t_end,
            counters,
            status_codes,
            error_kinds,
            {},
            inflight,
            users,
            loop_lag_p99_us=lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
            custom=dict(self.custom),
        )
        self.custom.clear()  # (a py workload holds this same dict: cleared, never replaced)
        if self.notes:
            window.notes.update(self.notes)
            self.notes.clear()
        for (kind, name), part in self.parts.items():
            part.close_window(seq, t_start, t_end, 0)
            part_window, part_taken = part.closed.popleft()
            window.parts.setdefault(kind, {})[name] = part_window
            taken.update(((kind, name, hist), counts) for hist, counts in part_taken.items())
        self.closed.append((window, taken))
        self._reset_counters()

    def answer(
        self,
        status: int,
        start: int,
        sent: int,
        first: int,
        done: int,
        nin: int,
        reader: Any,
        open_model: bool,
    ) -> None:
        """Record one LLM answer (AnswerRecording.answer); one whose reader knows more is counted in its
        parts too: a conversation's turn ("1".."63", "64+"; summary.llm.by_turn) and, with several keys,
        its key (summary.by_key), with only what those summaries read (`_part_answer`)."""
        AnswerRecording.answer(self, status, start, sent, first, done, nin, reader, open_model)
        # (a plain answer pays the class check; one with neither a key nor a turn, one attribute read more)
        if reader.__class__ is not AnswerReader and getattr(reader, "parted", False):
            for part in self._answer_parts(reader):
                part._part_answer(status, start, sent, first, done, nin, reader)

    def _part_answer(
        self, status: int, start: int, sent: int, first: int, done: int, nin: int, reader: Any
    ) -> None:
        """Record an answer in one of its parts: the response, an error, TTFT, e2e and tokens (what by_turn
        and by_key read); the whole answer (ITL, TPOT, TTFAT, goodput) is the run's, recorded once."""
        self.response(status, start, sent, first, done, nin)
        if status >= 400:
            return
        try:
            kind = reader.finish(done)  # (finished already by the run's record: its outcome again)
            if kind is not None:
                self.reject(kind)
                return
            c = self.llm_counts
            self.hists["e2e"].record((done - sent) // 1000)
            if reader.stream:
                c["streamed_answers"] += 1
                self.hists["ttft"].record((reader.t_first - sent) // 1000)
            else:
                c["unstreamed_answers"] += 1
            out, inp = reader.tokens()[:2]  # (counted once, by the run's record)
            c["input_tokens"] += inp
            c["output_tokens"] += out
        except Exception:  # (the run's record counted it `internal` and kept its traceback)
            self.reject("internal")

    def abandoned(self, start: int, sent: int, reader: Any, open_model: bool) -> None:
        """Count an answer the client abandoned (AnswerRecording.abandoned), in its parts too."""
        AnswerRecording.abandoned(self, start, sent, reader, open_model)
        if reader is not None and reader.__class__ is not AnswerReader and getattr(reader, "parted", False):
            for part in self._answer_parts(reader):  # (the count and the TTFT, what by_turn reads)
                part.llm_counts["cancelled"] += 1
                if reader.stream and reader.t_first:
                    part.hists["ttft"].record((reader.t_first - sent) // 1000)

    def _answer_parts(self, reader: Any) -> list[Recorder]:
        """The parts an answer read by `reader` (a KeyReader that is `parted`) is counted in: its turn's,
        its key's."""
        parts = []
        if reader.__class__ is TurnReader:
            parts.append(self.part("turn", turn_part(reader.turn), True))
        key = getattr(reader, "key", None)
        if key is not None:
            parts.append(self.part("key", key, True))
        return parts

    def part(self, kind: str, name: str, llm: bool) -> Recorder:
        """The sub-recorder of part (`kind`, `name`), made on its first use (sparse: it sees a share)."""
        part = self.parts.get((kind, name))
        if part is None:
            part = self.parts[kind, name] = Recorder(
                self.worker, llm=llm, open_model=self.open_model, table=self.table, sparse=True
            )
            part.goodput_us = self.goodput_us
        return part

    def expect(self, status: int) -> None:
        """The status just recorded (400 or more) is what a check asked for: count it ok, not an error."""
        self.expected[status] = self.expected.get(status, 0) + 1

    def reject(self, kind: str) -> None:
        """The request just recorded as answered failed a check (a stream error, an expect): an error."""
        self.llm_counts["bad_answers"] += 1
        if self.last_good:  # an answer that failed a check is not good, however fast it came
            self.last_good = False
            self.llm_counts["goodput"] -= 1
        ek = self.error_kinds
        ek[kind] = ek.get(kind, 0) + 1

    def encode_step(self) -> Window | None:
        """Encode one histogram of the oldest closed window; return that window once it is complete.

        Called every few ms, so encoding a window's histograms (~1 ms each) never pauses the loop for long.
        """
        if not self.closed:
            return None
        window, taken = self.closed[0]
        if taken:
            name, counts = taken.popitem()
            if isinstance(name, tuple):
                kind, part, hist = name
                window.parts[kind][part].histograms[hist] = counts.encode()
            else:
                window.histograms[name] = counts.encode()
            if taken:
                return None
        self.closed.popleft()
        for w in (window, *(part for named in window.parts.values() for part in named.values())):
            if not self.open_model and "latency" in w.histograms:
                w.histograms["service"] = w.histograms["latency"]
        return window

    def flush(self) -> list[Window]:
        """Encode everything still queued, oldest first."""
        out = []
        while self.closed:
            window = self.encode_step()
            if window is not None:
                out.append(window)
        return out

    def snapshot(self, seq: int, t_start: int, t_end: int, inflight: int) -> Window:
        """Close the window and encode it at once (the queue must be empty)."""
        assert not self.closed, "encode the queued windows first"
        self.close_window(seq, t_start, t_end, inflight)
        return self.flush()[-1]


class NullRecorder(Recorder):
    """Records nothing: for measuring what recording itself costs (`--no-record`); windows stay empty."""

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        pass

    def failure(self, kind: str, reader: Any = None) -> None:
        pass

    def answer(
        self,
        status: int,
        start: int,
        sent: int,
        first: int,
        done: int,
        nin: int,
        reader: Any,
        open_model: bool,
    ) -> None:
        pass
