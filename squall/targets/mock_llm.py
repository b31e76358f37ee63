"""A mock LLM server (OpenAI chat, completions and Responses, Anthropic Messages, Dify): timed SSE streams
with reasoning and tool-call phases, injected faults, a log of what it received, send records."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, NamedTuple, cast

import httptools
import orjson

from squall.targets import mock_apis as apis
from squall.targets import mock_events as ev
from squall.targets import mock_metrics
from squall.targets.mock_generation import Mock, Reply, Stream
from squall.targets.mock_options import MockOptions, MockState
from squall.targets.thread import TargetThread, close_server, serve_until_signal

MAX_BODY = 8 * 1024 * 1024
MAX_RECORDS = 100_000
MAX_QUEUED = 64
_PATHS = {
    b"/v1/chat/completions": ev.CHAT,
    b"/v1/completions": ev.COMPLETIONS,
    b"/v1/chat-messages": ev.DIFY,
    b"/v1/responses": ev.RESPONSES,
    b"/v1/messages": ev.ANTHROPIC,
}
_PHASED = (ev.CHAT, ev.RESPONSES, ev.ANTHROPIC)  # the APIs with reasoning and tool calls
_JSON = b"application/json"
_ROUTES = (
    "POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages or /v1/chat-messages; "
    "GET /v1/models; GET or DELETE /v1/received; GET /metrics"
)
_INJECTED = {
    "fail_429": (429, "Rate limit reached (injected by the squall mock)", "requests", "rate_limit_exceeded"),
    "fail_500": (500, "Internal error (injected by the squall mock)", "server_error", "internal_error"),
}


class _Request(NamedTuple):
    method: bytes
    path: bytes
    body: bytes
    keep_alive: bool
    http11: bool


def _connection(http11: bool, close: bool) -> bytes:
    return b"Connection: close\r\n" if close else (b"" if http11 else b"Connection: keep-alive\r\n")


class _MockProtocol(asyncio.Protocol):
    """One client connection: parse with httptools, answer its requests one after another."""

    def __init__(self, mock: Mock) -> None:
        self.mock = mock
        self._parser = httptools.HttpRequestParser(self)
        self._url, self._body, self._size = b"", bytearray(), 0
        self._queue: deque[_Request] = deque()
        self._busy = False  # a response is on the wheel, streaming, or hanging
        self._closing = False  # read and answer nothing more
        self._close_after = False  # close when the current stream ends
        self._paused = False  # reading paused because too many requests are queued
        self.waiting = False  # a request waits behind --max-running (in the mock's queue)
        self.stream: Stream | None = None
        self.transport: asyncio.Transport | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        self.mock.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.mock.state
        state.connections.discard(self)
        if self.waiting:
            self.waiting = False
            state.waiting -= 1
        self._drop_stream()
        self._closing, self.transport = True, None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # the request itself is queued; we never switch protocols
            self._closing = True
            if not self._busy and self.transport is not None:
                self.transport.close()
        except httptools.HttpParserError as exc:
            self._fatal(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closing and not self._paused:
            self.transport.resume_reading()

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fatal(413, f"the request body is over {MAX_BODY} bytes")
        elif not self._closing:
            self._body += body

    def on_message_complete(self) -> None:
        if self._closing:
            return
        p, path = self._parser, self._url.split(b"?", 1)[0]
        http11 = p.get_http_version() != "1.0"
        req = _Request(p.get_method(), path, bytes(self._body), p.should_keep_alive(), http11)
        self._url, self._body, self._size = b"", bytearray(), 0
        self._queue.append(req)
        if len(self._queue) >= MAX_QUEUED and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._pump()

    # responses

    def _pump(self) -> None:
        queue = self._queue
        while queue and not self._busy and not self._closing:
            self._answer(queue.popleft())
        if self._paused and len(queue) < MAX_QUEUED // 2 and not self._closing and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _drop_stream(self) -> None:
        stream = self.stream
        if stream is not None:
            self.stream = None
            mock = self.mock
            mock.state.streams_open -= 1
            mock.state.metrics.generation_tokens += stream.i
            mock.release()

    def _fatal(self, code: int, message: str) -> None:
        """Answer what cannot be read (unless a response is under way, which is cut short) and close."""
        if self._closing or self.transport is None:
            return
        if not self._busy:
            self._send(code, ev.error_body(message, "invalid_request_error", "bad_request"), True, True)
        self._drop_stream()
        self._closing = True
        self.transport.close()

    def _send(self, code: int, body: bytes, http11: bool, close: bool, extra: bytes = b"") -> None:
        self._send_raw(ev.head(code, _JSON, _connection(http11, close), len(body), extra) + body, close)

    def _send_raw(self, payload: bytes, close: bool) -> None:
        if self.transport is not None:
            self.transport.write(payload)
            if close:
                self._closing = True
                self.transport.close()

    def _error(
        self, req: _Request, code: int, message: str, kind: str, why: str, extra: bytes = b"", api: int = -1
    ) -> None:
        body = ev.anthropic_error(code, message) if api == ev.ANTHROPIC else ev.error_body(message, kind, why)
        self._send(code, body, req.http11, not req.keep_alive, extra)

    def _received(self, req: _Request) -> None:
        """GET /v1/received: the bodies received, oldest first; DELETE forgets them."""
        received = self.mock.state.received
        if req.method == b"DELETE":
            received.clear()
        self._send(200, orjson.dumps(list(received)), req.http11, not req.keep_alive)

    def _answer(self, req: _Request) -> None:
        mock = self.mock
        mock.state.requests += 1
        kind = _PATHS.get(req.path)
        if req.method == b"GET" and req.path == b"/v1/models":
            self._send(200, mock.models, req.http11, not req.keep_alive)
            return
        if req.path == b"/v1/received" and req.method in (b"GET", b"DELETE"):
            self._received(req)
            return
        if req.path == b"/metrics" and req.method == b"GET":
            body, close = mock.metrics(), not req.keep_alive
            head = ev.head(200, mock_metrics.CONTENT_TYPE, _connection(req.http11, close), len(body))
            self._send_raw(head + body, close)
            return
        if kind is None or req.method != b"POST":
            known = kind is not None or req.path in (b"/v1/models", b"/v1/received", b"/metrics")
            code, why = (405, "method_not_allowed") if known else (404, "not_found")
            target = f"{req.method.decode()} {req.path.decode(errors='replace')[:200]}"
            self._error(req, code, f"no route for {target}; try {_ROUTES}", "invalid_request_error", why)
            return
        try:
            parsed = orjson.loads(req.body)
            asked = ev.ask(kind, parsed)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError too
            bad_json = isinstance(exc, orjson.JSONDecodeError)
            message = f"request body is not valid JSON: {exc}" if bad_json else str(exc)
            why = "bad_json" if bad_json else "invalid_value"
            self._error(req, 400, message, "invalid_request_error", why, api=kind)
            return
        mock.state.received.append(parsed)
        fault = mock.fault()
        if fault in _INJECTED:
            code, message, err_type, why = _INJECTED[fault]
            retry = b"Retry-After: 1\r\n" if code == 429 else b""
            self._error(req, code, message, err_type, why, retry, api=kind)
            return
        self._busy = True
        if fault == "hang":  # keep the connection open, read nothing more, never answer
            self._closing = True
            return
        came, state = perf_counter_ns(), mock.state
        if mock.opts.max_running and state.running >= mock.opts.max_running:
            self.waiting = True
            state.waiting += 1
            state.queue.append((self, (req, kind, asked, fault, came)))
            return
        self.generate(req, kind, asked, fault, came)

    def generate(self, req: _Request, kind: int, asked: ev.Asked, fault: str | None, came: int) -> None:
        """Start generating the answer to `req` (now, or when --max-running lets it in)."""
        mock = self.mock
        mock.state.running += 1
        mock.state.metrics.prompt_tokens += asked.prompt
        arrival = perf_counter_ns()
        count = 0 if fault == "empty" else mock.count(asked.cap, asked.exact, asked.least)
        think = tool = None
        if kind in _PHASED:
            think = mock.thinking(asked.think) if fault != "empty" else 0
            tool = (asked.tool or (ev.DEFAULT_TOOL if mock.opts.tool_calls else None)) if count else None
        phased = kind in _PHASED and (think or tool or kind != ev.CHAT)
        if asked.stream:
            self._start_stream(
                req, kind, count, asked, fault, arrival, (think or 0, tool) if phased else None, came
            )
            return
        close = not req.keep_alive or fault == "drop_mid_stream"
        body = b"{not json"
        if fault != "bad_chunk":
            if phased:
                body = mock.builder.whole(kind, count, think or 0, tool, asked.prompt)
            else:
                body = ev.body(kind, mock.opts.model, mock.created, count, asked.prompt)
        payload = ev.head(200, _JSON, _connection(req.http11, close), len(body)) + body
        if fault == "drop_mid_stream":  # half the body, then the connection closes
            payload = payload[: len(payload) - len(body) // 2]
        tokens = count + (think or 0)
        whole = mock.ttft_ns + max(tokens - 1, 0) * mock.itl_ns
        generation = mock.delay(whole)
        first = generation * mock.ttft_ns // whole if whole else 0  # the first token's share of it
        ttft_s = (arrival - came + first) / 1e9
        reply = Reply(self, payload, close, came, tokens, ttft_s, fault != "drop_mid_stream")
        mock.wheel.add(reply, arrival + generation)

    def _start_stream(
        self,
        req: _Request,
        kind: int,
        count: int,
        asked: ev.Asked,
        fault: str | None,
        arrival: int,
        phased: tuple[int, str | None] | None,
        came: int,
    ) -> None:
        # The head and the opening event go now (time to first byte < time to first token, as real servers).
        # HTTP/1.0 has no chunked encoding: there the stream is raw SSE that ends when the connection closes.
        mock, chunked = self.mock, req.http11
        if phased is None:  # chat without reasoning or tools, completions, Dify: pre-built events
            events = mock.events[kind][chunked]
            phases = [apis.Phase(b"", events.tokens, count)] if count else []
            opening, tail = events.opening, events.tail(asked.prompt, count, asked.usage)
        else:
            think, tool = phased
            plan = mock.builder.stream(kind, count, think, tool, asked.prompt, asked.usage, chunked)
            opening, phases, tail = plan
            count += think
        stream = Stream(self, phases, count, tail, arrival, chunked, came)
        if fault == "drop_mid_stream":
            stream.drop_at = count // 2
        elif fault == "bad_chunk":
            stream.bad_at, stream.bad = count // 2, ev.frame(ev.BAD_EVENT, chunked)
        if mock.opts.record_sends and len(mock.state.sends) < MAX_RECORDS:
            stream.record = []
        self.stream, self._close_after = stream, not (req.keep_alive and req.http11)
        mock.state.streams_open += 1
        connection = _connection(req.http11, self._close_after)
        if self.transport is not None:
            head = ev.head(200, b"text/event-stream", connection, -1 if req.http11 else None)
            self.transport.write(head + opening)
        stream.due += mock.delay(mock.ttft_ns)
        mock.wheel.add(stream, stream.due)

    def end_stream(self, dropped: bool) -> None:
        """The current stream wrote its tail, or stops here without one (and the connection closes)."""
        stream, state = self.stream, self.mock.state
        if stream is None:
            return
        self._drop_stream()
        if not dropped:
            state.metrics.success += 1
            state.metrics.e2e.observe((perf_counter_ns() - stream.came) / 1e9)
        if stream.record is not None and not dropped and len(state.sends) < MAX_RECORDS:
            state.arrivals.append(stream.came)
            state.sends.append(stream.record)
        self.finish(dropped or self._close_after)

    def finish(self, close: bool) -> None:
        """The response under way is complete: close, or answer the next queued request."""
        self._busy = False
        if (close or self._closing) and self.transport is not None:
            self._closing = True
            self.transport.close()
        else:
            self._pump()


async def start_mock(opts: MockOptions, state: MockState | None = None) -> asyncio.Server:
    """Bind and start serving on the running loop; port 0 picks a free port."""
    mock = Mock(opts, state if state is not None else MockState(), asyncio.get_running_loop())
    return await asyncio.get_running_loop().create_server(
        lambda: _MockProtocol(mock), opts.host, opts.port, reuse_address=True, backlog=4096
    )


async def _shutdown(server: asyncio.Server, state: MockState) -> None:
    await close_server(server, state.connections)


def serve_mock(opts: MockOptions, ready: Callable[[int], None] | None = None) -> None:
    """Serve on uvloop until SIGINT or SIGTERM, calling ready(port) once listening."""
    state = MockState()
    serve_until_signal(lambda: start_mock(opts, state), lambda server: _shutdown(server, state), ready)


class MockThread(TargetThread):
    """The mock on 127.0.0.1 (ephemeral port) in a daemon thread, for tests.

    Takes MockOptions, or their fields as keywords: `MockThread(ttft_s=0.02, itl_s=0.005, fail_429=1.0)`.
    """

    def __init__(self, opts: MockOptions | None = None, **fields: float | int | str | bool) -> None:
        base = opts if opts is not None else MockOptions()
        chosen = dataclasses.replace(base, **fields, host="127.0.0.1", port=0)  # type: ignore[arg-type]
        self.state = MockState(chosen.keep_received)
        super().__init__(
            lambda: start_mock(chosen, self.state),
            lambda server: _shutdown(server, self.state),
            "squall-mock-llm",
        )

    def __enter__(self) -> MockThread:
        super().__enter__()
        return self

    @property
    def received(self) -> list[Any]:
        """The parsed JSON bodies of the last `keep_received` generation requests, oldest first."""
        return list(self.state.received.copy())  # a copy is taken in one step: the server thread may append
