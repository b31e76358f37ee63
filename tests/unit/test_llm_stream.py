"""The LLM stream reader, request bodies and token estimate: pure, fed by hand."""

from collections import Counter
from dataclasses import replace

import orjson
import pytest

from squall.engine.llm.apis import APIS, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.engine.workload.llm import LlmSource as LlmWorkload
from squall.plan.plan import Plan
from squall.plan.shard import Spread
from squall.plan.specs import LlmSpec, Prompt, RequestSpec, api_from_path, parse_goodput
from squall.units import PlanError

MS = 1_000_000


def workload(**kw: object) -> LlmWorkload:
    spec = LlmSpec(**kw)  # type: ignore[arg-type]
    plan = Plan(
        RequestSpec("http://127.0.0.1:8000/v1/chat/completions", "POST"), spread=Spread(workers=1), llm=spec
    )
    return LlmWorkload(plan, 0)


def chat_event(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"delta": {"content": text}}]}) + b"\n\n"


def test_chat_stream_times_every_content_event() -> None:
    r = workload(api="chat").reader(0)
    r.feed(
        b"data: " + orjson.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]}) + b"\n\n",
        1 * MS,
    )
    r.feed(chat_event("Hel"), 10 * MS)
    r.feed(chat_event("lo") + chat_event(" world")[:7], 30 * MS)  # an event split across reads
    r.feed(chat_event(" world")[7:], 45 * MS)
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    r.feed(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\ndata: [DONE]\n\n", 50 * MS)
    assert r.finish(50 * MS) is None
    assert r.t_first == 10 * MS
    assert list(r.gaps) == [20_000, 15_000]  # µs between content events, by arrival of each event's end
    assert "".join(r.pieces) == "Hello world"
    assert r.tokens() == (3, 5, True, estimate_tokens("Hello world") - 3)


def test_crlf_comments_and_bad_chunks() -> None:
    r = workload(api="chat").reader(0)
    r.feed(b": keep-alive\r\n\r\n" + chat_event("a").replace(b"\n", b"\r\n"), 1 * MS)
    r.feed(b"data: {not json\n\n", 2 * MS)
    r.feed(chat_event("b") + b"data: [DONE]\n\n", 3 * MS)
    assert r.finish(3 * MS) is None
    assert r.bad == 1
    assert r.pieces == ["a", "b"]


def test_stream_without_done_marker_is_broken_and_without_content_is_empty() -> None:
    r = workload(api="chat").reader(0)
    r.feed(chat_event("a"), MS)
    assert r.finish(2 * MS) == "stream_broken"
    r = workload(api="chat").reader(0)
    r.feed(b"data: [DONE]\n\n", MS)
    assert r.finish(2 * MS) == "empty_response"


def test_completions_dify_and_generic_sse() -> None:
    r = workload(api="completions").reader(0)
    r.feed(b'data: {"choices":[{"text":"x"}]}\n\ndata: [DONE]\n\n', MS)
    assert (r.finish(MS), r.pieces) == (None, ["x"])
    r = workload(api="dify", done_marker="").reader(0)
    r.feed(b'data: {"event":"message","answer":"hi"}\n\n', MS)
    r.feed(
        b'data: {"event":"message_end","metadata":{"usage":{"completion_tokens":1,"prompt_tokens":2}}}\n\n',
        MS,
    )
    assert (r.finish(MS), r.pieces, r.tokens()[:3]) == (None, ["hi"], (1, 2, True))
    r = workload(api="dify").reader(0)
    r.feed(b'data: {"event":"error","message":"quota"}\n\n', MS)
    assert r.finish(MS) == "stream_error"
    r = workload(api="sse", text_path="out.0.t", done_marker="END").reader(0)
    r.feed(b'data: {"out":[{"t":"a"}]}\n\ndata: {"out":[{"t":"b"}]}\n\ndata: END\n\n', MS)
    assert (r.finish(MS), r.pieces) == (None, ["a", "b"])


def test_non_streaming_answers() -> None:
    r = workload(api="chat", stream=False).reader(0)
    body = {
        "choices": [{"message": {"content": "all at once"}}],
        "usage": {"completion_tokens": 3, "prompt_tokens": 1},
    }
    r.feed(orjson.dumps(body)[:10], MS)
    r.feed(orjson.dumps(body)[10:], 2 * MS)
    assert r.finish(5 * MS) is None
    assert r.t_first == 5 * MS
    assert r.tokens()[:3] == (3, 1, True)


def test_requests_are_built_once_and_keys_rotate() -> None:
    prompts = (Prompt("one"), Prompt("two", max_tokens=7))
    w = workload(api="chat", prompts=prompts, api_keys=("k1", "Bearer k2"), max_tokens=50, model="m")
    reqs = [w.next() for _ in range(4)]
    assert [p for _, p in reqs] == [0, 1, 0, 1]
    assert b"Authorization: Bearer k1\r\n" in reqs[0][0]
    assert b"Authorization: Bearer k2\r\n" in reqs[1][0]
    head, _, body = reqs[1][0].partition(b"\r\n\r\n")
    doc = orjson.loads(body)
    assert doc["messages"] == [{"role": "user", "content": "two"}]
    assert (doc["max_tokens"], doc["model"], doc["stream"]) == (7, "m", True)
    assert doc["stream_options"] == {"include_usage": True}
    assert f"Content-Length: {len(body)}".encode() in head
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


def test_bodies_per_api() -> None:
    p = Prompt("hi", max_tokens=3)
    assert request_body(LlmSpec(api="dify"), p) == {
        "query": "hi",
        "inputs": {},
        "user": "squall",
        "response_mode": "streaming",
    }
    assert request_body(LlmSpec(api="completions", stream=False), p)["prompt"] == "hi"
    extra = request_body(LlmSpec(api="chat", body_json=(("top_p", 0.5),)), p)
    assert extra["top_p"] == 0.5


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("the cat sat") == 3
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("hello, world!") == 4
    assert estimate_tokens("internationalization") == 4


def test_api_inference_and_goodput_bounds() -> None:
    assert api_from_path("http://h/v1/chat/completions") == "chat"
    assert api_from_path("http://h/v1/completions") == "completions"
    assert api_from_path("http://h/v1/chat-messages") == "dify"
    assert api_from_path("http://h/stream") == "sse"
    assert parse_goodput("ttft<500ms") == ("ttft", 0.5)
    assert parse_goodput(" tpot < 50ms ") == ("tpot", 0.05)
    with pytest.raises(PlanError, match="not a bound"):
        parse_goodput("ttft>1s")


def test_prompts_go_once_each_across_workers_before_any_repeats_and_keys_pair_with_every_prompt() -> None:
    prompts = tuple(Prompt(f"p{i}") for i in range(10))
    keys = tuple(f"k{i}" for i in range(10))
    spec = LlmSpec(api="chat", prompts=prompts, api_keys=keys)
    plan = Plan(
        RequestSpec("http://127.0.0.1:8000/v1/chat/completions", "POST"), spread=Spread(workers=2), llm=spec
    )
    # -n 10 on 2 workers: 5 requests each, 10 distinct prompts.
    firsts = []
    for w in (0, 1):
        src = LlmWorkload(plan, w)
        firsts += [src.next()[1] for _ in range(5)]
    assert sorted(firsts) == list(range(10))
    # Over 100 requests (keys and prompts both 10) every pair is sent once.
    src = LlmWorkload(Plan(plan.request, spread=Spread(workers=1), llm=spec), 0)
    pairs = set()
    for _ in range(100):
        wire, p = src.next()
        key = wire.split(b"Authorization: Bearer ")[1].split(b"\r\n")[0]
        pairs.add((key, p))
    assert len(pairs) == 100


@pytest.mark.parametrize(("workers", "prompts"), [(2, 10), (3, 9), (2, 7), (4, 6)])
def test_a_timed_run_spreads_each_worker_over_every_prompt(workers: int, prompts: int) -> None:
    # In a timed run one worker can send more than another (more users, a faster core): each worker still
    # takes every prompt in turn, so the counts per prompt stay even, not split into each worker's share.
    spec = LlmSpec(api="chat", prompts=tuple(Prompt(f"p{i}") for i in range(prompts)))
    request = RequestSpec("http://127.0.0.1:8000/v1/chat/completions", "POST")
    plan = Plan(request, spread=Spread(workers=workers), llm=spec)
    sent: Counter[int] = Counter()
    for w in range(workers):
        src = LlmWorkload(plan, w)
        sent.update(src.next()[1] for _ in range(60 * prompts * (w + 1)))  # worker w sends w + 1 times more
    assert max(sent.values()) - min(sent.values()) <= workers, sent
    # -n N gives each worker its share (the first N mod W one more): each prompt once before any twice.
    for n in range(1, 3 * prompts * workers):
        counted = replace(plan, stop=replace(plan.stop, requests=n))
        got: Counter[int] = Counter()
        for w in range(workers):
            src = LlmWorkload(counted, w)
            got.update(src.next()[1] for _ in range(n // workers + (w < n % workers)))
        counts = [got[p] for p in range(prompts)]
        assert max(counts) - min(counts) <= 1, (n, counts)


def test_key_per_user_gives_each_user_one_key_spread_evenly_across_workers() -> None:
    from squall.engine.workload.llm import UserKeys
    from squall.plan.load import Closed

    class Channels:  # a transport that hands back the source each channel would send from
        def channel(self, owner: object, source: object) -> object:
            return source

    def key(wire: bytes) -> bytes:
        return wire.split(b"Authorization: Bearer ")[1].split(b"\r\n")[0]

    prompts = tuple(Prompt(f"p{i}") for i in range(4))
    spec = LlmSpec(api="chat", prompts=prompts, api_keys=("k0", "k1", "k2"), key_per="user")
    request = RequestSpec("http://127.0.0.1:8000/v1/chat/completions", "POST")
    plan = Plan(request, load=Closed(connections=5), spread=Spread(workers=2), llm=spec)
    users: list[list[bytes]] = []
    prompts_sent: list[int] = []
    for worker, share in ((0, 3), (1, 2)):  # 5 users over 2 workers: 3 and 2
        sender = UserKeys(Channels(), LlmWorkload(plan, worker))
        for source in [sender.channel(None) for _ in range(share)]:
            sent = [source.next() for _ in range(4)]  # type: ignore[attr-defined]
            users.append([key(wire) for wire, _ in sent])
            prompts_sent += [p for _, p in sent]
    # Users 0-4 keep keys 0, 1, 2, 0, 1 all run; each worker's users still take its prompts in turn.
    assert [set(u) for u in users] == [{b"k0"}, {b"k1"}, {b"k2"}, {b"k0"}, {b"k1"}]
    # Each worker takes every prompt in turn: worker 0 sent 12 (3 of each), worker 1 sent 8 (2 of each).
    assert Counter(prompts_sent[:12]) == dict.fromkeys(range(4), 3)
    assert Counter(prompts_sent[12:]) == dict.fromkeys(range(4), 2)
    # --key-per request (the default) keeps pairing every key with every prompt.
    one = Spread(workers=1)
    source = LlmWorkload(
        Plan(request, load=Closed(connections=5), spread=one, llm=replace(spec, key_per="request")), 0
    )
    assert not source.per_user
    assert len({(key(w), p) for w, p in (source.next() for _ in range(12))}) == 12


@pytest.mark.parametrize(("keys", "prompts"), [(2, 1), (4, 3), (3, 2), (10, 10), (6, 4), (1, 5)])
def test_keys_per_request_send_every_key_prompt_pair_once_per_round(keys: int, prompts: int) -> None:
    spec = LlmSpec(
        api="chat",
        prompts=tuple(Prompt(f"p{i}") for i in range(prompts)),
        api_keys=tuple(f"k{i}" for i in range(keys)),
    )
    plan = Plan(
        RequestSpec("http://127.0.0.1:8000/v1/chat/completions", "POST"), spread=Spread(workers=1), llm=spec
    )
    src = LlmWorkload(plan, 0)
    sent = []
    for _ in range(2 * keys * prompts):
        wire, p = src.next()
        sent.append((wire.split(b"Authorization: Bearer ")[1].split(b"\r\n")[0], p))
    # Each round of K x P requests sends every pair once; the first K requests use every key.
    assert len(set(sent[: keys * prompts])) == keys * prompts == len(set(sent[keys * prompts :]))
    assert len({k for k, _ in sent[:keys]}) == keys
    req = [src.next_request() for _ in range(keys * prompts)]
    assert len({(dict(r.headers)["Authorization"], p) for r, p in req}) == keys * prompts


def test_a_stream_of_an_api_that_ends_itself_is_broken_when_cut() -> None:
    # Dify, Responses and Anthropic end their streams with an event of their own (no [DONE]): read as a
    # scenario step reads them (the shape's own marker, ""), a stream cut before that event is broken; an
    # `sse` stream with no marker ends when the connection does.
    cut = {
        "dify": b'data: {"event":"message","answer":"hi"}\n\n',
        "responses": b'data: {"type":"response.output_text.delta","delta":"hi"}\n\n',
        "anthropic": b'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}\n\n',
    }
    for api, data in cut.items():
        r = AnswerReader(Reading(APIS[api], True, estimate_tokens), input_tokens=1)
        r.feed(data, MS)
        assert (api, r.finish(2 * MS)) == (api, "stream_broken")
    r = AnswerReader(Reading(APIS["sse"], True, estimate_tokens, ("t",), ""), input_tokens=1)
    r.feed(b'data: {"t":"hi"}\n\n', MS)
    assert r.finish(2 * MS) is None
