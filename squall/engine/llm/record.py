"""How an LLM answer is recorded: its HTTP response, then its stream (TTFT, ITL, TPOT, tokens, goodput).

A streamed answer adds TTFT (its first token of any kind: reasoning, answer text or tool call), TTFAT (its
first answer token, when it has one), ITL, TPOT, e2e and tokens; an answer read whole (not streamed) adds e2e
and tokens only: it has no first token apart from its end, so it never enters the stream's histograms.
"""

from __future__ import annotations

from email.utils import parsedate_tz
from typing import Any

LLM_HISTOGRAMS = ("ttft", "ttft_intended", "ttfat", "itl", "tpot", "e2e")
LLM_COUNTERS = (
    "bad_answers",
    "output_tokens",
    "input_tokens",
    "reasoning_tokens",
    "reasoning_answers",
    "usage_answers",
    "estimate_answers",
    "token_discrepancy",
    "goodput",
    "bad_chunks",
    "bad_usage",
    "retry_after",
    "retry_after_max_ms",
    "retry_after_clamped",
    "streamed_answers",
    "unstreamed_answers",
    "cancelled",
)
RETRY_AFTER_MAX_S = 3600


def retry_after_ms(value: bytes | str) -> tuple[int | None, bool]:
    """A Retry-After header's wait in ms (None for an HTTP date, which is not measured, or for a value
    that can't be read), and whether it was clamped into 0..3600 s or unreadable."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        seconds = float(text)
    except ValueError:
        try:
            return None, parsedate_tz(text.strip()) is None
        except Exception:  # (old email.utils raised on some odd dates)
            return None, True
    if not seconds >= 0:  # negative or NaN
        return 0, True
    if seconds > RETRY_AFTER_MAX_S:  # (inf too)
        return RETRY_AFTER_MAX_S * 1000, True
    return int(seconds * 1000), False


class AnswerRecording:
    """The LLM part of a Recorder (which holds the histograms, `llm_counts` and `goodput_us` it fills)."""

    hists: dict[str, Any]
    llm_counts: dict[str, int]
    goodput_us: tuple[tuple[str, int], ...]
    last_good: bool  # the answer just recorded counted as goodput

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        """Record the answer's HTTP response (the Recorder's)."""
        raise NotImplementedError

    def reject(self, kind: str) -> None:
        """Count the answer just recorded as an error of `kind` (the Recorder's)."""
        raise NotImplementedError

    def internal(self, exc: BaseException, counted: bool = True) -> None:
        """Count a bug in squall as the error kind `internal` and keep its traceback (the Recorder's)."""
        raise NotImplementedError

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
        """Record one LLM answer: the HTTP response, then its stream (TTFT, ITL, TPOT, tokens, goodput).

        An exception out of this is one from recording the response: nothing was counted. One from reading
        the stream after it is caught here: the answer (counted already) turns into an `internal` error.
        """
        self.response(status, start, sent, first, done, nin)
        self.last_good = False
        try:
            self._stream(status, start, sent, done, reader, open_model)
        except Exception as e:
            if status < 400:
                self.reject("internal")
            self.internal(e, counted=False)

    def _stream(self, status: int, start: int, sent: int, done: int, reader: Any, open_model: bool) -> None:
        c = self.llm_counts
        if status >= 400:
            if reader is not None and reader.retry_after:
                c["retry_after"] += 1
                ms, clamped = retry_after_ms(reader.retry_after)
                if ms is not None:
                    c["retry_after_max_ms"] = max(c["retry_after_max_ms"], ms)
                if clamped:
                    c["retry_after_clamped"] += 1
            return
        kind = reader.finish(done)
        c["bad_chunks"] += reader.bad
        c["bad_usage"] += reader.bad_usage
        if kind is not None:
            self.reject(kind)
            return
        hists = self.hists
        e2e = (done - sent) // 1000
        hists["e2e"].record(e2e)
        out, inp, from_usage, discrepancy = reader.tokens()
        tpot: int | None = None
        if reader.stream:
            c["streamed_answers"] += 1
            ttft = (reader.t_first - sent) // 1000
            hists["ttft"].record(ttft)
            if reader.t_answer:
                hists["ttfat"].record((reader.t_answer - sent) // 1000)
            if open_model:
                hists["ttft_intended"].record((reader.t_first - start) // 1000)
            hists["itl"].record_many(reader.gaps)
            if out > 1:
                tpot = (e2e - ttft) // (out - 1)
                hists["tpot"].record(tpot)
        else:
            c["unstreamed_answers"] += 1
            ttft = e2e  # (for goodput only: the user sees the first token when the whole answer comes)
        c["output_tokens"] += out
        c["input_tokens"] += inp
        if reader.thoughts or reader.token_counts[2]:  # (an answer with a reasoning phase)
            c["reasoning_tokens"] += reader.reasoning_tokens()
            c["reasoning_answers"] += 1
        if from_usage:
            c["usage_answers"] += 1
            c["token_discrepancy"] += discrepancy
        else:
            c["estimate_answers"] += 1
        for metric, limit in self.goodput_us:
            if metric == "ttft":
                value = ttft
            elif metric == "e2e":
                value = e2e
            elif metric == "tpot":
                value = tpot if tpot is not None else 0  # (one token, or not streamed: no time per token)
            else:
                value = max(reader.gaps, default=0)
            if value >= limit:
                return
        c["goodput"] += 1
        self.last_good = True  # (until a check on this answer fails: see reject)

    def abandoned(self, start: int, sent: int, reader: Any, open_model: bool) -> None:
        """Count an answer the client abandoned (--cancel-after, --cancel-rate): `cancelled`, neither ok nor
        an error; its TTFT and the ITL gaps until the cancel are kept, not its e2e, TPOT or tokens."""
        self.llm_counts["cancelled"] += 1
        if reader is not None and reader.stream and reader.t_first:
            hists = self.hists
            hists["ttft"].record((reader.t_first - sent) // 1000)
            if open_model:
                hists["ttft_intended"].record((reader.t_first - start) // 1000)
            hists["itl"].record_many(reader.gaps)
