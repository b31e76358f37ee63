"""What a request asks the mock LLM for, what it writes, and when: request reading, wire formats (OpenAI chat
and completions, Dify; the phased answers and the other shapes are in mock_apis) and a timer wheel."""

from __future__ import annotations

import asyncio
import heapq
from http import HTTPStatus
from time import perf_counter_ns
from typing import Any, NamedTuple, Protocol

import orjson

# The mock's "model" cycles through these, so every response is deterministic.
WORDS = (
    " the", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ",", " and",
    " then", " it", " runs", " back", " across", " a", " wide", " green", " field", " to", " rest",
    " under", " an", " old", " oak", " tree", " near", " the", " river", " bank", ".",
)  # fmt: skip
CHAT, COMPLETIONS, DIFY, RESPONSES, ANTHROPIC = 0, 1, 2, 3, 4
BAD_EVENT = b"data: {not json\n\n"
DONE_EVENT = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"
_IDS = ("chatcmpl-squall-mock", "cmpl-squall-mock")
_DIFY_IDS = {"task_id": "squall-mock-task", "message_id": "squall-mock-msg", "conversation_id": "squall-mock"}


DEFAULT_TOOL = "mock_tool"
_MAX_FIELDS = {
    CHAT: ("max_tokens", "max_completion_tokens"),
    COMPLETIONS: ("max_tokens",),
    RESPONSES: ("max_output_tokens",),
    ANTHROPIC: ("max_tokens",),
}


class Asked(NamedTuple):
    """What one request body asks for."""

    stream: bool
    usage: bool  # the stream ends with usage (always for Dify, Responses and Anthropic)
    cap: int | None  # max_tokens (max_completion_tokens, max_output_tokens)
    exact: bool  # ignore_eos: the answer is exactly `cap` long
    least: int  # min_tokens
    prompt: int  # words in the prompt or history (at least 1)
    think: int | None  # reasoning tokens asked for: a number (mock_reasoning_tokens), -1 (asked), None (not)
    tool: str | None  # the tool to call (the first of `tools`), or None


def words(value: object) -> int:
    """Whitespace-separated words in a string, or in a list of strings or {text} parts."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        parts = (v.get("text") if isinstance(v, dict) else v for v in value)
        return sum(len(p.split()) for p in parts if isinstance(p, str))
    return 0


def _history(req: dict[str, Any], field: str, what: str) -> int:
    items = req.get(field)
    if not isinstance(items, list):
        raise ValueError(f"{field} must be a list of {what} objects")
    return sum(words(m.get("content", m.get("output"))) for m in items if isinstance(m, dict))


def _nonempty(messages: list[Any]) -> None:
    """The Messages API's check: no message with empty content but a final assistant one (a prefill)."""
    last = len(messages) - 1
    for i, m in enumerate(messages):
        empty = isinstance(m, dict) and m.get("content") in ("", [])
        if empty and not (i == last and m.get("role") == "assistant"):
            raise ValueError(
                f"messages.{i}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )


def _positive(req: dict[str, Any], name: str, low: int) -> int | None:
    value = req.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        kind = "a positive integer" if low else "an integer of 0 or more"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def _reasoning(kind: int, req: dict[str, Any]) -> int | None:
    explicit = _positive(req, "mock_reasoning_tokens", 0)
    if explicit is not None:
        return explicit
    if kind == CHAT:
        asked = req.get("reasoning_effort") not in (None, "none")
    elif kind == RESPONSES:
        reasoning = req.get("reasoning")
        asked = isinstance(reasoning, dict) and reasoning.get("effort", "medium") not in (None, "none")
    elif kind == ANTHROPIC:
        thinking = req.get("thinking")
        asked = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    else:
        asked = False
    return -1 if asked else None


def _tool(kind: int, req: dict[str, Any]) -> str | None:
    tools = req.get("tools")
    if kind not in (CHAT, RESPONSES, ANTHROPIC) or not tools or req.get("tool_choice") == "none":
        return None
    if not isinstance(tools, list) or not isinstance(tools[0], dict):
        raise ValueError("tools must be a list of tool objects")
    first = tools[0].get("function") if kind == CHAT else tools[0]
    name = first.get("name") if isinstance(first, dict) else None
    return name if isinstance(name, str) and name else DEFAULT_TOOL


def ask(kind: int, req: object) -> Asked:
    """What a request body asks for; prompt is a word count. A ValueError names the field that is wrong."""
    if not isinstance(req, dict):
        raise ValueError("the request body must be a JSON object")
    if kind == DIFY:
        mode = req.get("response_mode", "blocking")
        if mode not in ("streaming", "blocking"):
            raise ValueError(f"response_mode must be 'streaming' or 'blocking', got {mode!r}")
        return Asked(mode == "streaming", True, None, False, 0, max(1, words(req.get("query"))), None, None)
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise ValueError(f"stream must be true or false, got {stream!r}")
    cap = None
    for name in _MAX_FIELDS[kind]:
        if cap is None:
            cap = _positive(req, name, 1)
    if cap is None and kind == ANTHROPIC:
        raise ValueError("max_tokens: Field required (the Messages API needs max_tokens)")
    least = _positive(req, "min_tokens", 0) or 0
    if cap is not None and least > cap:
        raise ValueError(f"min_tokens ({least}) must not be greater than max_tokens ({cap})")
    options = req.get("stream_options")
    usage = kind in (RESPONSES, ANTHROPIC) or (
        isinstance(options, dict) and options.get("include_usage") is True
    )
    if kind == CHAT:
        prompt = _history(req, "messages", "{role, content}")
    elif kind == ANTHROPIC:
        prompt = _history(req, "messages", "{role, content}") + words(req.get("system"))
        _nonempty(req["messages"])
    elif kind == RESPONSES:
        given = req.get("input")
        prompt = words(given) if isinstance(given, str) else _history(req, "input", "input item")
        prompt += words(req.get("instructions"))
    else:
        prompt = words(req.get("prompt"))
    exact = req.get("ignore_eos") is True
    return Asked(stream, usage, cap, exact, least, max(1, prompt), _reasoning(kind, req), _tool(kind, req))


def text(count: int) -> str:
    """The first `count` words of the mock's endless answer, joined."""
    full, rest = divmod(count, len(WORDS))
    return "".join(WORDS) * full + "".join(WORDS[:rest])


def usage(prompt: int, completion: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(obj: object) -> bytes:
    """One server-sent event carrying `obj` as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def frame(event: bytes, chunked: bool) -> bytes:
    """`event` as one HTTP/1.1 chunk, or as is for an HTTP/1.0 body that ends with the connection."""
    return b"%x\r\n%s\r\n" % (len(event), event) if chunked and event else event


def head(code: int, content_type: bytes, connection: bytes, length: int | None, extra: bytes = b"") -> bytes:
    """A response head for `length` bytes of body, a chunked stream (-1), or one the close ends (None)."""
    phrase = HTTPStatus(code).phrase.encode()
    out = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s" % (code, phrase, content_type, extra)
    if length is not None and length >= 0:
        out += b"Content-Length: %d\r\n" % length
    else:
        out += b"Cache-Control: no-cache\r\n" + (b"Transfer-Encoding: chunked\r\n" if length == -1 else b"")
    return out + connection + b"\r\n"


_ANTHROPIC_ERRORS = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                     413: "request_too_large", 429: "rate_limit_error", 500: "api_error"}  # fmt: skip


def error_body(message: str, kind: str, code: str) -> bytes:
    """OpenAI's error shape."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def anthropic_error(status: int, message: str) -> bytes:
    """Anthropic's error shape."""
    kind = _ANTHROPIC_ERRORS.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def models_body(model: str, created: int) -> bytes:
    """The answer to GET /v1/models."""
    entry = {"id": model, "object": "model", "created": created, "owned_by": "squall"}
    return orjson.dumps({"object": "list", "data": [entry]})


def body(kind: int, model: str, created: int, count: int, prompt: int) -> bytes:
    """A blocking (non-streaming) answer of `count` words."""
    answer = text(count)
    if kind == DIFY:
        meta = {"usage": usage(prompt, count)}
        return orjson.dumps(
            {"event": "message", **_DIFY_IDS, "mode": "chat", "answer": answer, "metadata": meta}
        )
    if kind == CHAT:
        choice: dict[str, object] = {"index": 0, "message": {"role": "assistant", "content": answer}}
    else:
        choice = {"index": 0, "text": answer, "logprobs": None}
    obj = "chat.completion" if kind == CHAT else "text_completion"
    choice["finish_reason"] = "stop"
    return orjson.dumps(
        {"id": _IDS[kind], "object": obj, "created": created, "model": model, "choices": [choice],
         "usage": usage(prompt, count)}
    )  # fmt: skip


class Events:
    """Every framed event one kind of stream needs: the opening, one per word, and the pieces of the tail."""

    __slots__ = ("_base", "_end", "_finish", "chunked", "kind", "opening", "tokens")

    def __init__(self, kind: int, chunked: bool, model: str, created: int) -> None:
        self.kind, self.chunked = kind, chunked
        if kind == DIFY:
            self._base: dict[str, object] = dict(_DIFY_IDS)
            self.opening = self._finish = b""
            self.tokens = tuple(
                frame(sse({"event": "message", **_DIFY_IDS, "answer": w, "created_at": created}), chunked)
                for w in WORDS
            )
            self._end = LAST_CHUNK if chunked else b""
            return
        obj = "chat.completion.chunk" if kind == CHAT else "text_completion"
        self._base = {"id": _IDS[kind], "object": obj, "created": created, "model": model}
        self.opening = self._choice({"role": "assistant", "content": ""}, None) if kind == CHAT else b""
        self.tokens = tuple(self._choice(w, None) for w in WORDS)
        self._finish = self._choice({} if kind == CHAT else "", "stop")
        self._end = frame(DONE_EVENT, chunked) + (LAST_CHUNK if chunked else b"")

    def _choice(self, content: object, finish: str | None) -> bytes:
        if self.kind == CHAT:
            delta = content if isinstance(content, dict) else {"content": content}
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}
        return frame(sse({**self._base, "choices": [choice]}), self.chunked)

    def tail(self, prompt: int, completion: int, include_usage: bool) -> bytes:
        """Everything after the last word: finish, usage, [DONE] (not for Dify), and the last chunk."""
        if self.kind == DIFY:
            end = {"event": "message_end", **self._base, "metadata": {"usage": usage(prompt, completion)}}
            return frame(sse(end), self.chunked) + self._end
        extra = b""
        if include_usage:
            extra = frame(
                sse({**self._base, "choices": [], "usage": usage(prompt, completion)}), self.chunked
            )
        return self._finish + extra + self._end


TICK_BUDGET_NS = 2_000_000  # past this, a tick yields to I/O and the next tick goes on at once
TIMER_BIAS_NS = 250_000  # see Wheel._arm
_NEVER = 1 << 62


class Step(Protocol):
    """Something the wheel calls once it is due: writes, and may add itself back for later."""

    def step(self) -> None: ...


class Wheel:
    """Steps waiting to be written, in buckets keyed by the millisecond each falls due, rounded up.

    One timer serves every stream: a tick writes all that is due by now and re-arms for the earliest bucket.
    Rounding the key up is what keeps events from going early: key <= now_ms implies due_ns <= now_ns.
    """

    __slots__ = ("_armed", "_buckets", "_keys", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, list[Step]] = {}
        self._keys: list[int] = []  # a heap of the bucket keys
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._armed = _NEVER  # the key the timer is set for; -1 while ticking, so add() leaves it alone

    def add(self, item: Step, due_ns: int) -> None:
        """Call item.step() at or soon after due_ns (a perf_counter_ns time), never before."""
        key = -(-due_ns // 1_000_000)
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.append(item)
            return
        self._buckets[key] = [item]
        heapq.heappush(self._keys, key)
        if key < self._armed:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(key)

    def _arm(self, key: int) -> None:
        # Subtleness ahead: uvloop rounds a delay to whole ms counted from now (under 0.5 ms it runs on the
        # next loop iteration), so a timer lands up to 0.5 ms either side of the time asked for. Asking for
        # the bucket's boundary + TIMER_BIAS_NS lands from 0.25 ms early to 0.75 ms late. Early finds nothing
        # due and re-arms for the rest: a busy wait of at most 0.25 ms, 1 wake-up in 4. Exact whole-ms delays
        # would never wait busy but land up to 1 ms late, and that lag would carry over from tick to tick.
        self._armed = key
        delay_ns = key * 1_000_000 + TIMER_BIAS_NS - perf_counter_ns()
        self._timer = self._loop.call_later(max(delay_ns, 0) / 1e9, self._tick)

    def _tick(self) -> None:
        self._timer, self._armed = None, -1
        keys, buckets = self._keys, self._buckets
        start = perf_counter_ns()
        now_ms = start // 1_000_000
        while keys and keys[0] <= now_ms:  # steps add to later buckets (or to this ms when itl is 0): bounded
            for item in buckets.pop(heapq.heappop(keys)):
                item.step()
            if perf_counter_ns() - start > TICK_BUDGET_NS:  # overloaded: let I/O in, the next tick goes on
                break
        self._armed = _NEVER
        if keys:
            self._arm(keys[0])
