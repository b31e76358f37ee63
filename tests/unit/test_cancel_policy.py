"""The cancel policy: which sends are abandoned and where (pure, seeded); how an abandoned answer counts."""

import asyncio

import pytest

from squall.engine.llm.apis import APIS, parse_path
from squall.engine.llm.cancel import FIRST_GUESS, Canceller, canceller, cancelling, cut_point, draws
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.engine.recorder import Recorder
from squall.hist import decode
from squall.plan.plan import assemble
from squall.plan.specs import LlmSpec, Prompt, RequestSpec
from squall.units import PlanError

MS = 1_000_000
NS = 1_000_000_000
EVENT = b'data: {"choices":[{"delta":{"content":"hello"}}]}\n\n'


def reader() -> AnswerReader:
    return AnswerReader(Reading(APIS["chat"], True, estimate_tokens, parse_path(""), None), input_tokens=3)


def test_the_cut_point_lies_between_the_first_token_and_the_expected_end() -> None:
    for end in range(1, 60):
        points = [cut_point(k / 1000, end) for k in range(1000)]
        assert min(points) == 1
        assert max(points) == max(1, end - 1)  # before the end: the last token never comes
        assert points == sorted(points)
    assert cut_point(0.999999, 10) == 9 and cut_point(0.0, 10) == 1
    # Uniform: each of the 9 points of a 10-token answer takes a ninth of the draws.
    got = [cut_point(k / 9000, 10) for k in range(9000)]
    assert all(got.count(k) == 1000 for k in range(1, 10))


def test_draws_are_seeded_per_worker() -> None:
    a = draws(7, 0, 0.5, 200)
    assert a == draws(7, 0, 0.5, 200)  # reproducible
    assert a != draws(7, 1, 0.5, 200) and a != draws(8, 0, 0.5, 200)  # each worker, each seed its own
    assert 70 < sum(d is not None for d in a) < 130
    assert all(d is None for d in draws(7, 0, 0.0, 50))
    assert all(d is not None for d in draws(7, 0, 1.0, 50))
    # Two draws a send whatever the rate: the same sends' points at any rate (a higher rate adds sends).
    low, high = draws(7, 0, 0.2, 100), draws(7, 0, 0.6, 100)
    assert all(h == lo for lo, h in zip(low, high, strict=True) if lo is not None)


def spec_plan(**kw: object) -> object:
    return assemble(
        RequestSpec("http://127.0.0.1:9/v1/chat/completions", "POST"), llm=LlmSpec(**kw), quiet=True
    )  # type: ignore[arg-type]


def test_no_canceller_without_the_options() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert canceller(spec_plan(), 0, loop) is None  # type: ignore[arg-type]
        assert not cancelling(spec_plan())  # type: ignore[arg-type]
        assert cancelling(spec_plan(cancel_rate=0.1)) and cancelling(spec_plan(cancel_after=1.0))  # type: ignore[arg-type]
        assert isinstance(canceller(spec_plan(cancel_after=1.0), 0, loop), Canceller)  # type: ignore[arg-type]
    finally:
        loop.close()


def test_arm_follows_the_draws_and_sets_a_timer() -> None:
    loop = asyncio.new_event_loop()
    try:
        spec = LlmSpec(cancel_rate=0.5, cancel_after=30.0, max_tokens=10)
        c = Canceller(spec, 7, 0, loop)
        cuts, timers = [], []
        for _ in range(40):
            at, timer = c.arm(lambda r: None, reader(), 0)
            cuts.append(at)
            timers.append(timer)
        want = [0 if d is None else cut_point(d, 10) for d in draws(7, 0, 0.5, 40)]
        assert cuts == want
        assert all(t is not None and 29 < t.when() - loop.time() <= 30 for t in timers)
        for t in timers:
            t.cancel()
        assert Canceller(LlmSpec(cancel_rate=0.5), 7, 0, loop).arm(lambda r: None, reader(), 0)[1] is None
    finally:
        loop.close()


def test_the_expected_end_is_max_tokens_else_the_running_mean() -> None:
    loop = asyncio.new_event_loop()
    try:
        prompts = (Prompt("a", max_tokens=5), Prompt("b"))
        c = Canceller(LlmSpec(prompts=prompts, cancel_rate=1.0), 1, 0, loop)
        assert (c.expected_end(0), c.expected_end(1)) == (5, FIRST_GUESS)
        for events in (3, 5):  # two answers read to their end: 3 and 5 content events
            r = reader()
            for k in range(events):
                r.feed(EVENT, (k + 1) * MS)
            r.feed(b"data: [DONE]\n\n", (events + 1) * MS)
            assert r.finish((events + 1) * MS) is None
            c.learn(r)
        cut = reader()
        cut.feed(EVENT, MS)
        c.learn(cut)  # (an answer never finished, as a cancelled one: not counted)
        c.learn(None)
        assert (c.expected_end(0), c.expected_end(1)) == (5, 4)
        assert Canceller(LlmSpec(max_tokens=9, cancel_rate=1.0), 1, 0, loop).expected_end(0) == 9
    finally:
        loop.close()


def test_rate_with_no_stream_is_refused() -> None:
    with pytest.raises(PlanError, match=r"--cancel-rate .* --no-stream"):
        LlmSpec(stream=False, cancel_rate=0.5).validate()
    LlmSpec(stream=False, cancel_after=1.0).validate()  # a time needs no tokens
    LlmSpec(cancel_rate=0.5).validate()


def test_an_abandoned_answer_is_cancelled_with_its_ttft_and_gaps() -> None:
    rec = Recorder(0, 10, llm=True, open_model=True)
    r = reader()
    for k in range(3):
        r.feed(EVENT, (5 + k) * MS)  # first token 5 ms after the send, then 1 ms apart
    rec.abandoned(0, MS, r, True)  # intended at 0, sent at 1 ms
    rec.abandoned(0, MS, reader(), True)  # cancelled before its first token
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    c = window.counters
    assert (c["cancelled"], c["ok"], c["errors"], c["streamed_answers"], c["output_tokens"]) == (
        2,
        0,
        0,
        0,
        0,
    )
    hists = {name: decode(blob) for name, blob in window.histograms.items()}
    assert hists["ttft"].get_total_count() == 1 and 3900 <= hists["ttft"].get_value_at_percentile(50) <= 4100
    assert hists["ttft_intended"].get_total_count() == 1
    assert hists["itl"].get_total_count() == 2
    assert not {"e2e", "tpot", "latency"} & set(hists)
