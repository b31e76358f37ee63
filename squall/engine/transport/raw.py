"""The raw transport: uvloop protocols and httptools' response parser, request bytes built once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from time import perf_counter_ns
from typing import Any

from multidict import CIMultiDict

from squall.engine.limits import SETUP_MAX_S, bind_socket, limit_kind, worker_connect_rate
from squall.engine.llm.cancel import cancelling
from squall.engine.transport.base import (
    KEEP_BODY,
    Abandoned,
    Answer,
    AnswerCut,
    Channel,
    Interrupted,
    Owner,
    RequestSource,
)
from squall.engine.transport.http1 import (
    Conn,
    ConnectError,
    CutStreamConn,
    FetchConn,
    HeadConn,
    ProtocolError,
    StreamConn,
    TlsError,
)
from squall.engine.workload.http import BadRequest, Request
from squall.plan.plan import Plan


def _connect_failure(exc: BaseException) -> BaseException:
    """What a failed connect reports: Interrupted when the run's stop cancelled it, else its error kind's."""
    if isinstance(exc, asyncio.CancelledError):
        return Interrupted()
    if isinstance(exc, TimeoutError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return TlsError(exc.errno, str(exc))
    return ConnectError(exc.errno, str(exc))  # type: ignore[attr-defined]


class _RawChannel(Channel):
    """A channel that keeps one connection open and reconnects when the peer closes it."""

    __slots__ = ("conn", "conn_class", "connecting", "owner", "pending", "t")

    def __init__(self, t: RawTransport, owner: Owner) -> None:
        super().__init__()
        self.t = t
        self.owner = owner
        self.conn: Conn | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.pending = t.wire
        self.conn_class = t.conn_class

    def send(self) -> None:
        self.busy = True
        conn = self.conn
        if conn is None or conn.closed:
            self.conn = None  # the old connection's late connection_lost must not fail this request
            self.connecting = self.t.loop.create_task(self._connect_and_send())
            return
        conn.first = 0
        conn.nbytes = 0
        conn.transport.write(self.pending)  # type: ignore[union-attr]

    async def open(self) -> Conn:
        """A new connection for this channel (from its source address, when the plan gives some); raises
        OSError, ssl.SSLError or TimeoutError."""
        t = self.t
        if t.sources:
            _, conn = await asyncio.wait_for(self._open_from(t.next_source()), t.timeout_ns / 1e9)
        else:
            _, conn = await asyncio.wait_for(
                t.loop.create_connection(
                    lambda: self.conn_class(self),
                    t.host,
                    t.port,
                    ssl=t.ssl,
                    server_hostname=t.host if t.ssl else None,
                ),
                t.timeout_ns / 1e9,
            )
        sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn  # type: ignore[return-value]

    async def _open_from(self, source: str) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        t = self.t
        family, address = await t.resolve(source)
        sock = bind_socket(source, family)
        try:
            await t.loop.sock_connect(sock, address)
            return await t.loop.create_connection(
                lambda: self.conn_class(self), sock=sock, ssl=t.ssl, server_hostname=t.host if t.ssl else None
            )
        except BaseException:
            sock.close()
            raise

    async def _connect_and_send(self) -> None:
        try:
            conn = await self.open()
        except (asyncio.CancelledError, OSError) as e:  # (TimeoutError and ssl.SSLError are OSErrors)
            self.connecting = None
            self.fail(None, _connect_failure(e))
            return
        self.connecting = None
        self.conn = conn
        if self.busy:
            conn.transport.write(self.pending)  # type: ignore[union-attr]

    def resend(self, conn: Conn) -> bool:
        """Send the request in flight again on a new connection, when `conn` (never answered on) is this
        channel's and was closed before any byte of the answer; False when that is not the case."""
        if conn is not self.conn or not self.busy:
            return False
        self.conn = None
        self.connecting = self.t.loop.create_task(self._connect_and_send())
        return True

    def done(self, conn: Conn, status: int, first: int, done: int, nbytes: int) -> None:
        if conn is self.conn and self.busy:
            self.busy = False
            self.owner.on_response(self, status, first, done, nbytes)

    def fail(self, conn: Conn | None, exc: BaseException) -> None:
        if (conn is None or conn is self.conn) and self.busy:
            self.busy = False
            self.owner.on_failure(self, exc)

    def abort(self) -> None:
        if not self.busy:
            return
        if self.connecting is not None:
            self.connecting.cancel()
            return
        conn = self.conn
        self._drop(conn)  # first: the owner may send again from inside fail(), on a fresh connection
        self.fail(conn, Interrupted())

    def expire(self) -> None:
        """Fail the request in flight as a timeout and drop its connection."""
        if self.connecting is not None:
            return  # the connect has its own timeout
        conn = self.conn
        self._drop(conn)  # first: the owner may send again from inside fail(), on a fresh connection
        self.fail(conn, TimeoutError("no complete response within the timeout"))

    @staticmethod
    def _drop(conn: Conn | None) -> None:
        if conn is not None:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()


class _SourceChannel(_RawChannel):
    """A channel whose every send takes the source's next request (LLM prompts and keys) and its reader."""

    __slots__ = ("source",)

    def __init__(self, t: RawTransport, owner: Owner, source: RequestSource) -> None:
        super().__init__(t, owner)
        self.source = source

    def send(self) -> None:
        source = self.source
        self.pending, index = source.next()
        self.reader = source.reader(index)
        _RawChannel.send(self)


class _CancelChannel(_SourceChannel):
    """A source channel whose sends a Canceller may abandon (--cancel-after, --cancel-rate): the connection is
    closed, not reused (the next send opens a new one), and the owner gets on_failure(Abandoned)."""

    __slots__ = ("cut_at", "cutting", "last", "timer")

    def __init__(self, t: RawTransport, owner: Owner, source: RequestSource) -> None:
        super().__init__(t, owner, source)
        self.conn_class = CutStreamConn
        self.cut_at = 0  # the content event at which the answer in flight is abandoned (0: never)
        self.timer: asyncio.TimerHandle | None = None  # --cancel-after's, for the answer in flight
        self.cutting = False  # a cut came while the connection was being made
        self.last: Any = None  # the previous answer's reader (for the Canceller's running mean)

    def send(self) -> None:
        source = self.source
        self.pending, index = source.next()
        self.reader = reader = source.reader(index)
        canceller = self.canceller
        if canceller is not None:
            canceller.learn(self.last)
            self.last = reader
            self.cut_at, self.timer = canceller.arm(self.cut, reader, index)
        _RawChannel.send(self)

    def cut(self, reader: Any) -> None:
        """Abandon the answer `reader` reads, if it is still in flight: close its connection (or stop its
        connect) and report Abandoned."""
        self.timer = None
        if not self.busy or self.reader is not reader:
            return
        if self.connecting is not None:
            self.cutting = True  # the connect's CancelledError reports the cut (see fail)
            self.connecting.cancel()
            return
        conn = self.conn
        if conn is not None:
            conn.close()  # first: the owner may send again from inside fail(), on a new connection
        self.fail(conn, Abandoned())

    def done(self, conn: Conn, status: int, first: int, done: int, nbytes: int) -> None:
        if conn is self.conn and self.busy:
            self._disarm()
        super().done(conn, status, first, done, nbytes)

    def fail(self, conn: Conn | None, exc: BaseException) -> None:
        if (conn is None or conn is self.conn) and self.busy:
            if self.cutting:
                exc = Abandoned()
            self._disarm()
        super().fail(conn, exc)

    def _disarm(self) -> None:
        self.cutting = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _FetchChannel(_RawChannel):
    """A pooled channel for `RawTransport.request`, its own owner: the outcome settles the caller's future."""

    __slots__ = ("head_only", "keep", "waiter")

    def __init__(self, t: RawTransport) -> None:
        super().__init__(t, self)
        self.conn_class = FetchConn
        self.head_only = False
        self.keep = KEEP_BODY
        self.waiter: asyncio.Future[Answer] | None = None

    def fetch(
        self, wire: bytes, head_only: bool, reader: Any, waiter: asyncio.Future[Answer], keep: int = KEEP_BODY
    ) -> None:
        """Send `wire`; the answer (or the failure) settles `waiter`, with its body's first `keep` bytes."""
        self.pending, self.head_only, self.reader, self.waiter = wire, head_only, reader, waiter
        self.keep = keep
        conn = self.conn
        if isinstance(conn, FetchConn) and not conn.closed:
            conn.headers, conn.chunks, conn.kept = [], [], 0
            # Kept alive since its last answer: when the peer closed it while it sat idle and that close
            # crosses this send, the request goes again on a new connection (as on a preconnected one).
            conn.idle_made = True
        self.sent = perf_counter_ns()  # for the timeout sweep
        self.send()

    def on_response(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        conn = self.conn
        assert isinstance(conn, FetchConn)
        head, body = CIMultiDict(conn.headers), b"".join(conn.chunks)
        self._settle(Answer(status, first, done, nbytes, head, body), None)

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, answer: Answer | None, exc: BaseException | None) -> None:
        waiter, self.waiter, self.reader = self.waiter, None, None
        if waiter is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(answer)  # type: ignore[arg-type]


class RawTransport:
    """HTTP/1.1 over uvloop protocols: keep-alive, Content-Length and chunked bodies, reconnect on close.

    Timeouts are checked by one sweep every tenth of the timeout (at most every 100 ms) instead of a timer
    per request, so a request times out between `timeout` and `timeout` plus one sweep after it was sent.
    """

    name = "raw"

    def __init__(self, plan: Plan, connections: int, source: RequestSource | None = None) -> None:
        spec = plan.request
        self.plan = plan
        self.connections = connections
        self.source = source
        self.streams = source is not None and source.streams
        self.wire = source.next()[0] if source is not None and not source.streams else b""
        self.conn_class: type[Conn] = Conn
        self.cancels = self.streams and cancelling(plan)  # --cancel-*: channels that may abandon an answer
        if self.streams:
            self.conn_class = StreamConn
        elif spec.method == "HEAD":
            self.conn_class = HeadConn
        self.host, self.port = spec.host, spec.port
        self.ssl: ssl.SSLContext | None = None
        if spec.scheme == "https":
            self.ssl = ssl.create_default_context()
            if not plan.client.tls_verify:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self.timeout_ns = int(plan.client.timeout_s * 1e9)
        self.sweep_s = min(0.1, plan.client.timeout_s / 10)
        self.channels: list[_RawChannel] = []
        self.sweeper: asyncio.TimerHandle | None = None
        self.pool: list[_FetchChannel] = []  # idle channels of `request`, each with its keep-alive connection
        self.sources = plan.client.source_ips  # local addresses, round robin over new connections
        self.turn = 0
        self.addresses: dict[int, tuple[int, Any]] = {}  # address family -> the target's (family, sockaddr)
        self.connect_gap_s = 1 / worker_connect_rate(plan)

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Open the channels' connections before the run starts, as wrk does, so that no measured request
        waits for a TCP (or TLS) handshake; at most --connect-rate a second (this worker's share), so a SYN
        burst of our own does not overflow the target's listen backlog. The opening goes on while it makes
        progress (at most 25 s: the supervisor waits 30 s for every worker); once no connection has been
        made or failed for `within_s`, what is left goes to each channel's first send, which meets the
        error again and counts it. Returns how many opened."""
        gate = asyncio.Semaphore(256)  # and never more handshakes at once than a listen backlog takes
        gap, start = self.connect_gap_s, self.loop.time()
        finished = asyncio.Event()  # every connection made or failed
        ended = 0

        async def one(k: int, ch: _RawChannel) -> None:
            nonlocal ended
            await asyncio.sleep(max(0.0, start + k * gap - self.loop.time()))
            try:
                async with gate:
                    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                        ch.conn = conn = await ch.open()
                        conn.idle_made = True
            finally:
                ended += 1
                if ended == len(tasks):
                    finished.set()

        todo = [ch for ch in channels if isinstance(ch, _RawChannel)]
        tasks = [self.loop.create_task(one(k, ch)) for k, ch in enumerate(todo)]
        seen, moved, cap = 0, start, start + SETUP_MAX_S
        try:
            while tasks and not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), 0.1)
                now = self.loop.time()
                if ended != seen:
                    seen, moved = ended, now
                # Stalled: nothing made or failed for `within_s` since the last one, or since the next
                # connection's turn (waiting for a turn is not a stall).
                if now - max(moved, start + ended * gap) > within_s or now > cap:
                    break
        finally:
            late = [task for task in tasks if not task.done()]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        return sum(1 for ch in todo if ch.conn is not None)

    def next_source(self) -> str:
        """The local address of the next new connection (round robin)."""
        source = self.sources[self.turn]
        self.turn = (self.turn + 1) % len(self.sources)
        return source

    async def resolve(self, source: str) -> tuple[int, Any]:
        """The target's (family, socket address) in `source`'s address family, looked up once."""
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
        found = self.addresses.get(family)
        if found is None:
            infos = await self.loop.getaddrinfo(self.host, self.port, family=family, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"{self.host} has no address of the family of --source-ip {source}")
            found = self.addresses[family] = (family, infos[0][4])
        return found

    def _sweep(self) -> None:
        cutoff = perf_counter_ns() - self.timeout_ns
        for ch in self.channels:
            if ch.busy and ch.sent < cutoff:
                ch.expire()
        self.sweeper = self.loop.call_later(self.sweep_s, self._sweep)

    def channel(self, owner: Owner, source: RequestSource | None = None) -> Channel:
        source = source or self.source
        if source is not None and source.streams:
            kind = _CancelChannel if self.cancels else _SourceChannel
            ch: _RawChannel = kind(self, owner, source)
        else:
            ch = _RawChannel(self, owner)
        self.channels.append(ch)
        return ch

    async def request(self, req: Request, reader: Any = None, keep: int = KEEP_BODY) -> Answer:
        """One request on a pooled keep-alive connection to the plan's host; raises on no answer (BadRequest,
        before any channel is taken, when the request cannot be encoded)."""
        wire = req.encode()
        ch = self.pool.pop() if self.pool else self._fetch_channel()
        try:
            waiter: asyncio.Future[Answer] = self.loop.create_future()
            ch.fetch(wire, req.method == "HEAD", reader, waiter, keep)
            return await waiter
        except asyncio.CancelledError:
            ch.abort()
            raise
        finally:
            if not ch.busy:
                self.pool.append(ch)

    def _fetch_channel(self) -> _FetchChannel:
        ch = _FetchChannel(self)
        self.channels.append(ch)
        return ch

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, BadRequest):
            return "bad_request"
        if isinstance(exc, TlsError):
            return "tls"
        if isinstance(exc, ConnectError):
            return limit_kind(exc) or "connect"
        if isinstance(exc, TimeoutError):
            return "timeout"
        if isinstance(exc, AnswerCut):
            return "stream_broken" if self.streams else "truncated"
        if isinstance(exc, ConnectionError):
            return "reset"
        if isinstance(exc, ProtocolError):
            return "protocol"
        return "other"

    def begin(self, measure_start_ns: int) -> None:
        """Nothing to do: the driver tells warmup answers from measured ones."""

    def finish(self) -> None:
        """Nothing to add to the last window."""

    async def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        for ch in self.channels:
            if ch.conn is not None:
                ch.conn.close()
        self.channels.clear()
        self.pool.clear()
