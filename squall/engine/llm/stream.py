"""The one answer reader for every transport: SSE framing (or one JSON body) -> token times, text, reasoning,
usage."""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable
from typing import Any

import orjson

from squall.engine.llm.apis import ApiShape, Path


def loads(data: bytes) -> Any:
    """JSON as a server sends it: orjson, and the standard library for what orjson refuses but JSON allows
    (a number beyond a double's range, such as 1e400, read as infinity); ValueError when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


class Reading:
    """How a run's answers are read: their API shape, streamed or not, the text path and the end marker."""

    __slots__ = ("count_tokens", "done_marker", "must_end", "path", "read", "shape", "stream")

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
        self.must_end = bool(self.done_marker) or shape.ends_itself  # a stream that never ends so is broken


EVENT_MAX = 64 * 1024 * 1024  # bytes of one SSE line or event, or of a whole non-streamed body
TOKENS_MAX = 2**31  # a token count above this is not a count (it would overflow the counters downstream)


def token_count(value: Any) -> tuple[int | None, bool]:
    """A usage field as a token count: (count or None when there is none to use, whether it was unusable).

    A whole number outside 0..2^31 is clamped into it; a value of another type (text, float, bool) is not.
    """
    if value is None:
        return None, False
    if type(value) is not int:
        return None, True
    if 0 <= value <= TOKENS_MAX:
        return value, False
    return (0 if value < 0 else TOKENS_MAX), True


class AnswerReader:
    """One answer, fed as it arrives: SSE events (or one JSON body) -> token times, text, reasoning, usage.

    A token event is one with answer text (content, or a tool call's argument text) or reasoning text:
    `t_first` is the first of any kind, `t_answer` the first with answer text, `gaps` every gap between
    token events of any kind. A transport calls feed(data, now_ns) with body bytes as they arrive and sets
    `retry_after` from the header of that name (bytes or str); the recorder calls finish(done_ns), tokens()
    and reasoning_tokens(). Nothing a server sends makes them raise: what squall can't use is counted (`bad`
    events, `bad_usage` fields).
    """

    __slots__ = (
        "bad",
        "bad_usage",
        "cr",
        "data",
        "data_n",
        "done",
        "done_marker",
        "error",
        "finished",
        "gaps",
        "held",
        "held_n",
        "how",
        "input_tokens",
        "path",
        "pieces",
        "read",
        "retry_after",
        "skip",
        "stream",
        "t_answer",
        "t_first",
        "t_last",
        "thought_estimate",
        "thoughts",
        "token_counts",
        "usage",
    )

    def __init__(self, how: Reading, input_tokens: int) -> None:
        self.how = how
        self.read = how.read  # the shape's ApiShape.read, bound once: one call per event
        self.path = how.path
        self.stream = how.stream
        self.done_marker = how.done_marker
        self.input_tokens = input_tokens
        self.held: list[bytes] = []  # a line not yet ended (streamed), or the body so far (not streamed)
        self.held_n = 0  # bytes in `held`; beyond EVENT_MAX they are dropped (memory stays bounded)
        self.skip = False  # the rest of a line too long to read is dropped, up to its line end
        self.data: list[bytes] = []  # the `data:` values of the event not yet ended
        self.data_n = 0  # bytes in `data`; an event beyond EVENT_MAX is dropped and counted
        self.cr = False  # the last bytes fed ended in CR: a LF opening the next ones ends no other line
        self.done = False
        self.error: str | None = None
        self.bad = 0
        self.bad_usage = 0
        self.t_first = 0  # the first token event's arrival (answer or reasoning)
        self.t_answer = 0  # the first answer token's (content or tool-call text)
        self.t_last = 0
        self.gaps = array("q")
        self.pieces: list[str] = []  # the answer text as received
        self.thoughts: list[str] = []  # the reasoning text as received (not part of the answer's text)
        self.thought_estimate = -1  # the reasoning text's token estimate, once counted
        self.usage: dict[str, Any] | None = None
        # (output, input, reasoning) tokens from the usage, once settled
        self.token_counts: tuple[int | None, int | None, int | None] = (None, None, None)
        self.retry_after: bytes | str = b""
        self.finished: tuple[str | None] | None = None

    def feed(self, data: bytes, now: int) -> None:
        """Body bytes that arrived at `now` (perf_counter_ns)."""
        # The busiest path of a stream (once per token event): as few calls as it can be. Each byte is
        # looked at a bounded number of times (a line or an event split over many reads is joined once, when
        # it ends), so a 50 MB event costs what 50 MB of small ones do.
        if not self.stream:
            if self.held_n <= EVENT_MAX:
                self.held.append(data)
                self.held_n += len(data)
            return
        if self.cr or self.held or self.data or b"\r" in data:
            self._lines(data, now)
        elif data.startswith(b"data:") and data.find(b"\n") == len(data) - 2 and data.endswith(b"\n\n"):
            self._payload(data[5:].strip(), now)  # one whole one-line event, nothing held: the usual read
        else:
            self._lines(data, now)

    def _lines(self, data: bytes, now: int) -> None:
        if self.cr:
            if not data:
                return
            self.cr = False
            if data[0] == 10:  # the LF of a CR LF split between two reads
                data = data[1:]
        if b"\r" in data:  # CR LF, LF and CR all end a line, mixed as they come
            self.cr = data[-1] == 13
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            held = self.held
            if self.skip:  # the end of a line too long to read
                self.skip = False
                del lines[0]
            elif held:
                held.append(lines[0])
                lines[0] = b"".join(held)
                self.held = []
                self.held_n = 0
            for line in lines:
                if line:
                    if line.startswith(b"data:"):
                        self.data.append(line[5:])
                        self.data_n += len(line)
                    elif line.startswith(b"\xef\xbb\xbfdata:"):  # (a byte order mark opening the stream)
                        self.data.append(line[8:])
                    if self.data_n > EVENT_MAX:  # an event of endless `data:` lines: dropped, counted
                        self.data = []
                        self.data_n = 0
                        self.bad += 1
                    # (a comment, `event:`, `id:` or `retry:` line: nothing to read)
                elif self.data:
                    self._event(now)
        if rest and not self.skip:
            self.held.append(rest)
            self.held_n += len(rest)
            if self.held_n > EVENT_MAX:  # one line larger than any event: dropped, counted, not held
                self.held = []
                self.held_n = 0
                self.skip = True
                self.bad += 1

    def _event(self, now: int) -> None:
        data = self.data
        self.data = []
        self.data_n = 0
        self._payload((data[0] if len(data) == 1 else b"\n".join(data)).strip(), now)

    def _payload(self, payload: bytes, now: int) -> None:
        if not payload:
            return  # an empty `data:` (a heartbeat): no event
        if payload == self.done_marker:
            self.done = True
            return
        try:
            obj = loads(payload)
            text, usage, end, reasoning = self.read(obj, self.path)
        except Exception:  # not JSON, or shaped wrong (BadEvent): this event is lost, the stream goes on
            self.bad += 1
            return
        if usage is not None:
            self._usage(usage)
        if end is not None:
            self.done = True
            if end:
                self.error = end
        if reasoning is None:  # (the usual event: answer text or nothing)
            if type(text) is str:
                if text:  # an answer token: its time, and the gap since the last token of any kind
                    if self.t_answer:
                        self.gaps.append((now - self.t_last) // 1000)
                    else:
                        self._first_answer(now)
                    self.t_last = now
                    self.pieces.append(text)
            elif text is not None:
                self.bad += 1
            return
        self._reasoning(text, reasoning, now)

    def _first_answer(self, now: int) -> None:
        """The first answer token, at `now`: the first token too, unless reasoning came before it."""
        if self.t_first:
            self.gaps.append((now - self.t_last) // 1000)
        else:
            self.t_first = now
        self.t_answer = now

    def _reasoning(self, text: Any, reasoning: Any, now: int) -> None:
        """An event with reasoning (and maybe answer text): one token event when either is there."""
        answer = thought = False
        if type(reasoning) is not str:
            self.bad += 1
        elif reasoning:
            self.thoughts.append(reasoning)
            thought = True
        if type(text) is str:
            if text:
                self.pieces.append(text)
                answer = True
        elif text is not None:
            self.bad += 1
        if answer or thought:
            if self.t_first:
                self.gaps.append((now - self.t_last) // 1000)
            else:
                self.t_first = now
            if answer and not self.t_answer:
                self.t_answer = now
            self.t_last = now

    def _usage(self, usage: Any) -> None:
        # Merged, not replaced: an API may give the usage in parts (Anthropic: the input in message_start,
        # the output in message_delta); a later value of a field replaces the earlier one.
        if isinstance(usage, dict):
            if usage:
                if self.usage is None:
                    self.usage = usage
                else:  # (the event's own parsed dict: updated in place, no copy per event)
                    self.usage.update(usage)
        elif usage:  # (an empty value is no usage; anything else not an object is unusable)
            self.bad_usage += 1

    def finish(self, now: int) -> str | None:
        """Close the answer; returns an error kind (stream_broken, empty_response, ...) or None.

        Only the first call reads what is left; later calls return the same verdict.
        """
        if self.finished is None:
            self.finished = (self._finish(now),)
        return self.finished[0]

    def _finish(self, now: int) -> str | None:
        if not self.stream:
            if self.held_n > EVENT_MAX:  # too large to be an answer squall reads
                self.held = []
                self.bad += 1
                return "bad_response"
            body = b"".join(self.held)
            self.held = []
            try:
                text, usage, reasoning = self.how.shape.final(loads(body), self.path)
            except Exception:  # not JSON, or shaped wrong (BadEvent)
                self.bad += 1
                return "bad_response"
            if usage is not None:
                self._usage(usage)
            for got, into in ((reasoning, self.thoughts), (text, self.pieces)):
                if type(got) is str and got:  # the whole answer is one piece: its time is the answer's end
                    self.t_first = self.t_last = now
                    into.append(got)
                elif got is not None and type(got) is not str:
                    self.bad += 1
            if self.pieces:
                self.t_answer = now
            self.done = True
        else:
            if self.held and not self.skip:  # a last line without its line end
                line = b"".join(self.held)
                self.held = []
                if line.startswith(b"data:"):
                    self.data.append(line[5:])
            if self.data:  # a last event without its blank line
                self._event(now)
        self._settle_usage()
        if self.error:
            return self.error
        if not self.done and self.how.must_end:
            return "stream_broken"
        if not self.pieces and not self.thoughts:  # (reasoning alone, cut by max_tokens, is an answer)
            return "bad_response" if self.bad else "empty_response"
        return None

    def _settle_usage(self) -> None:
        usage = self.usage
        if usage is None:
            return
        out, bad_out = token_count(usage.get("completion_tokens"))
        inp, bad_in = token_count(usage.get("prompt_tokens"))
        given = usage.get("reasoning_tokens")
        if given is None:  # (OpenAI's own place for it)
            details = usage.get("completion_tokens_details")
            given = details.get("reasoning_tokens") if type(details) is dict else None
        thought, bad_thought = token_count(given)
        self.bad_usage += bad_out + bad_in + bad_thought
        self.token_counts = (out, inp, thought)

    def text(self) -> str:
        """The answer's text so far, as received (content and tool-call text; never the reasoning)."""
        return "".join(self.pieces)

    def reasoning(self) -> str:
        """The reasoning text so far, as received."""
        return "".join(self.thoughts)

    def events(self) -> int:
        """Token events read so far, of any kind (a server streams a token an event): how far a stream has
        come, for --cancel-rate."""
        return len(self.gaps) + 1 if self.t_first else 0

    def tokens(self) -> tuple[int, int, bool, int]:
        """(output tokens, input tokens, whether output came from usage, estimate - usage), once finished.

        Output tokens are the usage's completion_tokens as the server counts them (OpenAI, the Responses and
        Messages APIs count the reasoning in), else the estimate of the answer's and the reasoning's text.
        """
        out, inp, _ = self.token_counts
        estimate = self.how.count_tokens("".join(self.pieces)) + self._thought_estimate()
        inputs = self.input_tokens if inp is None else inp
        if out is not None:
            return out, inputs, True, estimate - out
        return estimate, inputs, False, 0

    def reasoning_tokens(self) -> int:
        """The answer's reasoning tokens, once finished: the usage's reasoning_tokens when the server gives
        them, else the estimate of the reasoning text (0 without any)."""
        thought = self.token_counts[2]
        return thought if thought is not None else self._thought_estimate()

    def _thought_estimate(self) -> int:
        if self.thought_estimate < 0:
            self.thought_estimate = self.how.count_tokens("".join(self.thoughts)) if self.thoughts else 0
        return self.thought_estimate
