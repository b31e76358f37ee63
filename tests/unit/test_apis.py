"""API shapes as objects: the registry, the guess from a path, and one reader for any shape."""

from typing import Any

import orjson

from squall.engine.llm.apis import APIS, ApiShape, Path, guess_api, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.plan import specs
from squall.plan.specs import LlmSpec, Prompt

MS = 1_000_000


def test_the_registry_names_every_api() -> None:
    assert list(APIS) == ["chat", "completions", "dify", "sse"]
    assert tuple(APIS) == specs.api_names()
    got = {
        p: guess_api("http://h" + p)
        for p in ("/v1/chat/completions", "/v1/completions", "/chat-messages", "/x")
    }
    assert got == {
        "/v1/chat/completions": "chat",
        "/v1/completions": "completions",
        "/chat-messages": "dify",
        "/x": "sse",
    }


def test_each_shape_reads_its_events() -> None:
    chat, comp, dify = APIS["chat"], APIS["completions"], APIS["dify"]
    event = {"choices": [{"delta": {"content": "a"}}], "usage": {"completion_tokens": 1}}
    assert (chat.text(event, ()), chat.usage(event), chat.end(event)) == ("a", {"completion_tokens": 1}, None)
    assert comp.text({"choices": [{"text": "b"}]}, ()) == "b"
    end = {"event": "message_end", "metadata": {"usage": {"completion_tokens": 2}}}
    assert (dify.text(end, ()), dify.usage(end), dify.end(end)) == (None, {"completion_tokens": 2}, "")
    assert dify.end({"event": "error"}) == "stream_error"
    assert APIS["sse"].text({"o": [{"t": "c"}]}, ("o", 0, "t")) == "c"
    assert chat.final({"choices": [{"message": {"content": "d"}}]}, ()) == ("d", None)
    assert dify.final({"answer": "e", "metadata": {"usage": {"x": 1}}}, ()) == ("e", {"x": 1})
    assert request_body(LlmSpec(api="completions", stream=False, max_tokens=4), Prompt("p")) == {
        "model": "default",
        "stream": False,
        "prompt": "p",
        "max_tokens": 4,
    }


class Upper(ApiShape):
    """A shape made up for the test: `{"say": text}` events, `{"bye": true}` ends the stream."""

    done_marker = ""

    def text(self, event: dict[str, Any], path: Path) -> str | None:
        return event.get("say")

    def end(self, event: dict[str, Any]) -> str | None:
        return "" if event.get("bye") else None


def test_a_new_shape_is_read_by_the_one_reader() -> None:
    r = AnswerReader(Reading(Upper(), True, estimate_tokens), input_tokens=3)
    for i, obj in enumerate(({"say": "one"}, {"say": " two"}, {"bye": True})):
        r.feed(b"data: " + orjson.dumps(obj) + b"\n\n", (i + 1) * MS)
    assert r.finish(5 * MS) is None
    assert (r.text(), r.t_first, list(r.gaps)) == ("one two", MS, [1000])
    assert r.tokens() == (2, 3, False, 0)
