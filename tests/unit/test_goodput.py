"""Goodput counts only answers that were fast enough and passed every check."""

from squall.engine.llm.apis import APIS, parse_path
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.engine.recorder import Recorder

MS = 1_000_000
NS = 1_000_000_000
STREAM = b'data: {"choices":[{"delta":{"content":"hello"}}]}\n\ndata: [DONE]\n\n'


def answered(rec: Recorder) -> None:
    """One fast 200 answer of a chat stream, recorded."""
    reader = AnswerReader(Reading(APIS["chat"], True, estimate_tokens, parse_path(""), None), input_tokens=3)
    reader.feed(STREAM, 2 * MS)
    rec.answer(200, 0, 0, MS, 3 * MS, len(STREAM), reader, False)


def test_an_answer_that_fails_a_check_is_not_goodput() -> None:
    rec = Recorder(0, 10, llm=True, goodput=(("ttft", 1.0),), open_model=False)
    answered(rec)  # good
    answered(rec)
    rec.reject("expect_body")  # the second failed its step's check
    answered(rec)
    rec.reject("expect_body")
    rec.reject("failed_at:step")  # (a second verdict on the same answer takes nothing more)
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    assert window.counters["goodput"] == 1 and window.error_kinds["expect_body"] == 2
