"""A small, fast HTTP/1.1 target server for load tests (uvloop + httptools)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

import httptools
import orjson

from squall.targets.thread import TargetThread, close_server, serve_until_signal

DEFAULT_BODY = b"Hello, world"
MAX_BYTES = 10 * 1024 * 1024
MAX_DELAY_MS = 600_000

# Connection header per mode: 0 = close, 1 = HTTP/1.1 keep-alive (implicit), 2 = HTTP/1.0 keep-alive.
_CONNECTION = (b"Connection: close\r\n", b"", b"Connection: keep-alive\r\n")
_LINGER_RESET = struct.pack("ii", 1, 0)
_ROUTES = (b"/status/", b"/delay/", b"/bytes/", b"/close", b"/reset", b"/echo", b"/slots/", b"/metrics")
MAX_SLOTS = 100_000


@dataclass(frozen=True)
class ServeOptions:
    """Where the target listens and how long it waits before every response."""

    host: str = "127.0.0.1"
    port: int = 8080
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535 (0 picks a free port), got {self.port}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be 0 or more seconds, got {self.delay_s}")


class ServeState:
    """Per-server bookkeeping: responses written so far, the open connections, the /slots/ pools."""

    __slots__ = ("connections", "echoed", "requests_served", "slots", "slowed")

    def __init__(self) -> None:
        self.requests_served: int = 0
        self.echoed: int = 0
        self.slowed: int = 0  # requests that carried ?slow_every= so far
        self.connections: set[_HttpProtocol] = set()
        self.slots: dict[tuple[int, int], _Slots] = {}


class _Slots:
    """One /slots/N/MS pool: at most `n` answers in service at once, each `service_s` long; the others
    wait in arrival order (FIFO), across every connection. Throughput tops out at n / service_s."""

    __slots__ = ("busy", "n", "service_s", "waiting")

    def __init__(self, n: int, service_s: float) -> None:
        self.n, self.service_s, self.busy = n, service_s, 0
        self.waiting: deque[tuple[_HttpProtocol, _Pending]] = deque()

    def admit(self, proto: _HttpProtocol, pending: _Pending) -> None:
        if self.busy < self.n:
            self._serve(proto, pending)
        else:
            self.waiting.append((proto, pending))

    def _serve(self, proto: _HttpProtocol, pending: _Pending) -> None:
        self.busy += 1
        pending.due = time.monotonic() + self.service_s
        pending.timer = asyncio.get_running_loop().call_later(self.service_s, self._served, proto, pending)

    def _served(self, proto: _HttpProtocol, pending: _Pending) -> None:
        left = pending.due - time.monotonic()
        if left > 0.0:  # an early timer (see _HttpProtocol._ready): the service is not over yet
            pending.timer = asyncio.get_running_loop().call_later(left, self._served, proto, pending)
            return
        self.busy -= 1
        while self.waiting:  # the next waiting request whose connection is still open
            nxt, waiting = self.waiting.popleft()
            if nxt.transport is not None:
                self._serve(nxt, waiting)
                break
        proto._ready(pending)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _response(code: int, body: bytes, head: bool, mode: int) -> bytes:
    lines = f"HTTP/1.1 {code} {_phrase(code)}\r\nContent-Type: text/plain\r\n".encode()
    if code not in (204, 304):
        lines += b"Content-Length: %d\r\n" % len(body)
    else:
        body = b""
    return lines + _CONNECTION[mode] + b"\r\n" + (b"" if head else body)


# Pre-built default responses, indexed [head][mode].
_DEFAULT = tuple(
    tuple(_response(200, DEFAULT_BODY, head, mode) for mode in range(3)) for head in (False, True)
)


def _metrics(state: ServeState, head: bool, mode: int) -> bytes:
    """GET /metrics: the server's own counters in the Prometheus text format (read once per scrape)."""
    busy = sum(pool.busy for pool in state.slots.values())
    waiting = sum(len(pool.waiting) for pool in state.slots.values())
    rows = (
        ("squall_serve_requests_total", "counter", "Responses written.", state.requests_served),
        ("squall_serve_connections", "gauge", "Open client connections.", len(state.connections)),
        ("squall_serve_slots_busy", "gauge", "Requests in service in /slots/ pools.", busy),
        ("squall_serve_slots_waiting", "gauge", "Requests waiting for a /slots/ pool.", waiting),
    )
    text = "".join(f"# HELP {n} {h}\n# TYPE {n} {t}\n{n} {v}\n" for n, t, h, v in rows).encode()
    lines = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
    lines += b"Content-Length: %d\r\n" % len(text) + _CONNECTION[mode] + b"\r\n"
    return lines + (b"" if head else text)


def _bad(why: str, head: bool, mode: int) -> tuple[bytes, float, bool, bool]:
    return _response(400, why.encode(), head, mode), 0.0, mode == 0, False


def _digits(raw: bytes, name: str, limit: int) -> int:
    if not raw.isdigit() or len(raw) > 12 or int(raw) > limit:
        raise ValueError(f"{name} must be an integer from 0 to {limit}, got {raw.decode(errors='replace')!r}")
    return int(raw)


def _route(
    url: bytes, head: bool, mode: int, delay_s: float, state: ServeState
) -> tuple[bytes, float, bool, bool]:
    """Answer one request: (response bytes, delay in seconds, close after, reset instead)."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return _bad(f"invalid request target {url[:100]!r}", head, mode)
    path: bytes = parsed.path or b"/"
    query: bytes | None = parsed.query
    try:
        if query:
            every, slow_s = 0, 0.0
            for part in query.split(b"&"):
                if part.startswith(b"delay_ms="):
                    delay_s += _digits(part[9:], "delay_ms", MAX_DELAY_MS) / 1000
                elif part.startswith(b"slow_every="):
                    every = _digits(part[11:], "slow_every", 1_000_000)
                elif part.startswith(b"slow_ms="):
                    slow_s = _digits(part[8:], "slow_ms", MAX_DELAY_MS) / 1000
            if every:  # a tail: every Nth such request on this server waits slow_ms more
                state.slowed += 1
                if state.slowed % every == 0:
                    delay_s += slow_s
        if path.startswith(b"/status/"):
            code = _digits(path[8:], "/status/{code}", 599)
            if code < 200:
                raise ValueError(f"/status/{{code}} must be from 200 to 599, got {code}")
            return _response(code, f"{code} {_phrase(code)}".encode(), head, mode), delay_s, mode == 0, False
        if path.startswith(b"/delay/"):
            delay_s += _digits(path[7:], "/delay/{ms}", MAX_DELAY_MS) / 1000
        elif path.startswith(b"/bytes/"):
            size = _digits(path[7:], "/bytes/{n}", MAX_BYTES)
            return _response(200, b"x" * size, head, mode), delay_s, mode == 0, False
        elif path == b"/close":
            return _DEFAULT[head][0], delay_s, True, False
        elif path == b"/reset":
            return b"", delay_s, True, True
        elif path == b"/metrics":
            return _metrics(state, head, mode), 0.0, mode == 0, False
    except ValueError as exc:
        return _bad(str(exc), head, mode)
    return _DEFAULT[head][mode], delay_s, mode == 0, False


@dataclass(slots=True)
class _Pending:
    """A response waiting for its delay or for an earlier response (keeps pipelined replies in order)."""

    payload: bytes
    close: bool
    reset: bool
    ready: bool
    timer: asyncio.TimerHandle | None = None
    due: float = 0.0  # time.monotonic() when the delay is over
    slot: bool = False  # in a /slots/ pool: its timer must run even if the connection goes, to free the slot


class _HttpProtocol(asyncio.Protocol):
    """One client connection: parse with httptools, answer in request order."""

    def __init__(self, state: ServeState, delay_s: float) -> None:
        self._state = state
        self._delay_s = delay_s
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._echo: dict[str, object] | None = None  # /echo: what the request carried
        self._queue: deque[_Pending] = deque()
        self._closing = False
        self.transport: asyncio.Transport | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        self._state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        self._closing = True
        self.transport = None
        for pending in self._queue:
            if pending.timer is not None and not pending.slot:
                pending.timer.cancel()
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The upgrade request itself was answered in on_message_complete; we never switch protocols.
            self._close_after_pending()
        except httptools.HttpParserError as exc:
            if not self._closing:  # garbage after a request that already closes the connection is ignored
                self._enqueue(_bad(f"malformed HTTP request: {exc}", False, 0)[0], 0.0, True, False)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    # httptools callbacks

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._url.startswith(b"/echo"):
            if self._echo is None:
                self._echo = {"headers": {}, "body": b""}
            self._echo["headers"][name.decode("latin-1").lower()] = value.decode("latin-1")  # type: ignore[index]

    def on_body(self, body: bytes) -> None:
        if self._url.startswith(b"/echo"):
            if self._echo is None:
                self._echo = {"headers": {}, "body": b""}
            self._echo["body"] += body  # type: ignore[operator]

    def on_message_complete(self) -> None:
        if self._closing:
            return
        parser = self._parser
        url, self._url = self._url, b""
        mode = (2 if parser.get_http_version() == "1.0" else 1) if parser.should_keep_alive() else 0
        head = parser.get_method() == b"HEAD"
        # Fast path: a plain path that names no route gets the pre-built default without parse_url.
        if self._delay_s == 0.0 and url[:1] == b"/" and b"?" not in url and not url.startswith(_ROUTES):
            payload, delay_s, close, reset = _DEFAULT[head][mode], 0.0, mode == 0, False
        elif url.startswith(b"/echo"):
            echo, self._echo = self._echo or {"headers": {}, "body": b""}, None
            payload, delay_s, close, reset = self._echoed(url, parser, echo, head, mode)
        elif url.startswith(b"/slots/"):
            self._slotted(url, head, mode)
            return
        else:
            payload, delay_s, close, reset = _route(url, head, mode, self._delay_s, self._state)
        self._enqueue(payload, delay_s, close, reset)

    def _echoed(
        self, url: bytes, parser: httptools.HttpRequestParser, echo: dict, head: bool, mode: int
    ) -> tuple[bytes, float, bool, bool]:
        """/echo: a JSON account of the request, with an id (also in X-Request-Id) for journeys to extract."""
        self._state.echoed += 1
        n = self._state.echoed
        raw = echo["body"]
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        doc = {
            "id": n,
            "method": parser.get_method().decode(),
            "path": url.decode("latin-1"),
            "headers": echo["headers"],
            "body": raw.decode("utf-8", "replace"),
            "json": parsed,
        }
        body = orjson.dumps(doc)
        lines = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: %d\r\n" % n
        lines += b"Content-Length: %d\r\n" % len(body) + _CONNECTION[mode] + b"\r\n"
        return lines + (b"" if head else body), self._delay_s, mode == 0, False

    def _slotted(self, url: bytes, head: bool, mode: int) -> None:
        """/slots/N/MS: wait for one of N slots (FIFO, shared by every connection), hold it MS ms, answer."""
        parts = url.split(b"?", 1)[0][7:].split(b"/")
        try:
            if len(parts) != 2:
                raise ValueError("write /slots/N/MS: N requests in service at once, each taking MS ms")
            n = _digits(parts[0], "/slots/{n}/{ms}: n", MAX_SLOTS)
            ms = _digits(parts[1], "/slots/{n}/{ms}: ms", MAX_DELAY_MS)
            if n < 1:
                raise ValueError("/slots/{n}/{ms}: n must be at least 1")
        except ValueError as exc:
            self._enqueue(*_bad(str(exc), head, mode))
            return
        close = mode == 0
        if close:
            self._closing = True
        pending = _Pending(_DEFAULT[head][mode], close, False, False, slot=True)
        self._queue.append(pending)
        pool = self._state.slots.get((n, ms))
        if pool is None:
            pool = self._state.slots[(n, ms)] = _Slots(n, ms / 1000)
        pool.admit(self, pending)

    # responses

    def _enqueue(self, payload: bytes, delay_s: float, close: bool, reset: bool) -> None:
        if close:
            self._closing = True
        if delay_s <= 0.0 and not self._queue:
            self._send(payload, close, reset)
            return
        pending = _Pending(payload, close, reset, delay_s <= 0.0)
        if delay_s > 0.0:
            pending.due = time.monotonic() + delay_s
            pending.timer = asyncio.get_running_loop().call_later(delay_s, self._ready, pending)
        self._queue.append(pending)

    def _ready(self, pending: _Pending) -> None:
        # uvloop's timers run on a cached millisecond clock and can fire up to 1 ms early: a /delay/100
        # answer must never come before 100 ms, so an early timer waits again for the rest.
        left = pending.due - time.monotonic()
        if left > 0.0:
            pending.timer = asyncio.get_running_loop().call_later(left, self._ready, pending)
            return
        pending.ready = True
        queue = self._queue
        while queue and queue[0].ready:
            done = queue.popleft()
            self._send(done.payload, done.close, done.reset)

    def _send(self, payload: bytes, close: bool, reset: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if reset:
            # SO_LINGER 0 makes close() send RST instead of FIN, like a peer that crashed.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.close()
            return
        transport.write(payload)
        self._state.requests_served += 1
        if close:
            transport.close()

    def _close_after_pending(self) -> None:
        self._closing = True
        if self._queue:
            self._queue[-1].close = True
        elif self.transport is not None:
            self.transport.close()


async def start_server(opts: ServeOptions, state: ServeState | None = None) -> asyncio.Server:
    """Bind and start serving on the running loop; port 0 picks a free port."""
    shared = state if state is not None else ServeState()
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _HttpProtocol(shared, opts.delay_s), opts.host, opts.port, reuse_address=True, backlog=4096
    )


async def _shutdown(server: asyncio.Server, state: ServeState) -> None:
    await close_server(server, state.connections)


def serve(opts: ServeOptions, ready: Callable[[int], None] | None = None) -> None:
    """Serve on uvloop until SIGINT or SIGTERM, calling ready(port) once listening."""
    state = ServeState()
    serve_until_signal(lambda: start_server(opts, state), lambda server: _shutdown(server, state), ready)


class ServerThread(TargetThread):
    """The target on 127.0.0.1 (ephemeral port) in a daemon thread, for tests."""

    def __init__(self, delay_s: float = 0.0) -> None:
        opts = ServeOptions(host="127.0.0.1", port=0, delay_s=delay_s)
        self._state = ServeState()
        super().__init__(
            lambda: start_server(opts, self._state),
            lambda server: _shutdown(server, self._state),
            "squall-serve",
        )

    @property
    def requests_served(self) -> int:
        """Responses written so far (resets are not counted)."""
        return self._state.requests_served

    def __enter__(self) -> ServerThread:
        super().__enter__()
        return self
