"""The mock LLM's phased answers (reasoning, tool calls), its Responses and Anthropic Messages shapes, the
answer-length rules (ignore_eos, min_tokens) and its log of received bodies, read by the test's own reader."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from squall.targets.mock_apis import THOUGHTS
from squall.targets.mock_events import WORDS
from squall.targets.mock_llm import MockThread
from squall.targets.mock_options import MockOptions

TTFT, ITL, TOKENS = 0.005, 0.001, 6
CHAT, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/responses", "/v1/messages"
HISTORY = [{"role": "user", "content": "say six words"}]  # three words
CHAT_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
FLAT_TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]  # Responses
ANTHROPIC_TOOLS = [{"name": "lookup", "input_schema": {"type": "object"}}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockThread]:
    with MockThread(ttft_s=TTFT, itl_s=ITL, tokens=TOKENS) as srv:
        yield srv


def post(
    srv: MockThread, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        try:
            return resp.status, resp.read()
        except http.client.IncompleteRead as cut:  # a dropped stream: what came before the close
            return resp.status, cut.partial
    finally:
        conn.close()


def sse(raw: bytes) -> list[tuple[str | None, Any]]:
    """Each event as (its `event:` name or None, its data: JSON decoded, or the raw string)."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", line
                data.append(value)
        text = "\n".join(data)
        out.append((name, text if text == "[DONE]" else json.loads(text)))
    return out


def streamed(
    srv: MockThread, path: str, body: dict[str, Any], **headers: str
) -> list[tuple[str | None, Any]]:
    status, raw = post(srv, path, {**body, "stream": True}, headers)
    assert status == 200, raw
    return sse(raw)


def whole(srv: MockThread, path: str, body: dict[str, Any], **headers: str) -> Any:
    status, raw = post(srv, path, {**body, "stream": False}, headers)
    assert status == 200, raw
    return json.loads(raw)


def answer(n: int) -> str:
    return "".join(WORDS[k % len(WORDS)] for k in range(n))


def thought(n: int) -> str:
    return "".join(THOUGHTS[k % len(THOUGHTS)] for k in range(n))


def chat_deltas(events: list[tuple[str | None, Any]], field: str) -> list[Any]:
    out = []
    for _, e in events:
        if e != "[DONE]" and e["choices"] and field in e["choices"][0]["delta"]:
            out.append(e["choices"][0]["delta"][field])
    return out


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": HISTORY, "stream_options": {"include_usage": True}, **extra}


# OpenAI chat


def test_chat_reasoning_streams_before_the_answer_and_usage_counts_it() -> None:
    with MockThread(ttft_s=TTFT, itl_s=ITL, tokens=TOKENS, reasoning_tokens=4) as srv:
        events = streamed(srv, CHAT, chat())
        reasoning, content = chat_deltas(events, "reasoning_content"), chat_deltas(events, "content")
        assert reasoning == list(THOUGHTS[:4])
        assert content == ["", *WORDS[:TOKENS]]  # the role event's "" first
        last_reasoning = max(i for i, (_, e) in enumerate(events) if "reasoning_content" in str(e))
        first_answer = min(i for i, (_, e) in enumerate(events) if '"content": " ' in json.dumps(e))
        assert last_reasoning < first_answer
        assert events[-2][1]["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 4 + TOKENS,
            "total_tokens": 3 + 4 + TOKENS,
            "completion_tokens_details": {"reasoning_tokens": 4},
        }
        assert events[-1] == (None, "[DONE]")
        body = whole(srv, CHAT, chat())
        message = body["choices"][0]["message"]
        assert (message["reasoning_content"], message["content"]) == (thought(4), answer(TOKENS))
        assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"reasoning_effort": "low"}, TOKENS),  # asked for: as long as --tokens
        ({"reasoning_effort": "none"}, 0),
        ({"mock_reasoning_tokens": 2}, 2),
        ({"reasoning_effort": "high", "mock_reasoning_tokens": 0}, 0),
        ({}, 0),
    ],
)
def test_chat_reasoning_per_request(mock: MockThread, extra: dict[str, Any], want: int) -> None:
    events = streamed(mock, CHAT, chat(**extra))
    assert chat_deltas(events, "reasoning_content") == list(THOUGHTS[:want])
    usage = events[-2][1]["usage"]
    assert usage["completion_tokens"] == want + TOKENS
    assert usage.get("completion_tokens_details", {"reasoning_tokens": 0}) == {"reasoning_tokens": want}


def test_chat_tool_call_arguments_stream_in_pieces_that_join_into_json(mock: MockThread) -> None:
    events = streamed(mock, CHAT, chat(tools=CHAT_TOOLS, max_tokens=5))
    calls = chat_deltas(events, "tool_calls")
    head, pieces = calls[0][0], [c[0]["function"]["arguments"] for c in calls[1:]]
    assert (head["id"], head["type"], head["function"]) == (
        "call_squall_mock",
        "function",
        {"name": "lookup", "arguments": ""},
    )
    assert len(pieces) == 5 and all(p for p in pieces)
    assert json.loads("".join(pieces)) == {"input": answer(5)}
    assert chat_deltas(events, "content") == [""]  # no answer text besides the role event's
    finish = [e["choices"][0]["finish_reason"] for _, e in events[:-1] if e["choices"]]
    assert finish[-1] == "tool_calls" and events[-2][1]["usage"]["completion_tokens"] == 5
    body = whole(mock, CHAT, chat(tools=CHAT_TOOLS, max_tokens=5))
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        "lookup",
        {"input": answer(5)},
    )
    assert body["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("n", [1, 2, 3, 40])
def test_tool_calls_option_calls_mock_tool_with_valid_json_at_any_length(n: int) -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=n, tool_calls=True) as srv:
        calls = chat_deltas(streamed(srv, CHAT, chat()), "tool_calls")
        assert calls[0][0]["function"]["name"] == "mock_tool"
        pieces = [c[0]["function"]["arguments"] for c in calls[1:]]
        assert len(pieces) == n and json.loads("".join(pieces)) == {"input": answer(n)}


def test_tool_choice_none_answers_with_text(mock: MockThread) -> None:
    events = streamed(mock, CHAT, chat(tools=CHAT_TOOLS, tool_choice="none"))
    assert chat_deltas(events, "tool_calls") == [] and chat_deltas(events, "content")[1:] == list(
        WORDS[:TOKENS]
    )


# OpenAI Responses


def test_responses_stream_events_in_order_with_sequence_numbers(mock: MockThread) -> None:
    events = streamed(mock, RESPONSES, {"model": "m", "input": "say six words", "instructions": "be brief"})
    names = [name for name, _ in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * TOKENS,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["type"] for _, e in events] == names
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    deltas = [e["delta"] for name, e in events if name == "response.output_text.delta"]
    assert deltas == list(WORDS[:TOKENS])
    done = events[-1][1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == answer(TOKENS)
    assert done["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5 + TOKENS,
    }
    body = whole(mock, RESPONSES, {"model": "m", "input": HISTORY})
    assert (body["object"], body["output"][0]["type"]) == ("response", "message")
    assert body["output"][0]["content"][0]["text"] == answer(TOKENS)
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (3, TOKENS)


def test_responses_reasoning_then_tool_call(mock: MockThread) -> None:
    body = {"model": "m", "input": HISTORY, "reasoning": {"effort": "low"}, "mock_reasoning_tokens": 3}
    events = streamed(mock, RESPONSES, {**body, "tools": FLAT_TOOLS, "max_output_tokens": 4})
    reasoning = [e["delta"] for n, e in events if n == "response.reasoning_text.delta"]
    args = [e["delta"] for n, e in events if n == "response.function_call_arguments.delta"]
    assert reasoning == list(THOUGHTS[:3])
    assert len(args) == 4 and json.loads("".join(args)) == {"input": answer(4)}
    names = [n for n, _ in events]
    assert names.index("response.reasoning_text.done") < names.index("response.function_call_arguments.delta")
    assert "response.output_text.delta" not in names
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    usage = events[-1][1]["response"]["usage"]
    assert (usage["output_tokens"], usage["output_tokens_details"]) == (7, {"reasoning_tokens": 3})
    got = whole(mock, RESPONSES, {**body, "tools": FLAT_TOOLS, "max_output_tokens": 4})
    assert [o["type"] for o in got["output"]] == ["reasoning", "function_call"]
    assert got["output"][0]["content"][0]["text"] == thought(3)
    assert (got["output"][1]["name"], json.loads(got["output"][1]["arguments"])) == (
        "lookup",
        {"input": answer(4)},
    )
    assert got["usage"]["output_tokens_details"] == {"reasoning_tokens": 3}


# Anthropic Messages


def anthropic(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 100, "system": "be brief", "messages": HISTORY, **extra}


def test_anthropic_stream_with_thinking(mock: MockThread) -> None:
    events = streamed(
        mock, MESSAGES, anthropic(thinking={"type": "enabled", "budget_tokens": 1024}), **{"x-api-key": "k"}
    )
    assert [n for n, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * (TOKENS + 1),  # thinking, then its signature
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * TOKENS,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e["type"] == n for n, e in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 5
    blocks = [(e["index"], e["content_block"]["type"]) for n, e in events if n == "content_block_start"]
    assert blocks == [(0, "thinking"), (1, "text")]
    deltas = [(e["index"], e["delta"]) for n, e in events if n == "content_block_delta"]
    assert [d["thinking"] for i, d in deltas if d["type"] == "thinking_delta"] == list(THOUGHTS[:TOKENS])
    assert [d["type"] for _, d in deltas].count("signature_delta") == 1
    assert [(i, d["text"]) for i, d in deltas if d["type"] == "text_delta"] == [
        (1, w) for w in WORDS[:TOKENS]
    ]
    assert events[-2][1]["usage"] == {"output_tokens": 2 * TOKENS}  # thinking counts as output
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_anthropic_tool_use_streams_input_json_and_whole_answer(mock: MockThread) -> None:
    events = streamed(mock, MESSAGES, anthropic(tools=ANTHROPIC_TOOLS, max_tokens=3))
    start = next(e["content_block"] for n, e in events if n == "content_block_start")
    assert (start["type"], start["name"], start["input"]) == ("tool_use", "lookup", {})
    parts = [e["delta"]["partial_json"] for n, e in events if n == "content_block_delta"]
    assert len(parts) == 3 and json.loads("".join(parts)) == {"input": answer(3)}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    body = whole(mock, MESSAGES, anthropic(tools=ANTHROPIC_TOOLS, max_tokens=3))
    assert body["content"] == [
        {"type": "tool_use", "id": "toolu_squall_mock", "name": "lookup", "input": {"input": answer(3)}}
    ]
    assert (body["stop_reason"], body["usage"]) == ("tool_use", {"input_tokens": 5, "output_tokens": 3})


def test_anthropic_whole_answer_with_thinking(mock: MockThread) -> None:
    body = whole(mock, MESSAGES, anthropic(mock_reasoning_tokens=2, max_tokens=4))
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert (body["content"][0]["thinking"], body["content"][1]["text"]) == (thought(2), answer(4))
    assert (body["type"], body["role"], body["usage"]["output_tokens"]) == ("message", "assistant", 6)


def test_anthropic_requires_max_tokens_and_answers_its_error_shape(mock: MockThread) -> None:
    body = anthropic()
    del body["max_tokens"]
    status, raw = post(mock, MESSAGES, body, {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    got = json.loads(raw)
    assert (status, got["type"], got["error"]["type"]) == (400, "error", "invalid_request_error")
    assert "max_tokens" in got["error"]["message"]


def test_anthropic_faults_use_its_error_shape() -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=2, fail_429=1.0) as srv:
        status, raw = post(srv, MESSAGES, anthropic())
        assert (status, json.loads(raw)["error"]["type"]) == (429, "rate_limit_error")


# answer lengths


@pytest.mark.parametrize(
    ("path", "extra", "want"),
    [
        (CHAT, {"max_tokens": 20, "ignore_eos": True}, 20),
        (CHAT, {"max_tokens": 20, "min_tokens": 9}, 9),
        (CHAT, {"min_tokens": 11}, 11),
        (CHAT, {"max_tokens": 20, "min_tokens": 2}, TOKENS),
        (CHAT, {"max_tokens": 3, "min_tokens": 3}, 3),
        (RESPONSES, {"max_output_tokens": 15, "ignore_eos": True}, 15),
        (RESPONSES, {"min_tokens": 8}, 8),
        (MESSAGES, {"max_tokens": 12, "ignore_eos": True}, 12),
        (MESSAGES, {"max_tokens": 12, "min_tokens": 10}, 10),
    ],
)
def test_ignore_eos_and_min_tokens_set_the_length(
    mock: MockThread, path: str, extra: dict[str, Any], want: int
) -> None:
    base = {CHAT: chat(), RESPONSES: {"model": "m", "input": "hi"}, MESSAGES: anthropic()}[path]
    body = whole(mock, path, {**base, **extra})
    got = {
        CHAT: lambda b: b["usage"]["completion_tokens"],
        RESPONSES: lambda b: b["usage"]["output_tokens"],
        MESSAGES: lambda b: b["usage"]["output_tokens"],
    }[path](body)
    assert got == want
    events = streamed(mock, path, {**base, **extra})
    if path == CHAT:
        assert chat_deltas(events, "content")[1:] == [WORDS[k % len(WORDS)] for k in range(want)]
    elif path == RESPONSES:
        assert sum(n == "response.output_text.delta" for n, _ in events) == want
    else:
        assert sum(n == "content_block_delta" for n, _ in events) == want


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        (CHAT, {"messages": HISTORY, "max_tokens": 4, "min_tokens": 5}, "min_tokens (5) must not be greater"),
        (CHAT, {"messages": HISTORY, "min_tokens": -1}, "min_tokens must be an integer of 0 or more"),
        (CHAT, {"messages": HISTORY, "mock_reasoning_tokens": "x"}, "mock_reasoning_tokens must be"),
        (RESPONSES, {"input": 3}, "input must be a list"),
        (RESPONSES, {"input": "hi", "max_output_tokens": 0}, "max_output_tokens must be a positive integer"),
        (MESSAGES, {"messages": "hi", "max_tokens": 5}, "messages must be a list"),
        (CHAT, {"messages": HISTORY, "tools": "lookup"}, "tools must be a list"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    mock: MockThread, path: str, body: dict[str, Any], says: str
) -> None:
    status, raw = post(mock, path, body)
    got = json.loads(raw)["error"]
    assert status == 400 and says in got["message"], got


# timing


def test_reasoning_and_tool_call_tokens_keep_the_itl() -> None:
    itl = 0.004
    with MockThread(
        ttft_s=0.01, itl_s=itl, tokens=5, reasoning_tokens=5, tool_calls=True, record_sends=True
    ) as srv:
        events = streamed(srv, CHAT, chat())
        assert (
            len(chat_deltas(events, "reasoning_content")) == 5 and len(chat_deltas(events, "tool_calls")) == 6
        )
        (arrival,), (sends,) = srv.state.arrivals, srv.state.sends
        assert len(sends) == 10 and srv.state.events_sent == 10
        assert sends[0] - arrival >= 0.01e9
        assert min(b - a for a, b in itertools.pairwise(sends)) >= (itl - 0.001) * 1e9
        assert all(t - arrival >= (0.01 + k * itl) * 1e9 for k, t in enumerate(sends))


def test_drop_mid_stream_counts_reasoning_tokens_too() -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=4, reasoning_tokens=4, drop_mid_stream=1.0) as srv:
        status, raw = post(srv, RESPONSES, {"input": "hi", "stream": True})
    assert status == 200 and raw.endswith(b"\n\n")
    names = [n for n, _ in sse(raw)]
    assert names.count("response.reasoning_text.delta") == 4 and "response.output_text.delta" not in names
    assert "response.completed" not in names


# what the mock received


def test_received_keeps_the_last_bodies_in_order_and_serves_them() -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=2, keep_received=2) as srv:
        bodies = [
            {"model": "m", "messages": [{"role": "user", "content": "one"}]},
            {"model": "m", "input": "two", "stream": True},
            {"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "three"}]},
        ]
        for path, body in zip((CHAT, RESPONSES, MESSAGES), bodies, strict=True):
            assert post(srv, path, body)[0] == 200
        assert post(srv, MESSAGES, {"messages": []})[0] == 400  # not received: it asks for nothing valid
        assert srv.received == bodies[1:]
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            conn.request("GET", "/v1/received")
            assert json.loads(conn.getresponse().read()) == bodies[1:]
            conn.request("DELETE", "/v1/received")
            assert json.loads(conn.getresponse().read()) == []
        finally:
            conn.close()
        assert srv.received == []


def test_received_holds_each_turns_history_exactly_as_sent(mock: MockThread) -> None:
    before = len(mock.received)
    history: list[dict[str, str]] = []
    for turn in range(3):
        history.append({"role": "user", "content": f"turn {turn}"})
        text = "".join(chat_deltas(streamed(mock, CHAT, {"messages": list(history)}), "content"))
        history.append({"role": "assistant", "content": text})
    got = mock.received[before:]
    assert [len(b["messages"]) for b in got] == [1, 3, 5]
    assert got[2]["messages"][1] == {"role": "assistant", "content": answer(TOKENS)}


def test_keep_received_zero_keeps_nothing() -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=1, keep_received=0) as srv:
        assert post(srv, CHAT, chat())[0] == 200
        assert srv.received == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("reasoning_tokens", -1, "--reasoning-tokens must be an integer from 0"),
        ("reasoning_tokens", 1.5, "--reasoning-tokens must be an integer from 0"),
        ("keep_received", -1, "--keep-received must be an integer from 0"),
    ],
)
def test_new_options_are_validated(field: str, value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        MockOptions(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("path", [RESPONSES, MESSAGES])
def test_empty_answers_still_close_every_block(path: str) -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=4, reasoning_tokens=3, empty=1.0) as srv:
        events = streamed(srv, path, {"input": "hi", "messages": HISTORY, "max_tokens": 9})
    names = [n for n, _ in events]
    if path == RESPONSES:
        assert names[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert "response.output_text.delta" not in names and "response.reasoning_text.delta" not in names
        assert events[-1][1]["response"]["usage"]["output_tokens"] == 0
    else:
        assert names == [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert events[-2][1]["usage"] == {"output_tokens": 0}


@pytest.mark.parametrize("path", [RESPONSES, MESSAGES])
def test_bad_chunk_is_one_broken_event_in_the_new_shapes(path: str) -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=6, bad_chunk=1.0) as srv:
        status, raw = post(srv, path, {"input": "hi", "messages": HISTORY, "max_tokens": 9, "stream": True})
    assert status == 200 and raw.count(b"data: {not json\n\n") == 1
    events = sse(raw.replace(b"data: {not json\n\n", b""))
    assert events[-1][0] in ("response.completed", "message_stop")


def test_http10_stream_of_a_new_shape_is_raw_sse_ended_by_close(mock: MockThread) -> None:
    body = json.dumps(anthropic(max_tokens=2, stream=True)).encode()
    head = f"POST {MESSAGES} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as sock:
        sock.sendall(head + body)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    top, _, rest = raw.partition(b"\r\n\r\n")
    assert top.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding" not in top
    events = sse(rest)
    assert [n for n, _ in events][-2:] == ["message_delta", "message_stop"]
    assert [e["delta"]["text"] for n, e in events if n == "content_block_delta"] == list(WORDS[:2])
