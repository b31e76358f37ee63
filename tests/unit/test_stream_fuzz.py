"""The answer reader, fuzzed: whatever bytes a server sends, split wherever, reading never raises, and a
valid stream reads the same however its bytes arrive (CR LF, LF or CR, comments, heartbeats, cut UTF-8)."""

import json
import time
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from squall.engine.llm.apis import APIS, BadEvent, dig, parse_path
from squall.engine.llm.record import retry_after_ms
from squall.engine.llm.stream import EVENT_MAX, TOKENS_MAX, AnswerReader, Reading, token_count
from squall.engine.llm.tokens import estimate_tokens
from squall.engine.recorder import Recorder
from squall.hist import index_table
from squall.wire import encode

MS = 1_000_000
SSE_PATH = "out.0.t"  # where the `sse` shape's events carry their text in these tests
FUZZ = settings(max_examples=150, deadline=None, database=None)
TABLE = index_table()  # (4 MB: built once for every Recorder here)

# JSON of every type, with integers past 64 bits and floats past a double (json.dumps writes them; orjson
# refuses some: those events are unparseable, which is a case too).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
endings = st.sampled_from([b"\n", b"\r\n", b"\r"])


def reading(api: str, stream: bool = True) -> Reading:
    shape = APIS[api]
    marker = "" if api == "dify" else None
    return Reading(shape, stream, estimate_tokens, parse_path(SSE_PATH if api == "sse" else ""), marker)


def event(api: str, text: str) -> dict[str, Any]:
    """A content event of the API shape."""
    if api == "chat":
        return {"choices": [{"index": 0, "delta": {"content": text}}]}
    if api == "completions":
        return {"choices": [{"text": text}]}
    if api == "responses":
        return {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": text}
    if api == "anthropic":
        return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    if api == "dify":
        return {"event": "message", "answer": text}
    return {"out": [{"t": text}]}


REASONING_APIS = ["chat", "completions", "responses", "anthropic"]


def thought(api: str, text: str) -> dict[str, Any]:
    """A reasoning event of the API shape (those that have one)."""
    if api == "chat":
        return {"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}
    if api == "completions":
        return {
            "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": None, "reasoning": text}]
        }
    if api == "responses":
        return {"type": "response.reasoning_text.delta", "output_index": 0, "content_index": 0, "delta": text}
    return {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": text}}


def last_events(api: str, usage: dict[str, Any]) -> list[bytes]:
    """The events that end a stream of the API shape, with its usage where the shape has one."""
    if api == "dify":
        return [orjson.dumps({"event": "message_end", "metadata": {"usage": usage}})]
    if api == "sse":
        return [b"[DONE]"]
    if api == "responses":
        given = {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}
        return [
            orjson.dumps({"type": "response.completed", "response": {"status": "completed", "usage": given}})
        ]
    if api == "anthropic":  # (usage in two parts, as the API sends it: message_start's, message_delta's)
        start = {"type": "message_start", "message": {"usage": {"input_tokens": usage.get("prompt_tokens")}}}
        out = {"type": "message_delta", "usage": {"output_tokens": usage.get("completion_tokens")}}
        return [orjson.dumps(start), orjson.dumps(out), orjson.dumps({"type": "message_stop"})]
    return [orjson.dumps({"choices": [], "usage": usage}), b"[DONE]"]


def body(api: str, text: str, usage: dict[str, Any]) -> dict[str, Any]:
    """A whole non-streamed answer of the API shape."""
    if api == "chat":
        return {"choices": [{"message": {"content": text}}], "usage": usage}
    if api == "completions":
        return {"choices": [{"text": text}], "usage": usage}
    if api == "responses":
        given = {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}
        message = {"type": "message", "content": [{"type": "output_text", "text": text}]}
        return {"status": "completed", "output": [message], "usage": given}
    if api == "anthropic":
        given = {"input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens")}
        return {"type": "message", "content": [{"type": "text", "text": text}], "usage": given}
    if api == "dify":
        return {"answer": text, "metadata": {"usage": usage}}
    return {"out": [{"t": text}]}


def sse(payloads: list[bytes], ends: list[bytes], extras: list[int]) -> bytes:
    """SSE bytes: each payload an event whose lines end in its own ending, some after a comment or an
    empty heartbeat event. (One ending per event: a CR line then an LF blank line is a CR LF, not two.)"""
    out = b""
    for i, payload in enumerate(payloads):
        nl = ends[i % len(ends)]
        extra = extras[i % len(extras)]
        if extra == 1:
            out += b": keep-alive" + nl + nl
        elif extra == 2:
            out += b"event: ping" + nl + b"data:" + nl + nl  # an empty data line: a heartbeat, no event
        elif extra == 3:
            out += b"id: 7" + nl + b"retry: 100" + nl
        out += b"data: " + payload + nl + nl
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read_all(how: Reading, pieces: list[bytes]) -> AnswerReader:
    r = AnswerReader(how, input_tokens=4)
    for i, piece in enumerate(pieces):
        r.feed(piece, (i + 1) * MS)
    r.finish((len(pieces) + 1) * MS)
    return r


def outcome(r: AnswerReader) -> tuple[Any, ...]:
    verdict = r.finish(0)
    return verdict, r.text(), r.tokens(), r.bad, r.bad_usage, len(r.pieces), r.done, r.reasoning_tokens()


@FUZZ
@given(
    api=st.sampled_from(list(APIS)),
    texts=st.lists(st.text(max_size=12), min_size=1, max_size=8),
    out_tokens=st.integers(0, 10_000),
    ends=st.lists(endings, min_size=1, max_size=4),
    extras=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_a_valid_stream_reads_the_same_however_it_is_split(
    api: str, texts: list[str], out_tokens: int, ends: list[bytes], extras: list[int], cuts: list[int]
) -> None:
    usage = {"completion_tokens": out_tokens, "prompt_tokens": 9}
    payloads = [orjson.dumps(event(api, t)) for t in texts] + last_events(api, usage)
    data = sse(payloads, ends, extras)
    whole = read_all(reading(api), [data])
    cut = read_all(reading(api), split(data, cuts))
    want = "".join(texts)
    assert whole.text() == want
    assert outcome(cut) == outcome(whole)
    assert whole.bad == 0 and whole.bad_usage == 0
    assert whole.finish(0) == (None if want else "empty_response")
    if api == "sse":
        assert whole.tokens() == (estimate_tokens(want), 4, False, 0)
    else:
        assert whole.tokens() == (out_tokens, 9, True, estimate_tokens(want) - out_tokens)


@FUZZ
@given(api=st.sampled_from(list(APIS)), text=st.text(max_size=40), cuts=st.lists(st.integers(0, 500)))
def test_a_whole_answer_reads_the_same_however_it_is_split(api: str, text: str, cuts: list[int]) -> None:
    data = orjson.dumps(body(api, text, {"completion_tokens": 3, "prompt_tokens": 2}))
    whole = read_all(reading(api, stream=False), [data])
    cut = read_all(reading(api, stream=False), split(data, cuts))
    assert outcome(cut) == outcome(whole)
    assert whole.text() == text
    assert whole.finish(0) == (None if text else "empty_response")


@FUZZ
@given(
    api=st.sampled_from(REASONING_APIS),
    steps=st.lists(st.tuples(st.booleans(), st.text(min_size=1, max_size=8)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_reasoning_and_answer_tokens_read_the_same_however_split(
    api: str, steps: list[tuple[bool, str]], cuts: list[int]
) -> None:
    # Each step one event, reasoning (True) or answer text; each event's bytes fed apart at its own time.
    payloads = [orjson.dumps(thought(api, t) if is_thought else event(api, t)) for is_thought, t in steps]
    payloads += last_events(api, {"completion_tokens": 50, "prompt_tokens": 9})
    whole = AnswerReader(reading(api), input_tokens=4)
    for i, payload in enumerate(payloads):
        whole.feed(sse([payload], [b"\n"], [0]), (i + 1) * MS)
    cut = read_all(reading(api), split(sse(payloads, [b"\n"], [0]), cuts))
    answer = "".join(t for is_thought, t in steps if not is_thought)
    reasoning = "".join(t for is_thought, t in steps if is_thought)
    assert (whole.finish(0), whole.text(), whole.reasoning(), whole.bad) == (None, answer, reasoning, 0)
    assert outcome(cut)[1:] == outcome(whole)[1:]
    assert whole.t_first == MS  # the first token of any kind
    first_answer = next((i for i, (is_thought, _) in enumerate(steps) if not is_thought), None)
    assert whole.t_answer == (0 if first_answer is None else (first_answer + 1) * MS)
    assert list(whole.gaps) == [1000] * (len(steps) - 1)  # every token event, of either kind
    assert whole.reasoning_tokens() == estimate_tokens(reasoning)  # (no reasoning_tokens in this usage)
    assert whole.tokens()[:3] == (50, 9, True)


def paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value: the value itself, and each member and element, all the way down."""
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*at, i))
    return out


def put(obj: Any, at: tuple[Any, ...], value: Any) -> Any:
    """A copy of `obj` with `value` at place `at`."""
    if not at:
        return value
    copy = json.loads(json.dumps(obj))
    holder = copy
    for part in at[:-1]:
        holder = holder[part]
    holder[at[-1]] = value
    return copy


def check_sane(r: AnswerReader) -> None:
    kind = r.finish(10 * MS)
    assert kind is None or isinstance(kind, str)
    out, inp, _, _ = r.tokens()
    assert 0 <= out <= TOKENS_MAX and 0 <= inp <= TOKENS_MAX
    assert all(isinstance(p, str) for p in r.pieces)
    assert isinstance(r.text(), str)


@FUZZ
@given(
    api=st.sampled_from(list(APIS)),
    which=st.integers(0, 1000),
    where=st.integers(0, 1000),
    value=json_values,
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_json_of_any_type_at_any_place_never_raises(
    api: str, which: int, where: int, value: Any, cuts: list[int]
) -> None:
    usage = {"completion_tokens": 5, "prompt_tokens": 3}
    events: list[Any] = [event(api, "a"), event(api, "b")]
    events += [orjson.loads(e) for e in last_events(api, usage) if e != b"[DONE]"]
    n = which % len(events)
    places = paths(events[n])
    events[n] = put(events[n], places[where % len(places)], value)
    payloads = [json.dumps(e).encode() for e in events] + [b"[DONE]"]
    r = read_all(reading(api), split(sse(payloads, [b"\n"], [0]), cuts))
    check_sane(r)
    text = r.text()  # only the changed event may differ (a string put in place of "a" or "b" is its text)
    assert text in ("ab", "a", "b", "") or text.startswith("a") or text.endswith("b")
    whole = body(api, "a", usage)
    places = paths(whole)
    check_sane(
        read_all(
            reading(api, stream=False), [json.dumps(put(whole, places[where % len(places)], value)).encode()]
        )
    )


@FUZZ
@given(
    api=st.sampled_from(list(APIS)), stream=st.booleans(), data=st.lists(st.binary(max_size=64), max_size=8)
)
def test_random_bytes_never_raise(api: str, stream: bool, data: list[bytes]) -> None:
    check_sane(read_all(reading(api, stream), data))


@FUZZ
@given(
    api=st.sampled_from(list(APIS)),
    parts=st.lists(
        st.sampled_from(
            [b"data:", b"data: ", b"\r", b"\n", b"\r\n", b": c", b"[DONE]", b"{", b"}", b'"', b"\xff"]
        )
        | st.binary(max_size=4),
        max_size=30,
    ),
)
def test_adversarial_framing_never_raises(api: str, parts: list[bytes]) -> None:
    check_sane(read_all(reading(api), parts))


@FUZZ
@given(value=st.binary(max_size=40) | st.text(max_size=40).map(lambda s: s.encode()))
def test_retry_after_is_always_a_bounded_wait(value: bytes) -> None:
    for v in (value, value.decode("utf-8", "surrogateescape")):
        ms, clamped = retry_after_ms(v)
        assert ms is None or 0 <= ms <= 3_600_000
        assert isinstance(clamped, bool)


@FUZZ
@given(value=json_values)
def test_token_counts_are_bounded(value: Any) -> None:
    n, bad = token_count(value)
    assert n is None or 0 <= n <= TOKENS_MAX
    assert bad == (value is not None and not (type(value) is int and 0 <= value <= TOKENS_MAX))


@FUZZ
@given(value=json_values, path=st.lists(st.text(max_size=3) | st.integers(-2, 3), max_size=4))
def test_dig_never_raises(value: Any, path: list[Any]) -> None:
    dig(value, tuple(path))


def test_the_known_odd_answers_are_data() -> None:
    # Each once killed or hung a run, or lost a whole answer as `protocol`.
    chat = reading("chat")
    for odd in (b'{"content": 5}', b'{"content": [1]}', b'{"content": {"a": 1}}'):
        r = read_all(chat, [b'data: {"choices":[{"delta":' + odd + b"}]}\n\ndata: [DONE]\n\n"])
        assert (r.finish(0), r.bad) == ("bad_response", 1)
    for odd in (b'{"choices":[null]}', b'["abc"]', b'{"choices":["abc"]}', b'{"choices":[{"delta":"abc"}]}'):
        r = read_all(
            chat, [b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: ' + odd + b"\n\ndata: [DONE]\n\n"]
        )
        assert (r.finish(0), r.text(), r.bad) == (None, "x", 1)
    huge = b'{"choices":[],"usage":{"completion_tokens":18446744073709551616,"prompt_tokens":-1}}'
    r = read_all(
        chat, [b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: ' + huge + b"\n\ndata: [DONE]\n\n"]
    )
    assert (r.finish(0), r.bad) == (None, 0)
    assert r.bad_usage == 2  # (2^64 comes back from orjson as a float: not a count; -1 is clamped to 0)
    assert r.tokens()[:3] == (estimate_tokens("x"), 0, False)
    big = b'{"choices":[],"usage":{"completion_tokens":4294967296,"prompt_tokens":"7"}}'
    r = read_all(
        chat, [b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: ' + big + b"\n\ndata: [DONE]\n\n"]
    )
    assert (r.bad_usage, r.tokens()[:3]) == (2, (TOKENS_MAX, 4, True))
    r = read_all(
        chat, [b'data: {"choices":[],"usage":"lots"}\n\ndata: {"error":{"message":"overloaded"}}\n\n']
    )
    assert (r.finish(0), r.bad_usage) == ("stream_error", 1)
    assert retry_after_ms(b"1e30") == (3_600_000, True)
    assert retry_after_ms(b"inf") == (3_600_000, True)
    assert retry_after_ms(b"-5") == (0, True)
    assert retry_after_ms(b"nan") == (0, True)
    assert retry_after_ms(b"soon") == (None, True)
    assert retry_after_ms(b"Wed, 21 Oct 2015 07:28:00 GMT") == (None, False)
    assert retry_after_ms(b"120") == (120_000, False)
    assert BadEvent.__mro__[1] is ValueError


@FUZZ
@given(
    api=st.sampled_from(list(APIS)),
    value=json_values,
    status=st.sampled_from([200, 429]),
    retry=st.binary(max_size=12),
)
def test_recording_any_answer_never_raises_and_ships(api: str, value: Any, status: int, retry: bytes) -> None:
    # The whole path a worker takes: the reader, the recorder's counters, and the window on the wire.
    rec = Recorder(0, llm=True, table=TABLE, goodput=(("ttft", 1.0),))
    r = AnswerReader(reading(api), input_tokens=2)
    r.retry_after = retry
    payloads = [json.dumps(event(api, "hi")).encode(), json.dumps({"choices": [], "usage": value}).encode()]
    payloads.append(
        json.dumps({"event": "message_end", "metadata": {"usage": {"completion_tokens": value}}}).encode()
    )
    if api in REASONING_APIS:
        payloads.insert(0, json.dumps(thought(api, "hm")).encode())
    completed = {"type": "response.completed", "response": {"usage": value}}
    started = {"type": "message_start", "message": {"usage": {"input_tokens": value}}}
    delta = {"type": "message_delta", "usage": {"output_tokens": value}}
    detailed = {"choices": [], "usage": {"completion_tokens_details": {"reasoning_tokens": value}}}
    payloads += [
        json.dumps(e).encode() for e in (completed, started, delta, detailed, {"type": "message_stop"})
    ]
    r.feed(sse([*payloads, b"[DONE]"], [b"\r\n"], [1]), 2 * MS)
    rec.answer(status, MS, MS, 2 * MS, 3 * MS, 10, r, False)
    window = rec.snapshot(0, 0, 1_000_000_000, 0)
    encode(window)
    assert all(-(2**63) <= v < 2**63 for v in window.counters.values())  # (msgpack's range)


def test_framing_is_linear_in_the_size_of_an_event() -> None:
    # One 16 MB event in 1 KB reads. Joining on every read (as a growing buffer does) would copy ~128 GB;
    # read linearly it is a few hundred ms. The bound is loose on purpose: a busy machine must not fail it.
    text = "x" * (16 * 1024 * 1024)
    data = b"data: " + orjson.dumps(event("chat", text)) + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    r = AnswerReader(reading("chat"), input_tokens=1)
    t = time.process_time()
    for i in range(0, len(data), 1024):
        r.feed(data[i : i + 1024], MS)
    assert r.finish(2 * MS) is None
    assert time.process_time() - t < 5.0
    assert r.pieces == [text]


def test_utf8_and_line_ends_split_one_byte_at_a_time() -> None:
    data = (
        b"\xef\xbb\xbf: hi\r\n\r\n"
        + b"data: "
        + orjson.dumps(event("chat", "héllo, 世界 🎉"))
        + b"\r\n\r\n"
        + b"data: "
        + orjson.dumps(event("chat", "!"))
        + b"\r\r"
        + b"data: "
        + orjson.dumps(event("chat", "?"))
        + b"\n\n"
        + b"data: [DONE]\r\n\r\n"
    )
    r = read_all(reading("chat"), [data[i : i + 1] for i in range(len(data))])
    assert (r.finish(0), r.text(), r.bad) == (None, "héllo, 世界 🎉!?", 0)
    r = read_all(reading("chat"), [data[:-1]])  # the last line without its end still reads
    assert (r.finish(0), r.text()) == (None, "héllo, 世界 🎉!?")
    r = read_all(reading("chat"), [b"\xef\xbb\xbf" + chat_event("a") + b"data: [DONE]\n\n"])
    assert (r.finish(0), r.text()) == (None, "a")  # a byte order mark before the first event


def chat_event(text: str) -> bytes:
    return b"data: " + orjson.dumps(event("chat", text)) + b"\n\n"


def test_a_line_or_event_larger_than_any_answer_is_dropped_not_held() -> None:
    # A server that sends one endless line, or an event of endless `data:` lines: squall holds at most
    # EVENT_MAX (plus one read) of it, counts it bad, and reads the events after it.
    piece = b"x" * 65536
    for start, filler in ((b"data: ", piece), (b"", b"data: " + piece[:-7] + b"\n")):
        r = AnswerReader(reading("chat"), input_tokens=4)
        r.feed(start, MS)
        most = 0
        for _ in range(EVENT_MAX // len(filler) + 40):
            r.feed(filler, MS)
            most = max(most, r.held_n, r.data_n)
        assert most <= EVENT_MAX + len(filler)
        r.feed(b"\n\ndata: " + orjson.dumps(event("chat", "after")) + b"\n\ndata: [DONE]\n\n", 2 * MS)
        assert r.finish(3 * MS) is None and r.text() == "after" and r.bad >= 1


def test_a_non_streamed_body_larger_than_any_answer_is_not_held() -> None:
    r = AnswerReader(reading("chat", stream=False), input_tokens=4)
    piece = b" " * 1_048_576
    for _ in range(EVENT_MAX // len(piece) + 8):
        r.feed(piece, MS)
    assert r.held_n <= EVENT_MAX + len(piece)
    assert r.finish(2 * MS) == "bad_response"


def test_numbers_beyond_a_double_cost_only_the_field_they_are_in() -> None:
    # orjson refuses 1e400; JSON allows it. The answer's text stays, the usage is counted bad (estimate used).
    content = b'{"choices":[{"delta":{"content":"hi"},"logprobs":{"content":[{"logprob":-1e400}]}}]}'
    usage = b'{"choices":[],"usage":{"completion_tokens":1e400,"prompt_tokens":-5}}'
    r = read_all(reading("chat"), [b"data: " + content + b"\n\ndata: " + usage + b"\n\ndata: [DONE]\n\n"])
    assert (r.finish(0), r.text(), r.bad) == (None, "hi", 0) and r.bad_usage >= 1
    body = b'{"choices":[{"message":{"content":"hi"}}],"usage":{"completion_tokens":1e400,"prompt_tokens":3}}'
    r = read_all(reading("chat", stream=False), [body])
    assert (r.finish(0), r.text()) == (None, "hi") and r.bad_usage >= 1
