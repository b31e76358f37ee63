"""API shapes as objects: the registry, the guess from a path, and one reader for any shape."""

from pathlib import Path as PathLib
from typing import Any

import orjson
import pytest

from squall.engine.llm.apis import APIS, ApiShape, Path, Said, guess_api, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import estimate_tokens
from squall.plan import specs
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import LlmSpec, Prompt
from squall.units import PlanError

MS = 1_000_000


def test_the_registry_names_every_api() -> None:
    assert list(APIS) == ["chat", "completions", "responses", "anthropic", "dify", "sse"]
    assert tuple(APIS) == specs.api_names()
    paths = (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/chat-messages",
        "/x",
    )
    got = {p: guess_api("http://h" + p) for p in paths}
    assert got == {
        "/v1/chat/completions": "chat",
        "/v1/completions": "completions",
        "/v1/responses": "responses",
        "/v1/messages": "anthropic",
        "/chat-messages": "dify",
        "/x": "sse",
    }
    assert guess_api("http://h/openai/v1/responses") == "responses"
    assert guess_api("http://h/v1/threads/t/messages") == "sse"  # (not the Messages API's path)


def test_each_shape_reads_its_events() -> None:
    chat, comp, dify = APIS["chat"], APIS["completions"], APIS["dify"]
    event = {"choices": [{"delta": {"content": "a"}}], "usage": {"completion_tokens": 1}}
    assert chat.read(event, ()) == ("a", {"completion_tokens": 1}, None, None)
    assert comp.read({"choices": [{"text": "b"}]}, ())[0] == "b"
    end = {"event": "message_end", "metadata": {"usage": {"completion_tokens": 2}}}
    assert dify.read(end, ()) == (None, {"completion_tokens": 2}, "", None)
    assert dify.read({"event": "error"}, ())[2] == "stream_error"
    assert APIS["sse"].read({"o": [{"t": "c"}]}, ("o", 0, "t"))[0] == "c"
    assert chat.final({"choices": [{"message": {"content": "d"}}]}, ()) == ("d", None, None)
    assert dify.final({"answer": "e", "metadata": {"usage": {"x": 1}}}, ()) == ("e", {"x": 1}, None)
    assert request_body(LlmSpec(api="completions", stream=False, max_tokens=4), Prompt("p")) == {
        "model": "default",
        "stream": False,
        "prompt": "p",
        "max_tokens": 4,
    }


class Upper(ApiShape):
    """A shape made up for the test: `{"say": text}` events, `{"bye": true}` ends the stream."""

    done_marker = ""

    def read(self, event: dict[str, Any], path: Path) -> Said:
        return event.get("say"), None, "" if event.get("bye") else None, None


def test_a_new_shape_is_read_by_the_one_reader() -> None:
    r = AnswerReader(Reading(Upper(), True, estimate_tokens), input_tokens=3)
    for i, obj in enumerate(({"say": "one"}, {"say": " two"}, {"bye": True})):
        r.feed(b"data: " + orjson.dumps(obj) + b"\n\n", (i + 1) * MS)
    assert r.finish(5 * MS) is None
    assert (r.text(), r.t_first, list(r.gaps)) == ("one two", MS, [1000])
    assert r.tokens() == (2, 3, False, 0)


def test_read_says_text_usage_and_end_in_one_call() -> None:
    chat, comp, dify, sse = (APIS[n] for n in ("chat", "completions", "dify", "sse"))
    usage = {"completion_tokens": 1}
    assert chat.read({"choices": [{"delta": {"content": "a"}}], "usage": usage}, ()) == (
        "a",
        usage,
        None,
        None,
    )
    assert chat.read({"choices": [], "usage": usage}, ()) == (None, usage, None, None)
    assert chat.read({"choices": [{"message": {"content": "m"}}]}, ()) == ("m", None, None, None)
    assert comp.read({"choices": [{"text": "b"}], "usage": None}, ()) == ("b", None, None, None)
    assert dify.read({"event": "agent_message", "answer": "c"}, ()) == ("c", None, None, None)
    assert dify.read({"event": "message_end", "metadata": {"usage": usage}}, ()) == (None, usage, "", None)
    assert dify.read({"event": "error"}, ()) == (None, None, "stream_error", None)
    assert dify.read({"event": "ping"}, ()) == (None, None, None, None)
    assert sse.read({"o": [{"t": "c"}]}, ("o", 0, "t")) == ("c", None, None, None)
    assert sse.read({"o": [{"t": 1}]}, ("o", 0, "t")) == (1, None, None, None)  # as found: the reader checks


def test_only_a_text_path_shape_takes_text_path() -> None:
    assert [n for n, s in APIS.items() if s.text_path] == ["sse"]
    assert guess_api("http://h/x") == "sse"
    assert guess_api("http://h/x", own_fields=True) == "chat"
    assert guess_api("http://h/v1/completions", own_fields=True) == "completions"


def test_a_new_shape_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: PathLib) -> None:
    """Registered once, a shape is a step's api, guessed from its path, and a --text-path shape or not."""
    monkeypatch.setitem(APIS, "upper", Upper())
    monkeypatch.setattr(Upper, "guess", lambda self, path: path.endswith("/upper"), raising=False)
    assert guess_api("http://h/v1/upper") == "upper"
    doc = tmp_path / "s.yaml"
    doc.write_text(
        "base_url: http://h\nscenarios:\n  - name: s\n    steps:\n"
        "      - {name: a, llm: {path: /v1/upper, prompt: hi}}\n"
        "      - {name: b, llm: {path: /x, api: upper, prompt: hi}}\n"
    )
    steps = load_scenario(doc).journeys[0].steps
    assert [s.llm.api for s in steps if s.llm is not None] == ["upper", "upper"]
    with pytest.raises(
        PlanError,
        match=r"--text-path is for --api sse; chat, completions, responses, anthropic, dify and upper read",
    ):
        llm_spec("http://h/v1/upper", LlmFlags(text_path="a.b"), 0)
    monkeypatch.setattr(Upper, "text_path", True)
    assert llm_spec("http://h/v1/upper", LlmFlags(api="upper", text_path="a.b"), 0).api == "upper"
    doc.write_text(
        "base_url: http://h\nscenarios:\n  - name: s\n    steps:\n"
        "      - {name: a, llm: {path: /v1/x, api: upper, prompt: hi}}\n"
    )
    with pytest.raises(PlanError, match=r"llm.api: must be chat, completions, responses, anthropic or dify$"):
        load_scenario(doc)


class Counted(ApiShape):
    """Counts the reader's calls into the shape: read() once per event, nothing else."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def read(self, event: dict[str, Any], path: Path) -> Said:
        self.calls.append("read")
        return event.get("t"), None, None, None

    def text(self, event: dict[str, Any], path: Path) -> str | None:
        self.calls.append("text")
        return None

    def usage(self, event: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append("usage")
        return None

    def end(self, event: dict[str, Any]) -> str | None:
        self.calls.append("end")
        return None


def test_the_reader_asks_the_shape_once_per_event() -> None:
    shape = Counted()
    r = AnswerReader(Reading(shape, True, estimate_tokens), input_tokens=1)
    r.feed(b'data: {"t": "a"}\n\ndata: {"t": "b"}\n\ndata: {}\n\ndata: [DONE]\n\n', MS)
    assert (r.finish(2 * MS), r.text(), shape.calls) == (None, "ab", ["read"] * 3)


def test_exact_output_is_refused_where_the_api_has_no_such_fields() -> None:
    import pytest

    from squall.plan.specs import LlmSpec
    from squall.units import PlanError

    for api in ("chat", "completions"):
        LlmSpec(api=api, exact_output=True).validate()
    for api in ("responses", "anthropic", "dify", "sse"):
        with pytest.raises(PlanError, match=f"--api {api} has no such fields"):
            LlmSpec(api=api, exact_output=True).validate()


def test_turns_zero_is_refused_not_taken_as_one() -> None:
    import pytest

    from squall.plan.llm import LlmFlags, llm_spec
    from squall.units import PlanError

    url = "http://127.0.0.1:9/v1/chat/completions"
    assert llm_spec(url, LlmFlags(), 0).turns == 1
    with pytest.raises(PlanError, match=r"--turns must be from 1 to 10,000 \(got 0\)"):
        llm_spec(url, LlmFlags(turns=0), 0).validate()
