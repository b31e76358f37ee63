"""The mock's answers with phases (reasoning, then text or a tool call) in the OpenAI chat, OpenAI Responses
and Anthropic Messages shapes, streamed and whole."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from squall.targets import mock_events as ev

# The mock's "reasoning" cycles through these (apart from the answer's WORDS, so a test can tell them apart).
THOUGHTS = (
    " let", " me", " think", " about", " this", " step", " by", " step", ":", " first", " the", " user",
    " wants", " words", ",", " so", " I", " will", " give", " them", " some", ".",
)  # fmt: skip
ARGS_OPEN, ARGS_CLOSE = '{"input": "', '"}'
SIGNATURE = "squall-mock-signature"
_RESP_ID, _MSG_ID, _RS_ID, _FC_ID, _CALL_ID = (
    "resp_squall_mock", "msg_squall_mock", "rs_squall_mock", "fc_squall_mock", "call_squall_mock"
)  # fmt: skip
_ANTHROPIC_ID, _TOOLU_ID = "msg_squall_mock", "toolu_squall_mock"


def thoughts(count: int) -> str:
    """The first `count` words of the mock's endless reasoning, joined."""
    full, rest = divmod(count, len(THOUGHTS))
    return "".join(THOUGHTS) * full + "".join(THOUGHTS[:rest])


def pieces(count: int) -> list[str]:
    """A tool call's arguments in `count` (>= 1) pieces that join into one JSON object."""
    out = [ev.WORDS[k % len(ev.WORDS)] for k in range(count)]
    out[0] = ARGS_OPEN + out[0]
    out[-1] += ARGS_CLOSE
    return out


def arguments(count: int) -> str:
    """A tool call's whole arguments (a JSON object as a string)."""
    return ARGS_OPEN + ev.text(count) + ARGS_CLOSE


class Phase(NamedTuple):
    """A run of `count` token events: `before` is written with the first (or with the opening, for the first
    phase); token k is cycle[k % len(cycle)]. With seq0 >= 0 the cycle holds unframed Responses events that
    end just before their sequence number, which is seq0 + k."""

    before: bytes
    cycle: tuple[bytes, ...]
    count: int
    seq0: int = -1


class Plan(NamedTuple):
    """A whole stream: the opening (written at once), its phases and the tail."""

    opening: bytes
    phases: list[Phase]
    tail: bytes


def _named(name: str, obj: dict[str, Any]) -> bytes:
    """One server-sent event with an event name (Responses, Anthropic)."""
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(obj))


class Builder:
    """Builds the phased streams and whole answers of one server; caches each token cycle it makes."""

    def __init__(self, model: str, created: int) -> None:
        self.model, self.created = model, created
        self._cycles: dict[tuple[Any, ...], tuple[bytes, ...]] = {}
        self._chat = {
            "id": "chatcmpl-squall-mock",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

    def _cycle(
        self, key: tuple[Any, ...], make: Any, source: tuple[str, ...], chunked: bool
    ) -> tuple[bytes, ...]:
        """Token events for every word of `source`, rotated by key[-1] (framed unless they are numbered)."""
        full = (*key, chunked)
        got = self._cycles.get(full)
        if got is None:
            shift = key[-1]
            events = [make(w) for w in source[shift:] + source[:shift]]
            got = tuple(e if key[0] == ev.RESPONSES else ev.frame(e, chunked) for e in events)
            self._cycles[full] = got
        return got

    # whole answers

    def whole(self, kind: int, count: int, think: int, tool: str | None, prompt: int) -> bytes:
        """A non-streamed answer: `think` reasoning tokens, then `count` words of text or of a tool call."""
        said = thoughts(think)
        total = think + count
        if kind == ev.CHAT:
            message: dict[str, Any] = {"role": "assistant", "content": None if tool else ev.text(count)}
            if think:
                message["reasoning_content"] = said
            if tool:
                function = {"name": tool, "arguments": arguments(count)}
                message["tool_calls"] = [{"id": _CALL_ID, "type": "function", "function": function}]
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}
            return orjson.dumps(
                {
                    "id": "chatcmpl-squall-mock",
                    "object": "chat.completion",
                    "created": self.created,
                    "model": self.model,
                    "choices": [choice],
                    "usage": chat_usage(prompt, total, think),
                }
            )
        if kind == ev.RESPONSES:
            out = _responses_output(said if think else None, count, tool)
            return orjson.dumps(self._response("completed", out, responses_usage(prompt, total, think)))
        content: list[dict[str, Any]] = []
        if think:
            content.append({"type": "thinking", "thinking": said, "signature": SIGNATURE})
        if tool:
            content.append(
                {"type": "tool_use", "id": _TOOLU_ID, "name": tool, "input": orjson.loads(arguments(count))}
            )
        else:
            content.append({"type": "text", "text": ev.text(count)})
        return orjson.dumps(
            {
                "id": _ANTHROPIC_ID,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": content,
                "stop_reason": "tool_use" if tool else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": total},
            }
        )

    def _response(self, status: str, output: list[Any], use: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": _RESP_ID,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": use,
        }

    # streams

    def stream(
        self, kind: int, count: int, think: int, tool: str | None, prompt: int, usage: bool, chunked: bool
    ) -> Plan:
        """A streamed answer with phases (chat, Responses or Anthropic), ending with the API's tail."""
        if kind == ev.CHAT:
            return self._chat_stream(count, think, tool, prompt, usage, chunked)
        if kind == ev.RESPONSES:
            return self._responses_stream(count, think, tool, prompt, chunked)
        return self._anthropic_stream(count, think, tool, prompt, chunked)

    def _chat_event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return ev.sse({**self._chat, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    def _chat_stream(
        self, count: int, think: int, tool: str | None, prompt: int, usage: bool, ch: bool
    ) -> Plan:
        f = ev.frame
        phases = []
        if think:
            make = lambda w: self._chat_event({"reasoning_content": w})  # noqa: E731
            phases.append(Phase(b"", self._cycle((ev.CHAT, "think", 0), make, THOUGHTS, ch), think))
        if tool:
            call = {
                "index": 0,
                "id": _CALL_ID,
                "type": "function",
                "function": {"name": tool, "arguments": ""},
            }
            head = f(self._chat_event({"tool_calls": [call]}), ch)
            phases += self._args(
                head,
                count,
                lambda w: self._chat_event({"tool_calls": [{"index": 0, "function": {"arguments": w}}]}),
                (ev.CHAT,),
                ch,
            )
        elif count:
            make = lambda w: self._chat_event({"content": w})  # noqa: E731
            phases.append(Phase(b"", self._cycle((ev.CHAT, "text", 0), make, ev.WORDS, ch), count))
        opening = f(self._chat_event({"role": "assistant", "content": ""}), ch)
        tail = f(self._chat_event({}, "tool_calls" if tool else "stop"), ch)
        if usage:
            tail += f(
                ev.sse({**self._chat, "choices": [], "usage": chat_usage(prompt, think + count, think)}), ch
            )
        tail += f(ev.DONE_EVENT, ch) + (ev.LAST_CHUNK if ch else b"")
        return _plan(opening, phases, tail)

    def _args(self, head: bytes, count: int, make: Any, key: tuple[Any, ...], ch: bool) -> list[Phase]:
        """A tool call's argument pieces: the first and last apart (they hold the braces), the rest cycled."""
        parts = pieces(count)
        first = ev.frame(make(parts[0]), ch)
        out = [Phase(head, (first,), 1)]
        if count > 2:
            out.append(Phase(b"", self._cycle((*key, "args", 1), make, ev.WORDS, ch), count - 2))
        if count > 1:
            out.append(Phase(b"", (ev.frame(make(parts[-1]), ch),), 1))
        return out

    def _responses_stream(self, count: int, think: int, tool: str | None, prompt: int, ch: bool) -> Plan:
        f = ev.frame
        seq = 0

        def event(name: str, **fields: Any) -> bytes:
            nonlocal seq
            seq += 1
            return f(_named(name, {"type": name, **fields, "sequence_number": seq - 1}), ch)

        def delta(name: str, **fields: Any) -> Any:
            def make(w: str) -> bytes:
                obj = {"type": name, **fields, "delta": w, "sequence_number": 0}
                return _named(name, obj)[: -len(b"0}\n\n")]

            return make

        said = thoughts(think) if think else None
        output = _responses_output(said, count, tool)
        opening = event("response.created", response=self._response("in_progress", [], None))
        opening += event("response.in_progress", response=self._response("in_progress", [], None))
        phases: list[Phase] = []
        before = b""
        index = 0
        if think:
            item = {"id": _RS_ID, "type": "reasoning", "summary": [], "content": []}
            part = {"type": "reasoning_text", "text": ""}
            ids = {"item_id": _RS_ID, "output_index": 0, "content_index": 0}
            before += event("response.output_item.added", output_index=0, item=item)
            before += event("response.content_part.added", **ids, part=part)
            make = delta("response.reasoning_text.delta", **ids)
            phases.append(
                Phase(before, self._cycle((ev.RESPONSES, "think", 0), make, THOUGHTS, ch), think, seq)
            )
            seq += think
            before = event("response.reasoning_text.done", **ids, text=said)
            before += event(
                "response.content_part.done", **ids, part={"type": "reasoning_text", "text": said}
            )
            before += event("response.output_item.done", output_index=0, item=output[0])
            index = 1
        if tool:
            item = {
                "id": _FC_ID,
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": _CALL_ID,
                "name": tool,
            }
            ids = {"item_id": _FC_ID, "output_index": index}
            before += event("response.output_item.added", output_index=index, item=item)
            make = delta("response.function_call_arguments.delta", **ids)
            parts = pieces(count)
            for text, n in ((parts[0], 1), ("", count - 2), (parts[-1], 1 if count > 1 else 0)):
                if n <= 0:
                    continue
                cycle = (
                    self._cycle((ev.RESPONSES, "args", index, 1), make, ev.WORDS, ch)
                    if not text
                    else (make(text),)
                )
                phases.append(Phase(before, cycle, n, seq))
                before, seq = b"", seq + n
            before = event("response.function_call_arguments.done", **ids, arguments=arguments(count))
        else:
            item = {
                "id": _MSG_ID,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            ids = {"item_id": _MSG_ID, "output_index": index, "content_index": 0}
            part = {"type": "output_text", "text": "", "annotations": []}
            before += event("response.output_item.added", output_index=index, item=item)
            before += event("response.content_part.added", **ids, part=part)
            make = delta("response.output_text.delta", **ids, logprobs=[])
            phases.append(
                Phase(before, self._cycle((ev.RESPONSES, "text", index, 0), make, ev.WORDS, ch), count, seq)
            )
            seq += count
            answer = ev.text(count)
            before = event("response.output_text.done", **ids, text=answer, logprobs=[])
            before += event("response.content_part.done", **ids, part={**part, "text": answer})
        before += event("response.output_item.done", output_index=index, item=output[index])
        use = responses_usage(prompt, think + count, think)
        tail = before + event("response.completed", response=self._response("completed", output, use))
        return _plan(opening, phases, tail + (ev.LAST_CHUNK if ch else b""))

    def _anthropic_stream(self, count: int, think: int, tool: str | None, prompt: int, ch: bool) -> Plan:
        f = ev.frame

        def event(name: str, **fields: Any) -> bytes:
            return f(_named(name, {"type": name, **fields}), ch)

        def delta(index: int, kind: str, field: str) -> Any:
            return lambda w: _named(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: w}},
            )

        message = {
            "id": _ANTHROPIC_ID,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": 1},
        }
        opening = event("message_start", message=message) + event("ping")
        phases: list[Phase] = []
        before, index = b"", 0
        if think:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            before = event("content_block_start", index=0, content_block=block)
            make = delta(0, "thinking_delta", "thinking")
            phases.append(
                Phase(before, self._cycle((ev.ANTHROPIC, "think", 0, 0), make, THOUGHTS, ch), think)
            )
            before = event(
                "content_block_delta", index=0, delta={"type": "signature_delta", "signature": SIGNATURE}
            )
            before += event("content_block_stop", index=0)
            index = 1
        if tool:
            block = {"type": "tool_use", "id": _TOOLU_ID, "name": tool, "input": {}}
            head = before + event("content_block_start", index=index, content_block=block)
            phases += self._args(
                head, count, delta(index, "input_json_delta", "partial_json"), (ev.ANTHROPIC, index), ch
            )
        else:
            before += event("content_block_start", index=index, content_block={"type": "text", "text": ""})
            make = delta(index, "text_delta", "text")
            phases.append(
                Phase(before, self._cycle((ev.ANTHROPIC, "text", index, 0), make, ev.WORDS, ch), count)
            )
        tail = event("content_block_stop", index=index)
        stop = {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None}
        tail += event("message_delta", delta=stop, usage={"output_tokens": think + count})
        tail += event("message_stop") + (ev.LAST_CHUNK if ch else b"")
        return _plan(opening, phases, tail)


def _plan(opening: bytes, phases: list[Phase], tail: bytes) -> Plan:
    """Fold phases of no tokens into the next (or the tail); the first one's `before` goes in the opening."""
    kept: list[Phase] = []
    carry = b""
    for p in phases:
        if p.count <= 0:
            carry += p.before
        else:
            kept.append(p._replace(before=carry + p.before))
            carry = b""
    if not kept:
        return Plan(opening + carry, [], tail)
    return Plan(opening + kept[0].before, [kept[0]._replace(before=b""), *kept[1:]], carry + tail)


def _responses_output(said: str | None, count: int, tool: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if said is not None:
        out.append(
            {
                "id": _RS_ID,
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": said}],
            }
        )
    if tool:
        out.append(
            {
                "id": _FC_ID,
                "type": "function_call",
                "status": "completed",
                "arguments": arguments(count),
                "call_id": _CALL_ID,
                "name": tool,
            }
        )
    else:
        part = {"type": "output_text", "text": ev.text(count), "annotations": []}
        out.append(
            {"id": _MSG_ID, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        )
    return out


def chat_usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    """OpenAI chat's usage object; completion counts the reasoning, detailed when there is some."""
    out: dict[str, Any] = ev.usage(prompt, completion)
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def responses_usage(prompt: int, output: int, reasoning: int) -> dict[str, Any]:
    """The Responses API's usage object; output counts the reasoning."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }
