"""API shapes: how each LLM API is asked (its JSON body) and answered (text, usage, end and reasoning of its
events).

Adding a shape is one class here and one entry in `APIS`; nothing else switches on the API's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from squall.plan.specs import LlmSpec, Prompt

Path = tuple[str | int, ...]
Said = tuple[Any, Any, str | None, Any]  # an event's (text, usage, end, reasoning) as found: ApiShape.read
Whole = tuple[Any, Any, Any]  # a whole answer's (text, usage, reasoning) as found: ApiShape.final


class BadEvent(ValueError):
    """An event (or a whole answer) whose structure squall can't use: a JSON value of the wrong type."""


def dig(obj: Any, path: Path) -> Any:
    """`obj[p0][p1]...` through JSON objects and arrays, or None where a step is missing or not one."""
    for part in path:
        if isinstance(obj, dict):
            obj = obj.get(part if isinstance(part, str) else str(part))
        elif isinstance(obj, list) and isinstance(part, int) and 0 <= part < len(obj):
            obj = obj[part]
        else:
            return None
    return obj


def first_choice(event: Any) -> dict[str, Any] | None:
    """An OpenAI event's `choices[0]`, or None when it has none; BadEvent when either is of the wrong type."""
    if not isinstance(event, dict):
        raise BadEvent("the event is not a JSON object")
    choices = event.get("choices")
    if not choices:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadEvent("choices is not a list of objects")
    return choices[0]


def parse_path(dotted: str) -> Path:
    """`choices.0.delta.content` -> ("choices", 0, "delta", "content")."""
    return tuple(int(part) if part.isdigit() else part for part in dotted.split(".") if part)


def prompt_text(p: Prompt) -> str:
    """The prompt as one string: its text, or its messages' contents one per line."""
    return p.text if not p.messages else "\n".join(content for _, content in p.messages)


class ApiShape:
    """One API: its request body, and what an event (or a whole non-streamed answer) of its answers says."""

    done_marker = "[DONE]"  # the data line that ends a stream ("" when the API ends it with an event)
    ends_itself = False  # the stream ends with an event of the API's own: a stream cut before it is broken
    text_path = False  # whether the text is wherever --text-path points (else the shape reads its own fields)

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        """The JSON body for one prompt (before --body-json is merged in)."""
        return {"prompt": prompt_text(p)}

    def auth(self, key: str) -> list[tuple[str, str]]:
        """The headers that carry an API key (and any other header the API requires with it)."""
        return [("Authorization", key if key.startswith("Bearer ") else f"Bearer {key}")]

    # Conversations: the body field that holds the history as a list of messages (None: the API takes one
    # prompt string, and the history is joined into it), each made by message(role, content).
    history_field: str | None = None
    system_field: str | None = None  # the body's top-level field for a system prompt, where the API has one
    empty_message_ok = True  # whether the API takes a message with empty content (an answer cut before text)

    def message(self, role: str, content: str) -> dict[str, Any]:
        """One history entry (a user's turn or an answer as received) in this API's shape."""
        return {"role": role, "content": content}

    def read(self, event: Any, path: Path) -> Said:
        """What one event (any JSON value) says, in one call (the stream reader's per-event path): its answer
        text or None (content, or a tool call's argument text; `path`: where --text-path points), its token
        usage or None (in OpenAI's names: prompt_tokens, completion_tokens, and reasoning_tokens or OpenAI's
        completion_tokens_details.reasoning_tokens), None while the stream goes on, "" when this event ends
        it well, else the error kind it ends in, and its reasoning text or None. Text, usage and reasoning
        are returned as found (the reader checks their types); an event shaped wrong raises BadEvent."""
        return dig(event, path), None, None, None

    def final(self, body: Any, path: Path) -> Whole:
        """(text, usage, reasoning) of a whole non-streamed answer, as found; BadEvent when it is shaped
        wrong."""
        return dig(body, path), None, None

    def guess(self, path: str) -> bool:
        """Whether an endpoint path looks like this API's."""
        return False


class Chat(ApiShape):
    """OpenAI chat completions: messages in, `choices[0].delta` events out (content, reasoning_content or
    reasoning, tool_calls' argument text), usage at the end."""

    history_field = "messages"

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        msgs = p.messages or (("user", p.text),)
        body: dict[str, Any] = {"model": spec.model, "stream": spec.stream}
        body["messages"] = [{"role": role, "content": content} for role, content in msgs]
        return _openai_tail(body, spec, p)

    def read(self, event: Any, path: Path) -> Said:
        # (first_choice inlined: this runs once per token)
        if type(event) is not dict:
            raise BadEvent("the event is not a JSON object")
        choices = event.get("choices")
        if not choices:  # a usage-only event, or an error the API sends in the stream
            return None, event.get("usage"), "stream_error" if event.get("error") else None, None
        if type(choices) is not list or type(c := choices[0]) is not dict:
            raise BadEvent("choices is not a list of objects")
        delta = c.get("delta") or c.get("message")
        if not delta:
            return None, event.get("usage"), None, None
        if type(delta) is not dict:
            raise BadEvent("delta is not an object")
        text = delta.get("content")
        if text and len(delta) == 1:  # (the usual token: content alone)
            return text, event.get("usage"), None, None
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")
        calls = delta.get("tool_calls")
        if calls:
            text = _with_calls(text, calls)
        return text, event.get("usage"), None, reasoning

    def final(self, body: Any, path: Path) -> Whole:
        c = first_choice(body)
        message = c.get("message") if c is not None else None
        usage = body.get("usage")
        if message is None:
            return None, usage, None
        if not isinstance(message, dict):
            raise BadEvent("message is not an object")
        text = message.get("content")
        calls = message.get("tool_calls")
        if calls:
            text = _with_calls(text, calls)
        reasoning = message.get("reasoning_content")
        return text, usage, message.get("reasoning") if reasoning is None else reasoning

    def guess(self, path: str) -> bool:
        return path.endswith("/chat/completions")


class Completions(Chat):
    """OpenAI completions: a prompt string in, `choices[0].text` events out (and the reasoning of servers
    that send it beside the text)."""

    history_field = None

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.model, "stream": spec.stream, "prompt": prompt_text(p)}
        return _openai_tail(body, spec, p)

    def read(self, event: Any, path: Path) -> Said:
        c = first_choice(event)
        usage = event.get("usage")
        if c is None:
            return None, usage, "stream_error" if event.get("error") else None, None
        reasoning = c.get("reasoning_content")
        return c.get("text"), usage, None, c.get("reasoning") if reasoning is None else reasoning

    def final(self, body: Any, path: Path) -> Whole:
        c = first_choice(body)
        usage = body.get("usage")
        if c is None:
            return None, usage, None
        reasoning = c.get("reasoning_content")
        return c.get("text"), usage, c.get("reasoning") if reasoning is None else reasoning

    def guess(self, path: str) -> bool:
        return path.endswith("/completions")


class Responses(ApiShape):
    """The OpenAI Responses API: `input` in; typed events out (`response.output_text.delta`, reasoning and
    function-call argument deltas), usage in `response.completed`, which ends the stream (no [DONE])."""

    done_marker = ""
    ends_itself = True
    history_field = "input"

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        given: Any = [{"role": role, "content": content} for role, content in p.messages] or p.text
        body: dict[str, Any] = {"model": spec.model, "input": given, "stream": spec.stream}
        max_tokens = p.max_tokens or spec.max_tokens
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        return body

    def read(self, event: Any, path: Path) -> Said:
        if type(event) is not dict:
            raise BadEvent("the event is not a JSON object")
        kind = event.get("type")
        if kind == "response.output_text.delta" or kind == "response.function_call_arguments.delta":
            return event.get("delta"), None, None, None
        if kind == "response.reasoning_text.delta" or kind == "response.reasoning_summary_text.delta":
            return None, None, None, event.get("delta")
        if kind == "response.completed" or kind == "response.incomplete":  # (incomplete: max_output_tokens)
            usage = dig(event, ("response", "usage"))
            return None, responses_usage(usage) if usage is not None else None, "", None
        if kind == "response.failed" or kind == "error":
            return None, None, "stream_error", None
        return None, None, None, None

    def final(self, body: Any, path: Path) -> Whole:
        if not isinstance(body, dict):
            raise BadEvent("the answer is not a JSON object")
        output = body.get("output")
        if output is not None and not isinstance(output, list):
            raise BadEvent("output is not a list")
        texts: list[Any] = []
        thoughts: list[Any] = []
        for item in output or ():
            if not isinstance(item, dict):
                raise BadEvent("an output item is not an object")
            kind = item.get("type")
            if kind == "message":
                texts.extend(_parts(item.get("content"), "output_text"))
            elif kind == "function_call":
                texts.append(item.get("arguments"))
            elif kind == "reasoning":  # (its own text when the server gives it, else its summary)
                own = _parts(item.get("content"), "reasoning_text")
                thoughts.extend(own or _parts(item.get("summary"), "summary_text"))
        usage = body.get("usage")
        return _joined(texts), responses_usage(usage) if usage is not None else None, _joined(thoughts)

    def guess(self, path: str) -> bool:
        return path.endswith("/responses")


class Anthropic(ApiShape):
    """The Anthropic Messages API: messages (and a top-level `system`) in; `content_block_delta` events out
    (text, thinking, tool input JSON), usage from `message_start` and `message_delta`, `message_stop` ends."""

    done_marker = ""
    ends_itself = True
    history_field = "messages"
    system_field = "system"
    empty_message_ok = False  # (a 400: "all messages must have non-empty content")
    max_tokens = 1024  # the API requires max_tokens: this when the run gives none

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        msgs = p.messages or (("user", p.text),)
        system = [content for role, content in msgs if role == "system"]
        body: dict[str, Any] = {"model": spec.model}
        if system:
            body["system"] = "\n".join(system)
        body["messages"] = [{"role": role, "content": content} for role, content in msgs if role != "system"]
        body["max_tokens"] = p.max_tokens or spec.max_tokens or self.max_tokens
        body["stream"] = spec.stream
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        return body

    def auth(self, key: str) -> list[tuple[str, str]]:
        return [("x-api-key", key), ("anthropic-version", "2023-06-01")]

    def read(self, event: Any, path: Path) -> Said:
        if type(event) is not dict:
            raise BadEvent("the event is not a JSON object")
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if type(delta) is not dict:
                raise BadEvent("delta is not an object")
            step = delta.get("type")
            if step == "text_delta":
                return delta.get("text"), None, None, None
            if step == "thinking_delta":
                return None, None, None, delta.get("thinking")
            if step == "input_json_delta":
                return delta.get("partial_json"), None, None, None
            return None, None, None, None  # (signature_delta and the like: no tokens)
        if kind == "message_start":
            usage = dig(event, ("message", "usage"))
            return None, anthropic_usage(usage) if usage is not None else None, None, None
        if kind == "message_delta":
            usage = event.get("usage")
            return None, anthropic_usage(usage) if usage is not None else None, None, None
        if kind == "message_stop":
            return None, None, "", None
        if kind == "error":
            return None, None, "stream_error", None
        return None, None, None, None

    def final(self, body: Any, path: Path) -> Whole:
        if not isinstance(body, dict):
            raise BadEvent("the answer is not a JSON object")
        content = body.get("content")
        if content is not None and not isinstance(content, list):
            raise BadEvent("content is not a list")
        texts: list[Any] = []
        thoughts: list[Any] = []
        for block in content or ():
            if not isinstance(block, dict):
                raise BadEvent("a content block is not an object")
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text"))
            elif kind == "tool_use":
                given = block.get("input")
                texts.append(orjson.dumps(given).decode() if given is not None else None)
            elif kind == "thinking":
                thoughts.append(block.get("thinking"))
        usage = body.get("usage")
        return _joined(texts), anthropic_usage(usage) if usage is not None else None, _joined(thoughts)

    def guess(self, path: str) -> bool:
        return path.endswith("/v1/messages")


class Dify(ApiShape):
    """Dify chat-messages: `message` events carry the answer, `message_end` the usage and the end."""

    done_marker = ""
    ends_itself = True

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        mode = "streaming" if spec.stream else "blocking"
        return {"query": prompt_text(p), "inputs": {}, "user": "squall", "response_mode": mode}

    def read(self, event: Any, path: Path) -> Said:
        if not isinstance(event, dict):
            raise BadEvent("the event is not a JSON object")
        kind = event.get("event")
        if kind == "message" or kind == "agent_message":
            return event.get("answer"), None, None, None
        if kind == "message_end":
            return None, dig(event, ("metadata", "usage")), "", None
        return None, None, "stream_error" if kind == "error" else None, None

    def final(self, body: Any, path: Path) -> Whole:
        if not isinstance(body, dict):
            raise BadEvent("the answer is not a JSON object")
        return body.get("answer"), dig(body, ("metadata", "usage")), None

    def guess(self, path: str) -> bool:
        return path.endswith("/chat-messages")


class Sse(ApiShape):
    """Any server-sent events: the prompt in, the text wherever --text-path points (the fallback guess)."""

    text_path = True

    def guess(self, path: str) -> bool:
        return True


def responses_usage(usage: Any) -> Any:
    """The Responses API's usage (input_tokens, output_tokens, output_tokens_details.reasoning_tokens) in
    OpenAI's chat names; any other value as found."""
    if type(usage) is not dict:
        return usage
    out: dict[str, Any] = {}
    if "input_tokens" in usage:
        out["prompt_tokens"] = usage["input_tokens"]
    if "output_tokens" in usage:
        out["completion_tokens"] = usage["output_tokens"]
    details = usage.get("output_tokens_details")
    if type(details) is dict and "reasoning_tokens" in details:
        out["reasoning_tokens"] = details["reasoning_tokens"]
    return out


def anthropic_usage(usage: Any) -> Any:
    """Anthropic's usage in OpenAI's names: prompt_tokens = input_tokens plus the cache's read and written
    tokens (all the prompt's tokens), completion_tokens = output_tokens (thinking included); as found when it
    is not an object. A field the event lacks stays out (message_delta's usage adds to message_start's)."""
    if type(usage) is not dict:
        return usage
    out: dict[str, Any] = {}
    given = usage.get("input_tokens")
    if given is not None:
        if type(given) is int:
            for name in ("cache_read_input_tokens", "cache_creation_input_tokens"):
                more = usage.get(name)
                if type(more) is int and more > 0:
                    given += more
        out["prompt_tokens"] = given
    if "output_tokens" in usage:
        out["completion_tokens"] = usage["output_tokens"]
    return out


def _with_calls(text: Any, calls: Any) -> Any:
    """The text of a delta (or message) with its tool calls' argument text after it."""
    if type(calls) is not list:
        raise BadEvent("tool_calls is not a list")
    args = [dig(call, ("function", "arguments")) for call in calls]
    if any(a is not None and type(a) is not str for a in args):
        raise BadEvent("a tool call's arguments are not text")
    joined = "".join(a for a in args if a)
    if not joined or (text and type(text) is not str):
        return text  # (no argument text, or a text of the wrong type for the reader to count)
    return text + joined if text else joined


def _parts(content: Any, kind: str) -> list[Any]:
    """The `text` of each part of `kind` in a Responses content (or summary) list."""
    if content is None:
        return []
    if not isinstance(content, list):
        raise BadEvent("content is not a list")
    return [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == kind]


def _joined(pieces: list[Any]) -> Any:
    """Texts found in a whole answer's parts, joined; None when there were none; the first that is not text
    as found (the reader counts it)."""
    for piece in pieces:
        if piece is not None and type(piece) is not str:
            return piece
    return "".join(p for p in pieces if p) if pieces else None


def _openai_tail(body: dict[str, Any], spec: LlmSpec, p: Prompt) -> dict[str, Any]:
    max_tokens = p.max_tokens or spec.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
        if spec.exact_output:  # (vLLM and SGLang take both; without a max_tokens there is no length to ask)
            body["min_tokens"] = max_tokens
            body["ignore_eos"] = True
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if spec.stream:
        body["stream_options"] = {"include_usage": True}
    return body


# Guessed in this order, the shapes that read their own fields first (see guess_api).
APIS: dict[str, ApiShape] = {
    "chat": Chat(),
    "completions": Completions(),
    "responses": Responses(),
    "anthropic": Anthropic(),
    "dify": Dify(),
    "sse": Sse(),
}


def guess_api(url: str, own_fields: bool = False) -> str:
    """The API a URL's endpoint path looks like: the first shape that reads its own fields and takes the path,
    else (unless `own_fields`) the first --text-path shape that does (sse takes any), else the first shape."""
    path = urlsplit(url).path
    own = [name for name, shape in APIS.items() if not shape.text_path]
    for name in own:
        if APIS[name].guess(path):
            return name
    if not own_fields:
        for name, shape in APIS.items():
            if shape.text_path and shape.guess(path):
                return name
    return own[0]


def request_body(spec: LlmSpec, p: Prompt) -> dict[str, Any]:
    """The JSON body for one prompt in the spec's API shape, with --body-json merged in."""
    body = APIS[spec.api].body(spec, p)
    body.update(dict(spec.body_json))
    return body
