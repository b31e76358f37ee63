"""How an LLM answer is recorded: its HTTP response, then its stream (TTFT, ITL, TPOT, tokens, goodput)."""

from __future__ import annotations

from typing import Any

LLM_HISTOGRAMS = ("ttft", "ttft_intended", "itl", "tpot", "e2e")
LLM_COUNTERS = (
    "bad_answers",
    "output_tokens",
    "input_tokens",
    "usage_answers",
    "estimate_answers",
    "token_discrepancy",
    "goodput",
    "bad_chunks",
    "retry_after",
    "retry_after_max_ms",
)


class AnswerRecording:
    """The LLM part of a Recorder (which holds the histograms, `llm_counts` and `goodput_us` it fills)."""

    hists: dict[str, Any]
    llm_counts: dict[str, int]
    goodput_us: tuple[tuple[str, int], ...]

    def response(
        self, status: int, start_ns: int, sent_ns: int, first_ns: int, done_ns: int, nin: int
    ) -> None:
        """Record the answer's HTTP response (the Recorder's)."""
        raise NotImplementedError

    def reject(self, kind: str) -> None:
        """Count the answer just recorded as an error of `kind` (the Recorder's)."""
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
        """Record one LLM answer: the HTTP response, then its stream (TTFT, ITL, TPOT, tokens, goodput)."""
        self.response(status, start, sent, first, done, nin)
        c = self.llm_counts
        if status >= 400:
            if reader is not None and reader.retry_after:
                c["retry_after"] += 1
                try:
                    ms = int(float(reader.retry_after) * 1000)
                    c["retry_after_max_ms"] = max(c["retry_after_max_ms"], ms)
                except ValueError:
                    pass  # an HTTP date: counted, not measured
            return
        kind = reader.finish(done)
        c["bad_chunks"] += reader.bad
        if kind is not None:
            self.reject(kind)
            return
        hists = self.hists
        ttft = (reader.t_first - sent) // 1000
        e2e = (done - sent) // 1000
        hists["ttft"].record(ttft)
        if open_model:
            hists["ttft_intended"].record((reader.t_first - start) // 1000)
        hists["e2e"].record(e2e)
        hists["itl"].record_many(reader.gaps)
        out, inp, from_usage, discrepancy = reader.tokens()
        tpot = (e2e - ttft) // (out - 1) if out > 1 else None
        if tpot is not None:
            hists["tpot"].record(tpot)
        c["output_tokens"] += out
        c["input_tokens"] += inp
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
                value = tpot if tpot is not None else 0
            else:
                value = max(reader.gaps, default=0)
            if value >= limit:
                return
        c["goodput"] += 1
