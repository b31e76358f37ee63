"""Conversations: the encoded history equals a plain dump of the whole message list at every turn, and a
session's turns carry exactly the history they should (no server: answers fed to the readers by hand)."""

import json
import random
from typing import Any

import orjson
import pytest

from squall.engine.llm.apis import APIS, Chat, request_body
from squall.engine.llm.history import History, Template, dumps, turn_part
from squall.engine.workload.llm import LlmSource
from squall.plan.plan import assemble
from squall.plan.specs import LlmSpec, Prompt, RequestSpec

PIECES = ["a", "é", "日本語", '"', "\\", "\n", "\t", "\x00", "\x1f", "\u2028", "😀", " ", "{", "]", ","]
PIECES.append("x" * 50)


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 12)))


@pytest.mark.parametrize("seed", range(40))
def test_history_bytes_equal_a_plain_dump_of_every_message_so_far(seed: int) -> None:
    rng = random.Random(seed)
    chat = History(APIS["chat"], listed=True)
    prompt = History(APIS["completions"], listed=False)
    messages: list[dict[str, str]] = []
    texts: list[str] = []
    for k in range(rng.randrange(1, 30)):
        role, text = ("user" if k % 2 == 0 else "assistant"), random_text(rng)
        chat.add(role, text)
        prompt.add(role, text)
        messages.append({"role": role, "content": text})
        texts.append(text)
        assert chat.value() == orjson.dumps(messages)
        assert chat.value() == json.dumps(messages, ensure_ascii=False, separators=(",", ":")).encode()
        assert prompt.value() == orjson.dumps("\n".join(texts))
        assert json.loads(prompt.value()) == "\n".join(texts)


def test_a_lone_surrogate_an_answer_can_decode_to_is_written_escaped() -> None:
    text = json.loads('"a\\ud83d"')  # (a server's escape that names half a character)
    h = History(APIS["chat"], listed=True)
    h.add("assistant", text)
    assert json.loads(h.value()) == [{"role": "assistant", "content": text}]
    assert dumps(text) == b'"a\\ud83d"'


@pytest.mark.parametrize("api", ["chat", "completions", "dify"])
def test_a_template_body_is_the_shapes_body_with_the_history_in_place(api: str) -> None:
    spec = LlmSpec(api=api, model="m", max_tokens=7, body_json=(("top_p", 0.5),))
    t = Template(APIS[api], spec, 9, "")
    h = History(APIS[api], t.listed)
    for role, text in [("user", 'hi "there"'), ("assistant", "é\n"), ("user", "next")]:
        h.add(role, text)
    want = request_body(spec, Prompt(text="x", max_tokens=9))
    if api == "chat":
        want["messages"] = [
            {"role": "user", "content": 'hi "there"'},
            {"role": "assistant", "content": "é\n"},
            {"role": "user", "content": "next"},
        ]
    else:
        field = "prompt" if api == "completions" else "query"
        want[field] = 'hi "there"\né\n\nnext'
    assert h.body(t) == orjson.dumps(want)


def test_a_shape_with_a_top_level_system_field_gets_the_prefix_there() -> None:
    class Top(Chat):
        system_field = "system"

    spec = LlmSpec(model="m")
    t = Template(Top(), spec, None, "PREFIX")
    h = History(Top(), t.listed)
    h.add("user", "u1")
    body = orjson.loads(h.body(t))
    assert body["system"] == "PREFIX"
    assert body["messages"] == [{"role": "user", "content": "u1"}]


def test_turns_past_63_are_pooled() -> None:
    assert [turn_part(k) for k in (1, 2, 63, 64, 65, 1000)] == ["1", "2", "63", "64+", "64+", "64+"]


def _source(spec: LlmSpec, connections: int = 1, workers: int = 1, worker: int = 0, **kw: Any) -> LlmSource:
    plan = assemble(
        RequestSpec("http://127.0.0.1:9/v1/chat/completions", "POST"),
        llm=spec,
        connections=connections,
        workers=workers,
        **kw,
    )
    return LlmSource(plan, worker)


def _answer(session: Any, text: str) -> Any:
    """Send the session's next turn and answer it with `text` (streamed in two events); the body sent."""
    wire, index = session.next()
    reader = session.reader(index)
    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
        if piece:
            event = orjson.dumps({"choices": [{"delta": {"content": piece}}]})
            reader.feed(b"data: " + event + b"\n\n", 1)
    reader.feed(b"data: [DONE]\n\n", 2)
    reader.finish(3)
    return orjson.loads(wire.partition(b"\r\n\r\n")[2])


def test_a_session_carries_every_answer_as_read_and_starts_over_after_its_last_turn() -> None:
    prompts = tuple(Prompt(f"p{i}") for i in range(5))
    session = _source(LlmSpec(turns=3, prompts=prompts)).session(0)
    bodies = [_answer(session, f"A{k} é") for k in range(5)]
    assert [b["messages"] for b in bodies] == [
        [{"role": "user", "content": "p0"}],
        [
            {"role": "user", "content": "p0"},
            {"role": "assistant", "content": "A0 é"},
            {"role": "user", "content": "p1"},
        ],
        [
            {"role": "user", "content": "p0"},
            {"role": "assistant", "content": "A0 é"},
            {"role": "user", "content": "p1"},
            {"role": "assistant", "content": "A1 é"},
            {"role": "user", "content": "p2"},
        ],
        [{"role": "user", "content": "p3"}],  # a new session: the rotation's next prompt
        [
            {"role": "user", "content": "p3"},
            {"role": "assistant", "content": "A3 é"},
            {"role": "user", "content": "p4"},
        ],
    ]


def test_a_records_own_turns_drive_its_session_with_their_max_tokens() -> None:
    record = Prompt(
        messages=(("system", "S"), ("user", "q1")),
        max_tokens=5,
        turns=(Prompt("q2", max_tokens=6), Prompt("q3")),
    )
    session = _source(LlmSpec(turns=9, max_tokens=4, prompts=(record,))).session(0)
    bodies = [_answer(session, f"a{k}") for k in range(4)]
    assert [len(b["messages"]) for b in bodies] == [2, 4, 6, 2]  # three turns (not --turns 9), then again
    assert bodies[2]["messages"][-3:] == [
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q3"},
    ]
    assert [b["max_tokens"] for b in bodies] == [5, 6, 4, 5]


def test_an_answer_cut_or_never_read_goes_on_as_what_arrived() -> None:
    session = _source(LlmSpec(turns=3, prompts=(Prompt("p"),))).session(0)
    session.next()
    reader = session.reader(0)
    reader.feed(b'data: {"choices":[{"delta":{"content":"half"}}]}\n\n', 1)  # then the stream is cut
    assert reader.finish(2) == "stream_broken"
    session.next()
    session.reader(0)  # never answered (a refused connection): not fed, not finished
    body = _answer(session, "x")
    assert [m["content"] for m in body["messages"] if m["role"] == "assistant"] == ["half", ""]


def test_each_user_keeps_its_prefix_across_workers() -> None:
    spec = LlmSpec(turns=2, prompts=(Prompt("p"),), prefixes=("P0", "P1", "P2"))
    # 5 users over 2 workers: worker 1's users are users 3 and 4 (worker 0 has 0, 1, 2)
    source = _source(spec, connections=5, workers=2, worker=1)
    firsts = []
    for user in (0, 1):
        session = source.session(user)
        bodies = [_answer(session, "a"), _answer(session, "b")]
        firsts.append([b["messages"][0] for b in bodies])
    assert firsts == [
        [{"role": "system", "content": "P0"}] * 2,
        [{"role": "system", "content": "P1"}] * 2,
    ]


def test_a_prefix_opens_a_completions_prompt() -> None:
    spec = LlmSpec(api="completions", turns=2, prompts=(Prompt("p"),), prefixes=("SYS",))
    session = _source(spec).session(0)
    wire, _ = session.next()
    session.reader(0)
    assert orjson.loads(wire.partition(b"\r\n\r\n")[2])["prompt"] == "SYS\np"


def test_the_input_estimate_grows_with_the_history() -> None:
    session = _source(LlmSpec(turns=3, prompts=(Prompt("one two three"),))).session(0)
    estimates = []
    for _ in range(3):
        session.next()
        reader = session.reader(0)
        estimates.append(reader.input_tokens)
        reader.feed(b'data: {"choices":[{"delta":{"content":"four five"}}]}\n\ndata: [DONE]\n\n', 1)
        reader.finish(2)
    assert estimates == [3, 3 + 2 + 3, 3 + 2 + 3 + 2 + 3]


def test_a_turns_answers_and_failures_are_counted_in_its_part() -> None:
    from squall.engine.llm.history import TurnReader
    from squall.engine.recorder import Recorder

    source = _source(LlmSpec(turns=70, prompts=(Prompt("p"),)))
    rec = Recorder(0, llm=True, open_model=False)
    for turn in (1, 2, 2, 64, 70):
        reader = TurnReader(source.reading, 3, turn)
        reader.feed(b'data: {"choices":[{"delta":{"content":"a b"}}]}\n\ndata: [DONE]\n\n', 2_000_000)
        rec.answer(200, 1_000_000, 1_000_000, 2_000_000, 3_000_000, 10, reader, False)
    rec.failure("connect", TurnReader(source.reading, 3, 2))
    rec.failure("connect", None)
    rec.close_window(1, 0, 1, 0)
    window = rec.flush()[-1]
    assert window.counters["requests"] == 7
    got = {name: (w.counters["requests"], w.counters["errors"]) for name, w in window.parts["turn"].items()}
    assert got == {"1": (1, 0), "2": (3, 1), "64+": (2, 0)}


def test_a_session_keeps_its_users_key_or_takes_the_next_per_request() -> None:
    def key(wire: bytes) -> bytes:
        return wire.split(b"Authorization: Bearer ")[1].split(b"\r\n")[0]

    keys = ("k0", "k1", "k2")
    per_user = _source(LlmSpec(turns=2, api_keys=keys, key_per="user"), connections=3)
    assert [key(per_user.session(u).next()[0]) for u in (0, 1, 2, 1)] == [b"k0", b"k1", b"k2", b"k1"]
    per_request = _source(LlmSpec(turns=2, api_keys=keys)).session(0)
    assert [key(per_request.next()[0]) for _ in range(4)] == [b"k0", b"k1", b"k2", b"k0"]


def test_cancel_rate_cuts_each_turn_by_its_own_max_tokens() -> None:
    import asyncio

    from squall.engine.llm.cancel import Canceller

    # Two prompts: the first asks for 200 tokens, the second for 4; every turn is picked (rate 1).
    spec = LlmSpec(turns=2, prompts=(Prompt("long", max_tokens=200), Prompt("short", max_tokens=4)))
    spec = LlmSpec(turns=2, prompts=spec.prompts, cancel_rate=1.0)
    session = _source(spec).session(0)
    loop = asyncio.new_event_loop()
    try:
        canceller = Canceller(spec, 1, 0, loop)
        cuts = {200: [], 4: []}  # type: dict[int, list[int]]
        for _ in range(40):  # 20 sessions: turn 1 asks for 200 tokens, turn 2 for 4
            body = _answer(session, "a b")
            cut, _ = canceller.arm(lambda r: None, session.last, 0)
            cuts[body["max_tokens"]].append(cut)
    finally:
        loop.close()
    assert all(1 <= c <= 3 for c in cuts[4]) and len(cuts[4]) == 20
    assert max(cuts[200]) > 3 and all(1 <= c <= 199 for c in cuts[200])


@pytest.mark.parametrize("usage", [False, True])
def test_a_reasoning_answers_thoughts_do_not_grow_the_next_input_estimate(usage: bool) -> None:
    session = _source(LlmSpec(turns=2, prompts=(Prompt("one two three"),))).session(0)
    session.next()
    reader = session.reader(0)
    thought = {"choices": [{"delta": {"reasoning_content": "w " * 50}}]}
    said = {"choices": [{"delta": {"content": "four five"}}]}
    reader.feed(b"data: " + orjson.dumps(thought) + b"\n\ndata: " + orjson.dumps(said) + b"\n\n", 1)
    if usage:  # the server counts 50 reasoning tokens in its 52 completion tokens
        details = {"reasoning_tokens": 50}
        u = {"prompt_tokens": 3, "completion_tokens": 52, "completion_tokens_details": details}
        reader.feed(b"data: " + orjson.dumps({"choices": [], "usage": u}) + b"\n\n", 1)
    reader.feed(b"data: [DONE]\n\n", 2)
    reader.finish(2)
    assert reader.tokens()[0] == 52 and reader.reasoning_tokens() == 50
    session.next()
    assert session.reader(0).input_tokens == 3 + 2 + 3  # the answer sent back, not its reasoning


@pytest.mark.parametrize("api", ["anthropic", "chat"])
def test_an_empty_answer_is_left_out_where_the_api_refuses_an_empty_message(api: str) -> None:
    session = _source(LlmSpec(api=api, turns=3, prompts=(Prompt("p"),))).session(0)
    session.next()
    session.reader(0)  # never answered
    second = _answer(session, "")  # answered with nothing
    body = _answer(session, "x")
    roles = [m["role"] for m in body["messages"]]
    if api == "anthropic":  # (consecutive user turns are fine for Anthropic; an empty message is a 400)
        assert [m["role"] for m in second["messages"]] == ["user", "user"]
        assert roles == ["user", "user", "user"]
    else:
        assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
        assert roles == ["user", "assistant", "user", "assistant", "user"]
        assert [m["content"] for m in body["messages"] if m["role"] == "assistant"] == ["", ""]


def test_the_mock_refuses_an_empty_anthropic_message_as_the_api_does() -> None:
    from squall.targets import mock_events as ev

    def body(*msgs: tuple[str, str]) -> dict[str, Any]:
        return {"max_tokens": 8, "messages": [{"role": r, "content": c} for r, c in msgs]}

    with pytest.raises(ValueError, match=r"^messages\.1: all messages must have non-empty content"):
        ev.ask(ev.ANTHROPIC, body(("user", "a"), ("assistant", ""), ("user", "b")))
    with pytest.raises(ValueError, match=r"^messages\.0: all messages must have non-empty content"):
        ev.ask(ev.ANTHROPIC, body(("user", "")))
    assert ev.ask(ev.ANTHROPIC, body(("user", "a"), ("user", "b"))).prompt == 2
    assert ev.ask(ev.ANTHROPIC, body(("user", "a"), ("assistant", ""))).prompt == 1  # (a final prefill)
    assert ev.ask(ev.CHAT, body(("user", "a"), ("assistant", ""), ("user", "b"))).prompt == 2


def test_a_turns_part_records_only_what_by_turn_reads() -> None:
    from squall.engine.llm.history import TurnReader
    from squall.engine.recorder import Recorder

    source = _source(LlmSpec(turns=2, prompts=(Prompt("p"),)))
    rec = Recorder(0, llm=True, open_model=False, goodput=(("ttft", 1.0),))
    reader = TurnReader(source.reading, 3, 2)
    events = b'data: {"choices":[{"delta":{"content":"w "}}]}\n\n' * 3 + b"data: [DONE]\n\n"
    reader.feed(events, 2_000_000)
    rec.answer(200, 1_000_000, 1_000_000, 2_000_000, 3_000_000, 10, reader, False)
    rec.close_window(1, 0, 1, 0)
    window = rec.flush()[-1]
    part = window.parts["turn"]["2"]
    assert window.counters["goodput"] == 1 and "itl" in window.histograms and "tpot" in window.histograms
    assert set(part.histograms) >= {"ttft", "e2e"}
    assert not {"itl", "tpot", "ttfat"} & set(part.histograms)
    assert part.counters["goodput"] == 0 and part.counters["input_tokens"] == 3
    c = part.counters
    assert (c["requests"], c["errors"], c["streamed_answers"]) == (1, 0, 1)
