"""Reasoning, tool calls, and the Responses and Anthropic Messages shapes: each read on events as the APIs
send them (their docs' examples), then recorded (TTFT of any token, TTFAT, reasoning tokens) and reported."""

from typing import Any

import orjson
import pytest
from rich.console import Console

from squall.collector.aggregate import Aggregate
from squall.collector.result import Outline, Verdict, build_result, plan_meta
from squall.engine.llm.apis import APIS, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.engine.recorder import Recorder
from squall.hist import index_table
from squall.plan.plan import Plan
from squall.plan.specs import LlmSpec, Prompt, RequestSpec
from squall.report.console import print_summary
from squall.report.sections import llm_table, times_table

MS = 1_000_000
TABLE = index_table()  # (4 MB: built once for every Recorder here)


def events(*objs: Any) -> list[bytes]:
    """One SSE event per object (a str is sent as it is: [DONE])."""
    return [b"data: " + (o.encode() if isinstance(o, str) else orjson.dumps(o)) + b"\n\n" for o in objs]


def named(*pairs: tuple[str, Any]) -> list[bytes]:
    """Events with an `event:` line, as the Responses and Messages APIs send them."""
    return [b"event: " + name.encode() + b"\ndata: " + orjson.dumps(o) + b"\n\n" for name, o in pairs]


def read(api: str, chunks: list[bytes], stream: bool = True, done_marker: str | None = None) -> AnswerReader:
    """Feed each chunk at (its index + 1) ms; finish at the next ms."""
    r = AnswerReader(Reading(APIS[api], stream, estimate_tokens, (), done_marker), input_tokens=7)
    for i, chunk in enumerate(chunks):
        r.feed(chunk, (i + 1) * MS)
    r.finish((len(chunks) + 1) * MS)
    return r


def delta(**d: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d}]}


# Chat completions


def test_chat_reasoning_content_then_content_with_usage_details() -> None:
    # DeepSeek / vLLM: reasoning_content deltas (content null) before the answer's content deltas.
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    r = read(
        "chat",
        events(
            delta(role="assistant", content=""),
            delta(content=None, reasoning_content="Let me"),
            delta(content=None, reasoning_content=" think."),
            delta(content="The answer"),
            delta(content=" is 4."),
            {"id": "c1", "choices": [], "usage": usage},
            "[DONE]",
        ),
    )
    assert r.finish(0) is None
    assert (r.text(), r.reasoning()) == ("The answer is 4.", "Let me think.")
    assert (r.t_first, r.t_answer) == (2 * MS, 4 * MS)  # TTFT: the first token of any kind
    assert list(r.gaps) == [1000, 1000, 1000]  # every token event, reasoning ones included
    assert r.tokens() == (
        40,
        12,
        True,
        estimate_tokens("The answer is 4.") + estimate_tokens("Let me think.") - 40,
    )
    assert r.reasoning_tokens() == 30  # the server's count


def test_chat_reasoning_field_without_usage_is_estimated() -> None:
    # OpenRouter and recent vLLM: `reasoning`; the same text in both fields is one token event, counted once.
    r = read(
        "chat",
        events(
            delta(role="assistant", content="", reasoning="Hmm, two"),
            delta(reasoning_content=" plus two", reasoning=" plus two"),
            delta(content="Four"),
            "[DONE]",
        ),
    )
    assert (r.finish(0), r.text(), r.reasoning()) == (None, "Four", "Hmm, two plus two")
    assert r.reasoning_tokens() == estimate_tokens("Hmm, two plus two")
    assert r.tokens() == (estimate_tokens("Four") + estimate_tokens("Hmm, two plus two"), 7, False, 0)
    assert (r.t_first, r.t_answer, list(r.gaps)) == (MS, 3 * MS, [1000, 1000])


def test_chat_tool_call_arguments_are_answer_text() -> None:
    # OpenAI's tool-call stream: the first delta names the function, the next ones carry its arguments.
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    r = read(
        "chat",
        events(
            delta(role="assistant", content=None, tool_calls=[call]),
            delta(tool_calls=[{"index": 0, "function": {"arguments": '{"loc'}}]),
            delta(tool_calls=[{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]),
            {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            "[DONE]",
        ),
    )
    assert (r.finish(0), r.text(), r.reasoning()) == (None, '{"location": "Paris"}', "")
    assert (r.t_first, r.t_answer, list(r.gaps)) == (2 * MS, 2 * MS, [1000])
    assert r.reasoning_tokens() == 0


def test_chat_and_completions_answers_read_whole() -> None:
    message = {
        "role": "assistant",
        "content": "4",
        "reasoning_content": "2+2",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    body = {"choices": [{"message": message}], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}
    r = read("chat", [orjson.dumps(body)], stream=False)
    assert (r.finish(0), r.text(), r.reasoning(), r.tokens()[:3]) == (None, "4{}", "2+2", (9, 3, True))
    assert r.t_first == r.t_answer == 2 * MS  # (read whole: every time is the answer's end)
    only_calls = {"choices": [{"message": {"content": None, "tool_calls": message["tool_calls"]}}]}
    assert read("chat", [orjson.dumps(only_calls)], stream=False).text() == "{}"
    comp = {"choices": [{"text": "ok", "reasoning_content": "why"}], "usage": {"completion_tokens": 2}}
    r = read("completions", [orjson.dumps(comp)], stream=False)
    assert (r.finish(0), r.text(), r.reasoning()) == (None, "ok", "why")


def test_completions_reasoning_events() -> None:
    r = read(
        "completions",
        events(
            {"choices": [{"index": 0, "text": "", "reasoning_content": "think", "finish_reason": None}]},
            {"choices": [{"index": 0, "text": "done", "finish_reason": "stop"}]},
            "[DONE]",
        ),
    )
    assert (r.finish(0), r.text(), r.reasoning(), r.t_first, r.t_answer) == (
        None,
        "done",
        "think",
        MS,
        2 * MS,
    )


def test_reasoning_alone_is_an_answer_with_no_answer_token() -> None:
    # A reasoning model cut by max_tokens while it still thinks: tokens came, so it is no empty_response.
    r = read("chat", events(delta(reasoning_content="a long thought"), "[DONE]"))
    assert (r.finish(0), r.text(), r.t_first, r.t_answer) == (None, "", MS, 0)
    assert read("chat", events(delta(content=""), "[DONE]")).finish(0) == "empty_response"


def test_exact_output_asks_for_the_length_with_max_tokens_only() -> None:
    exact = LlmSpec(api="chat", max_tokens=64, exact_output=True)
    assert request_body(exact, Prompt("p"))["min_tokens"] == 64
    assert request_body(exact, Prompt("p"))["ignore_eos"] is True
    body = request_body(LlmSpec(api="completions", exact_output=True), Prompt("p", max_tokens=9))
    assert (body["max_tokens"], body["min_tokens"], body["ignore_eos"]) == (9, 9, True)
    assert "min_tokens" not in request_body(LlmSpec(api="chat", exact_output=True), Prompt("p"))
    assert "ignore_eos" not in request_body(LlmSpec(api="chat", max_tokens=64), Prompt("p"))
    for api in ("responses", "anthropic"):
        assert "min_tokens" not in request_body(
            LlmSpec(api=api, max_tokens=5, exact_output=True), Prompt("p")
        )


# The Responses API


def responses_stream(text: list[str], summary: list[str], usage: dict[str, Any]) -> list[bytes]:
    """A Responses stream as OpenAI's docs show one: created, a reasoning item with its summary deltas, a
    message item with its text deltas, completed (with the usage); no [DONE]."""
    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "output": [], "usage": None}
    out = named(
        ("response.created", {"type": "response.created", "sequence_number": 0, "response": resp}),
        ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": resp}),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "reasoning", "id": "rs"},
            },
        ),
    )
    for piece in summary:
        ev = {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs",
            "summary_index": 0,
            "delta": piece,
        }
        out += named((ev["type"], ev))
    out += named(
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 1, "item": {"type": "message", "id": "m"}},
        ),
    )
    for piece in text:
        ev = {"type": "response.output_text.delta", "item_id": "m", "output_index": 1, "delta": piece}
        out += named((ev["type"], ev))
    out += named(
        ("response.output_text.done", {"type": "response.output_text.done", "text": "".join(text)}),
        ("response.completed", {"type": "response.completed", "response": resp | {"usage": usage}}),
    )
    return out


def test_responses_stream_reads_text_reasoning_and_usage() -> None:
    usage = {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 64},
        "total_tokens": 123,
    }
    chunks = responses_stream(["Hi", " there"], ["Greeting", " the user"], usage)
    r = read("responses", chunks)
    assert (r.finish(0), r.text(), r.reasoning(), r.bad) == (None, "Hi there", "Greeting the user", 0)
    assert (r.t_first, r.t_answer) == (4 * MS, 7 * MS)
    assert list(r.gaps) == [1000, 2000, 1000]
    assert r.tokens()[:3] == (87, 36, True)
    assert r.reasoning_tokens() == 64
    # the same through `squall llm`'s reading, whose spec keeps the [DONE] marker it never sees
    assert read("responses", chunks, done_marker="[DONE]").finish(0) is None


def test_responses_ends_cut_failed_and_error() -> None:
    whole = responses_stream(["a"], [], {"input_tokens": 1, "output_tokens": 1})
    assert read("responses", whole[:-1]).finish(0) == "stream_broken"  # cut before response.completed
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error"}}}
    assert read("responses", [*whole[:-1], *named(("response.failed", failed))]).finish(0) == "stream_error"
    error = {"type": "error", "code": "rate_limit_exceeded", "message": "slow down", "sequence_number": 3}
    assert read("responses", [*whole[:4], *named(("error", error))]).finish(0) == "stream_error"
    incomplete = {
        "type": "response.incomplete",
        "response": {"status": "incomplete", "usage": {"output_tokens": 5}},
    }
    r = read("responses", [*whole[:-1], *named(("response.incomplete", incomplete))])
    assert (r.finish(0), r.tokens()[0]) == (None, 5)  # (stopped at max_output_tokens: an answer)


def test_responses_function_call_arguments_are_text() -> None:
    chunks = named(
        *(
            (
                "response.function_call_arguments.delta",
                {"type": "response.function_call_arguments.delta", "delta": d},
            )
            for d in ('{"a"', ": 1}")
        ),
        ("response.completed", {"type": "response.completed", "response": {"usage": None}}),
    )
    r = read("responses", chunks)
    assert (r.finish(0), r.text(), r.t_answer) == (None, '{"a": 1}', MS)


def test_responses_answer_read_whole() -> None:
    body = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "reasoning",
                "id": "rs",
                "summary": [{"type": "summary_text", "text": "Short."}],
                "content": [{"type": "reasoning_text", "text": "Long thought."}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello.", "annotations": []}],
            },
            {"type": "function_call", "name": "f", "call_id": "c", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 5, "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 12}},
    }
    r = read("responses", [orjson.dumps(body)], stream=False)
    assert (r.finish(0), r.text(), r.reasoning()) == (
        None,
        "Hello.{}",
        "Long thought.",
    )  # (its text, not summary)
    assert (r.tokens()[:3], r.reasoning_tokens()) == ((20, 5, True), 12)
    del body["output"][0]["content"]
    assert read("responses", [orjson.dumps(body)], stream=False).reasoning() == "Short."
    assert read("responses", [b'{"output": []}'], stream=False).finish(0) == "empty_response"
    assert read("responses", [b'{"output": 5}'], stream=False).finish(0) == "bad_response"


def test_responses_body() -> None:
    spec = LlmSpec(api="responses", model="gpt", max_tokens=16, temperature=0.5)
    assert request_body(spec, Prompt("hi")) == {
        "model": "gpt",
        "input": "hi",
        "stream": True,
        "max_output_tokens": 16,
        "temperature": 0.5,
    }
    msgs = (("system", "be brief"), ("user", "hi"))
    body = request_body(LlmSpec(api="responses", stream=False), Prompt(messages=msgs, max_tokens=3))
    assert body == {
        "model": "default",
        "input": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": False,
        "max_output_tokens": 3,
    }
    assert APIS["responses"].history_field == "input"


# The Anthropic Messages API


def anthropic_stream() -> list[bytes]:
    """A Messages stream as Anthropic's docs show one: thinking, text, a tool call, usage in two events."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 100, "output_tokens": 1},
        },
    }

    def block(i: int, d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}

    return named(
        ("message_start", start),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        ),
        ("ping", {"type": "ping"}),
        block(0, {"type": "thinking_delta", "thinking": "Weather"}),
        block(0, {"type": "thinking_delta", "thinking": " needs a tool."}),
        block(0, {"type": "signature_delta", "signature": "EqQB"}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        block(1, {"type": "text_delta", "text": "Let me"}),
        block(1, {"type": "text_delta", "text": " check."}),
        block(2, {"type": "input_json_delta", "partial_json": '{"city": '}),
        block(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 89}},
        ),
        ("message_stop", {"type": "message_stop"}),
    )


def test_anthropic_stream_merges_usage_and_reads_every_kind() -> None:
    r = read("anthropic", anthropic_stream())
    assert r.finish(0) is None and r.bad == 0
    assert (r.text(), r.reasoning()) == ('Let me check.{"city": "Paris"}', "Weather needs a tool.")
    assert (r.t_first, r.t_answer) == (4 * MS, 8 * MS)
    assert list(r.gaps) == [1000, 3000, 1000, 1000, 1000]
    assert r.tokens()[:3] == (
        89,
        125,
        True,
    )  # input from message_start (cache reads in), output from message_delta
    assert r.reasoning_tokens() == estimate_tokens(
        "Weather needs a tool."
    )  # (no count of its own in the usage)


def test_anthropic_ends_cut_and_error() -> None:
    chunks = anthropic_stream()
    assert read("anthropic", chunks[:-1]).finish(0) == "stream_broken"
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert read("anthropic", [*chunks[:8], *named(("error", error))]).finish(0) == "stream_error"


def test_anthropic_answer_read_whole() -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "x"},
            {"type": "redacted_thinking", "data": "abc"},
            {"type": "text", "text": "Sure: "},
            {"type": "tool_use", "id": "t", "name": "get", "input": {"q": 1}},
        ],
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "output_tokens": 30},
    }
    r = read("anthropic", [orjson.dumps(body)], stream=False)
    assert (r.finish(0), r.text(), r.reasoning(), r.tokens()[:3]) == (
        None,
        'Sure: {"q":1}',
        "Hmm.",
        (30, 15, True),
    )
    assert read("anthropic", [b'{"content": "x"}'], stream=False).finish(0) == "bad_response"


def test_anthropic_body_and_headers() -> None:
    msgs = (("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"))
    body = request_body(LlmSpec(api="anthropic", model="claude", temperature=0.2), Prompt(messages=msgs))
    assert body == {
        "model": "claude",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
        "max_tokens": 1024,  # (the API requires one)
        "stream": True,
        "temperature": 0.2,
    }
    assert request_body(LlmSpec(api="anthropic", max_tokens=50), Prompt("x"))["max_tokens"] == 50
    assert request_body(LlmSpec(api="anthropic", max_tokens=50), Prompt("x", max_tokens=8))["max_tokens"] == 8
    assert "system" not in request_body(LlmSpec(api="anthropic"), Prompt("x"))
    assert APIS["anthropic"].auth("sk-ant-1") == [
        ("x-api-key", "sk-ant-1"),
        ("anthropic-version", "2023-06-01"),
    ]
    assert APIS["anthropic"].history_field == "messages"


# Recorded and reported


def recorded(readers: list[AnswerReader]) -> tuple[Recorder, dict[str, Any]]:
    rec = Recorder(0, llm=True, table=TABLE)
    for r in readers:
        rec.answer(200, 0, 0, MS, 20 * MS, 10, r, False)
    agg = Aggregate()
    agg.add(rec.snapshot(0, 0, 1_000_000_000, 0))
    return rec, agg.llm_summary(1.0, False)


def test_ttfat_and_reasoning_are_recorded_and_summarised() -> None:
    thinking = read("anthropic", anthropic_stream())  # first token 4 ms, first answer token 8 ms
    plain = read("chat", events(delta(content="hi"), "[DONE]"))  # both 1 ms
    only_thought = read("chat", events(delta(reasoning_content="hmm"), "[DONE]"))  # no answer token
    _, llm = recorded([thinking, plain, only_thought])
    close = pytest.approx  # (HDR's buckets: 3 significant figures)
    assert (llm["ttft_ms"]["min"], llm["ttft_ms"]["max"]) == (close(1.0, rel=1e-3), close(4.0, rel=1e-3))
    assert (llm["ttfat_ms"]["min"], llm["ttfat_ms"]["max"]) == (close(1.0, rel=1e-3), close(8.0, rel=1e-3))
    assert llm["streamed"] == 3
    assert llm["reasoning_answers"] == 2
    assert llm["reasoning_tokens"] == estimate_tokens("Weather needs a tool.") + estimate_tokens("hmm")
    assert llm["output_tokens"] == 89 + estimate_tokens("hi") + estimate_tokens("hmm")
    _, none = recorded([])
    assert (
        none["ttfat_ms"]["p50"] is None and none["reasoning_tokens"] == 0 and none["reasoning_answers"] == 0
    )


def test_unstreamed_answers_add_reasoning_but_no_ttfat() -> None:
    body = {"choices": [{"message": {"content": "x", "reasoning_content": "y"}}]}
    _, llm = recorded([read("chat", [orjson.dumps(body)], stream=False)])
    assert (llm["unstreamed"], llm["reasoning_answers"], llm["ttfat_ms"]["p50"]) == (1, 1, None)


def result_doc(readers: list[AnswerReader]) -> dict[str, Any]:
    rec = Recorder(0, llm=True, table=TABLE)
    for r in readers:
        rec.answer(200, 0, 0, MS, 20 * MS, 10, r, False)
    agg = Aggregate()
    agg.add(rec.snapshot(0, 0, 1_000_000_000, 0))
    plan = Plan(RequestSpec("http://127.0.0.1:1/v1/chat/completions", "POST"), llm=LlmSpec())
    meta = plan_meta(plan, 0.0, 0.0, {0: 10}, ["duration"])
    meta["model"], meta["rate"], meta["arrival"] = "closed", 0.0, "constant"
    return build_result(meta, agg, {}, 1.0, Outline(llm=True), [], {}, Verdict(True, False, {}, []))


@pytest.mark.parametrize("reasoned", [True, False])
def test_console_and_html_show_ttfat_and_reasoning_only_when_an_answer_reasoned(reasoned: bool) -> None:
    answer = (
        read("anthropic", anthropic_stream())
        if reasoned
        else read("chat", events(delta(content="a"), "[DONE]"))
    )
    doc = result_doc([answer])
    console = Console(record=True, width=160)
    print_summary(doc, console)
    text = console.export_text()
    rows = [line.split()[0] for line in text.splitlines() if line.strip()]
    assert ("ttfat" in rows) is reasoned
    assert ("reasoning:" in rows) is reasoned
    if reasoned:
        assert f"reasoning: {estimate_tokens('Weather needs a tool.')} tokens in 1 answer" in text
    times = [row[0] for row in times_table(doc["summary"], False)["rows"]]
    figures = [row[0] for row in llm_table(doc["summary"]["llm"])["rows"]]
    assert ("ttfat" in times) is reasoned
    assert ("answers with a reasoning phase" in figures) is reasoned
