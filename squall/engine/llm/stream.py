"""The one answer reader for every transport: SSE framing (or one JSON body) -> content times, text, usage."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import orjson

from squall.engine.llm.apis import ApiShape, Path


class Reading:
    """How a run's answers are read: their API shape, streamed or not, the text path and the end marker."""

    __slots__ = ("count_tokens", "done_marker", "path", "read", "shape", "stream")

    def __init__(
        self,
        shape: ApiShape,
        stream: bool,
        count_tokens: Callable[[str], int],
        path: Path = (),
        done_marker: str | None = None,
    ) -> None:
        self.shape = shape
        self.read = shape.read
        self.stream = stream
        self.count_tokens = count_tokens
        self.path = path
        self.done_marker = (shape.done_marker if done_marker is None else done_marker).encode()


class AnswerReader:
    """One answer, fed as it arrives: SSE events (or one JSON body) -> content times, text, usage.

    A transport calls feed(data, now_ns) with body bytes as they arrive and sets `retry_after` from the
    header of that name; the recorder calls finish(done_ns) and tokens().
    """

    __slots__ = (
        "bad",
        "buf",
        "crlf",
        "done",
        "done_marker",
        "error",
        "finished",
        "gaps",
        "how",
        "input_tokens",
        "path",
        "pieces",
        "read",
        "retry_after",
        "stream",
        "t_first",
        "t_last",
        "usage",
    )

    def __init__(self, how: Reading, input_tokens: int) -> None:
        self.how = how
        self.read = how.read  # the shape's ApiShape.read, bound once: one call per event
        self.path = how.path
        self.stream = how.stream
        self.done_marker = how.done_marker
        self.input_tokens = input_tokens
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
        if not isinstance(obj, dict):
            return
        text, usage, end = self.read(obj, self.path)
        if usage is not None:
            self.usage = usage
        if end is not None:
            self.done = True
            if end:
                self.error = end
        if text:  # a content event: its time, and the gap since the last one
            if self.t_first:
                self.gaps.append((now - self.t_last) // 1000)
            else:
                self.t_first = now
            self.t_last = now
            self.pieces.append(text)

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
            text, usage = self.how.shape.final(obj, self.path)
            if usage:
                self.usage = usage
            if isinstance(text, str) and text:  # the whole answer is one piece: its time is the answer's end
                self.t_first = self.t_last = now
                self.pieces.append(text)
            self.done = True
        elif self.buf.strip():
            self._event(self.buf.strip(), now)  # a last event without its blank line
        if self.error:
            return self.error
        if not self.done and self.done_marker:
            return "stream_broken"
        if not self.pieces:
            return "empty_response"
        return None

    def text(self) -> str:
        """The answer's text so far."""
        return "".join(self.pieces)

    def tokens(self) -> tuple[int, int, bool, int]:
        """(output tokens, input tokens, whether output came from usage, estimate - usage)."""
        usage = self.usage if isinstance(self.usage, dict) else {}
        out_u, in_u = usage.get("completion_tokens"), usage.get("prompt_tokens")
        estimate = self.how.count_tokens("".join(self.pieces))
        inputs = in_u if isinstance(in_u, int) else self.input_tokens
        if isinstance(out_u, int):
            return out_u, inputs, True, estimate - out_u
        return estimate, inputs, False, 0
