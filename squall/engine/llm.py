"""LLM requests and streams: each request built once; SSE or JSON answers read into TTFT, ITL and tokens."""

from __future__ import annotations

import re
from array import array
from typing import Any

import orjson

from squall import __version__
from squall.plan.plan import Plan
from squall.plan.specs import LlmSpec, Prompt

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_PIECES = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """Tokens in `text` as BPE tokenizers count them, roughly: a CJK character or a piece of punctuation is
    one token, an ASCII word one token per five or six letters (at least one), digits in groups of three."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    if cjk:
        text = _CJK.sub(" ", text)
    n = cjk
    for piece in _PIECES.findall(text):
        n += max(1, round(len(piece) / 5.5)) if piece[0].isalpha() else 1
    return n


def make_counter() -> Any:
    """tiktoken's cl100k counter when tiktoken and its data are installed, else `estimate_tokens`."""
    try:
        import tiktoken  # type: ignore[import-not-found]

        enc = tiktoken.get_encoding("cl100k_base")
        return lambda text: len(enc.encode(text, disallowed_special=()))
    except Exception:
        return estimate_tokens


def _prompt_text(p: Prompt) -> str:
    return p.text if not p.messages else "\n".join(content for _, content in p.messages)


def request_body(spec: LlmSpec, p: Prompt) -> dict[str, Any]:
    """The JSON body for one prompt in the spec's API flavour."""
    max_tokens = p.max_tokens or spec.max_tokens
    body: dict[str, Any]
    if spec.api == "dify":
        body = {"query": _prompt_text(p), "inputs": {}, "user": "squall"}
        body["response_mode"] = "streaming" if spec.stream else "blocking"
    elif spec.api in ("chat", "completions"):
        body = {"model": spec.model, "stream": spec.stream}
        if spec.api == "chat":
            msgs = p.messages or (("user", p.text),)
            body["messages"] = [{"role": role, "content": content} for role, content in msgs]
        else:
            body["prompt"] = _prompt_text(p)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        if spec.stream:
            body["stream_options"] = {"include_usage": True}
    else:  # generic SSE: the prompt, plus whatever --body-json says
        body = {"prompt": _prompt_text(p)}
    body.update(dict(spec.body_json))
    return body


class LlmWorkload:
    """One worker's requests: every (key, prompt) pair's bytes built once, cycled from a worker offset."""

    def __init__(self, plan: Plan, worker: int) -> None:
        spec = plan.llm
        assert spec is not None
        self.spec = spec
        req = plan.request
        default_port = 443 if req.scheme == "https" else 80
        host = req.host if req.port == default_port else f"{req.host}:{req.port}"
        names = {n.lower() for n, _ in req.headers}
        head = [f"POST {req.target} HTTP/1.1", f"Host: {host}", f"User-Agent: squall/{__version__}"]
        head.append("Content-Type: application/json")
        if spec.stream:
            head.append("Accept: text/event-stream")
        head.extend(f"{n}: {v}" for n, v in req.headers)
        keys = spec.api_keys or ("",)
        self.heads = []
        for key in keys:
            lines = list(head)
            if key and "authorization" not in names:
                lines.append(f"Authorization: {key if key.startswith('Bearer ') else 'Bearer ' + key}")
            self.heads.append(("\r\n".join(lines) + "\r\n").encode("latin-1"))
        self.bodies = []
        count = make_counter()
        self.input_estimates = []
        for p in spec.prompts:
            body = orjson.dumps(request_body(spec, p))
            self.bodies.append(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            self.input_estimates.append(count(_prompt_text(p)))
        self.count_tokens = count
        self.n = worker  # workers start at different prompts and keys
        self.path = _path(spec.text_path)
        self.done_marker = spec.done_marker.encode()

    def next(self) -> tuple[bytes, int]:
        """The next request's bytes and its prompt index."""
        n = self.n
        self.n = n + 1
        p = n % len(self.bodies)
        return self.heads[n % len(self.heads)] + self.bodies[p], p

    def reader(self, prompt: int) -> StreamReader:
        return StreamReader(self, prompt)


def _path(dotted: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split(".") if part)


def _get(obj: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


class StreamReader:
    """One answer, fed as it arrives: SSE events (or one JSON body) → content times, text, usage."""

    __slots__ = (
        "api",
        "bad",
        "buf",
        "crlf",
        "done",
        "done_marker",
        "error",
        "finished",
        "gaps",
        "pieces",
        "prompt",
        "retry_after",
        "stream",
        "t_first",
        "t_last",
        "usage",
        "w",
    )

    def __init__(self, workload: LlmWorkload, prompt: int) -> None:
        self.w = workload
        self.api = workload.spec.api
        self.stream = workload.spec.stream
        self.done_marker = workload.done_marker
        self.prompt = prompt
        self.buf = b""
        self.crlf: bool | None = None  # whether this server ends lines with CR LF (seen in its first bytes)
        self.done = False
        self.error: str | None = None
        self.bad = 0
        self.t_first = 0
        self.t_last = 0
        self.gaps = array("q")
        self.pieces: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.retry_after = b""
        self.finished: tuple[str | None] | None = None

    def feed(self, data: bytes, now: int) -> None:
        """Body bytes that arrived at `now` (perf_counter_ns)."""
        # The busiest path of a stream (once per token event): as few calls as it can be.
        if not self.stream:
            self.buf += data
            return
        buf = self.buf + data if self.buf else data
        if self.crlf is None:  # a server keeps its line endings: look once, not at every event
            self.crlf = b"\r" in buf
        if self.crlf:
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self.buf = events.pop()  # what follows the last complete event (b"" when the data ended one)
        for block in events:
            self._event(block, now)

    def _event(self, block: bytes, now: int) -> None:
        if block.startswith(b"data:") and block.find(b"\n") < 0:
            payload = block[5:].strip()
        else:
            lines = [ln[5:].strip() for ln in block.split(b"\n") if ln.startswith(b"data:")]
            if not lines:
                return  # a comment, an `event:` or `id:` line alone: nothing to read
            payload = b"\n".join(lines)
        if payload == self.done_marker:
            self.done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.bad += 1
            return
        text = self._extract(obj)
        if text:  # a content event: its time, and the gap since the last one
            if self.t_first:
                self.gaps.append((now - self.t_last) // 1000)
            else:
                self.t_first = now
            self.t_last = now
            self.pieces.append(text)

    def _extract(self, obj: Any) -> str | None:
        api = self.api
        if not isinstance(obj, dict):
            return None
        if api == "chat" or api == "completions":
            if obj.get("usage"):
                self.usage = obj["usage"]
            choices = obj.get("choices")
            if not choices:
                return None
            c = choices[0]
            if api == "completions":
                return c.get("text")
            delta = c.get("delta") or c.get("message") or {}
            return delta.get("content")
        if api == "dify":
            event = obj.get("event")
            if event in ("message", "agent_message"):
                return obj.get("answer")
            if event == "message_end":
                self.usage = _get(obj, ("metadata", "usage"))
                self.done = True
            elif event == "error":
                self.error = "stream_error"
                self.done = True
            return None
        text = _get(obj, self.w.path)
        return text if isinstance(text, str) else None

    def finish(self, now: int) -> str | None:
        """Close the answer; returns an error kind (stream_broken, empty_response, ...) or None.

        Only the first call reads what is left; later calls return the same verdict.
        """
        if self.finished is None:
            self.finished = (self._finish(now),)
        return self.finished[0]

    def _finish(self, now: int) -> str | None:
        if not self.stream:
            try:
                obj = orjson.loads(self.buf)
            except orjson.JSONDecodeError:
                self.bad += 1
                return "bad_response"
            if self.api == "dify" and isinstance(obj, dict):
                self.usage = _get(obj, ("metadata", "usage"))
                text = obj.get("answer")
            elif self.api == "sse":
                text = _get(obj, self.w.path)
            else:
                if isinstance(obj, dict) and obj.get("usage"):
                    self.usage = obj["usage"]
                text = _get(obj, ("choices", 0, "text" if self.api == "completions" else "message"))
                if isinstance(text, dict):
                    text = text.get("content")
            if isinstance(text, str) and text:  # the whole answer is one piece: its time is the answer's end
                self.t_first = self.t_last = now
                self.pieces.append(text)
            self.done = True
        elif self.buf.strip():
            self._event(self.buf.strip(), now)  # a last event without its blank line
        if self.error:
            return self.error
        if not self.done and self.w.done_marker:
            return "stream_broken"
        if not self.pieces:
            return "empty_response"
        return None

    def tokens(self) -> tuple[int, int, bool, int]:
        """(output tokens, input tokens, whether output came from usage, estimate - usage)."""
        usage = self.usage if isinstance(self.usage, dict) else {}
        out_u, in_u = usage.get("completion_tokens"), usage.get("prompt_tokens")
        estimate = self.w.count_tokens("".join(self.pieces))
        inputs = in_u if isinstance(in_u, int) else self.w.input_estimates[self.prompt]
        if isinstance(out_u, int):
            return out_u, inputs, True, estimate - out_u
        return estimate, inputs, False, 0
