"""API shapes: how each LLM API is asked (its JSON body) and answered (text, usage and end of its events).

Adding a shape is one class here and one entry in `APIS`; nothing else switches on the API's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from squall.plan.specs import LlmSpec, Prompt

Path = tuple[str | int, ...]
Said = tuple[Any, Any, str | None]  # an event's (text, usage, end) as it says them: ApiShape.read


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

    def message(self, role: str, content: str) -> dict[str, Any]:
        """One history entry (a user's turn or an answer as received) in this API's shape."""
        return {"role": role, "content": content}

    def read(self, event: Any, path: Path) -> Said:
        """What one event (any JSON value) says, in one call (the stream reader's per-event path): its content
        text or None (`path`: where --text-path points), its token usage or None, and None while the stream
        goes on, "" when this event ends it well, else the error kind it ends in. Text and usage are returned
        as found (the reader checks their types); an event shaped wrong raises BadEvent."""
        return dig(event, path), None, None

    def final(self, body: Any, path: Path) -> tuple[Any, Any]:
        """(text, usage) of a whole non-streamed answer, as found; BadEvent when it is shaped wrong."""
        return dig(body, path), None

    def guess(self, path: str) -> bool:
        """Whether an endpoint path looks like this API's."""
        return False


class Chat(ApiShape):
    """OpenAI chat completions: messages in, `choices[0].delta.content` events out, usage at the end."""

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
            return None, event.get("usage"), "stream_error" if event.get("error") else None
        if type(choices) is not list or type(c := choices[0]) is not dict:
            raise BadEvent("choices is not a list of objects")
        delta = c.get("delta") or c.get("message")
        if not delta:
            return None, event.get("usage"), None
        if not isinstance(delta, dict):
            raise BadEvent("delta is not an object")
        return delta.get("content"), event.get("usage"), None

    def final(self, body: Any, path: Path) -> tuple[Any, Any]:
        c = first_choice(body)
        message = c.get("message") if c is not None else None
        if message is not None and not isinstance(message, dict):
            raise BadEvent("message is not an object")
        return (message.get("content") if message else None), body.get("usage")

    def guess(self, path: str) -> bool:
        return path.endswith("/chat/completions")


class Completions(Chat):
    """OpenAI completions: a prompt string in, `choices[0].text` events out."""

    history_field = None

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.model, "stream": spec.stream, "prompt": prompt_text(p)}
        return _openai_tail(body, spec, p)

    def read(self, event: Any, path: Path) -> Said:
        c = first_choice(event)
        if c is None:
            return None, event.get("usage"), "stream_error" if event.get("error") else None
        return c.get("text"), event.get("usage"), None

    def final(self, body: Any, path: Path) -> tuple[Any, Any]:
        c = first_choice(body)
        return (c.get("text") if c is not None else None), body.get("usage")

    def guess(self, path: str) -> bool:
        return path.endswith("/completions")


class Dify(ApiShape):
    """Dify chat-messages: `message` events carry the answer, `message_end` the usage and the end."""

    done_marker = ""

    def body(self, spec: LlmSpec, p: Prompt) -> dict[str, Any]:
        mode = "streaming" if spec.stream else "blocking"
        return {"query": prompt_text(p), "inputs": {}, "user": "squall", "response_mode": mode}

    def read(self, event: Any, path: Path) -> Said:
        if not isinstance(event, dict):
            raise BadEvent("the event is not a JSON object")
        kind = event.get("event")
        if kind == "message" or kind == "agent_message":
            return event.get("answer"), None, None
        if kind == "message_end":
            return None, dig(event, ("metadata", "usage")), ""
        return None, None, "stream_error" if kind == "error" else None

    def final(self, body: Any, path: Path) -> tuple[Any, Any]:
        if not isinstance(body, dict):
            raise BadEvent("the answer is not a JSON object")
        return body.get("answer"), dig(body, ("metadata", "usage"))

    def guess(self, path: str) -> bool:
        return path.endswith("/chat-messages")


class Sse(ApiShape):
    """Any server-sent events: the prompt in, the text wherever --text-path points (the fallback guess)."""

    text_path = True

    def guess(self, path: str) -> bool:
        return True


def _openai_tail(body: dict[str, Any], spec: LlmSpec, p: Prompt) -> dict[str, Any]:
    max_tokens = p.max_tokens or spec.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if spec.stream:
        body["stream_options"] = {"include_usage": True}
    return body


# Guessed in this order, the shapes that read their own fields first (see guess_api).
APIS: dict[str, ApiShape] = {"chat": Chat(), "completions": Completions(), "dify": Dify(), "sse": Sse()}


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
