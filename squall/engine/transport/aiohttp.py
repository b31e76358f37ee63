"""The aiohttp transport: one ClientSession per worker, a keep-alive pool sized to its connections."""

from __future__ import annotations

import asyncio
import errno
import weakref
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from squall.engine.limits import limit_kind
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
    TaskChannel,
)
from squall.engine.workload.http import BadRequest, Request
from squall.plan.plan import Plan

# What reading a body raises when the connection ends before it does (aiohttp: "payload is not completed").
_CUT = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError)


def _closed_under(exc: aiohttp.ClientConnectionError) -> bool:
    """Whether a send failed because the server closed the connection under it (not a failed connect)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return False
    return exc.errno in (errno.ECONNRESET, errno.EPIPE) or isinstance(exc.__cause__, ConnectionResetError)


def _ended_in_error(closed: asyncio.Future[None]) -> bool:
    """Whether the connection ended with an error (a reset) rather than a clean close. Reading it marks the
    error as read: as a done-callback it keeps the loop from reporting a reset as an unretrieved exception."""
    return not closed.cancelled() and closed.exception() is not None


class BadBody(Exception):
    """The body's bytes after its head are not valid HTTP/1.1 (a bad chunk size)."""


def _ends_at_close(resp: aiohttp.ClientResponse) -> bool:
    """Whether the body has neither a length nor chunks: it ends where the connection does."""
    headers = resp.headers
    return "Content-Length" not in headers and "chunked" not in headers.get("Transfer-Encoding", "").lower()


def _fail_body_on_close(
    resp: aiohttp.ClientResponse, watched: weakref.WeakSet[asyncio.Future[None]]
) -> tuple[Callable[[], None], asyncio.Future[None]] | None:
    """When a later read of a body is not valid HTTP, aiohttp fails the connection but leaves the body's
    reader waiting (until the timeout): fail the body when its connection ends before it. Returns the undo
    and the connection's `closed` future (None when the body is already all read, as small bodies are)."""
    content = resp.content
    proto = getattr(resp.connection, "protocol", None)
    closed = getattr(proto, "closed", None)
    if content.is_eof() or not isinstance(closed, asyncio.Future):
        return None
    if closed not in watched:  # (once per connection: it serves many answers)
        watched.add(closed)
        closed.add_done_callback(_ended_in_error)

    def lost(_: object) -> None:
        if content.is_eof() or content.exception() is not None:
            return  # ended, or aiohttp failed it itself (a body cut short)
        exc = proto.exception()  # type: ignore[union-attr]
        if isinstance(exc, HttpProcessingError):
            content.set_exception(BadBody(f"bad HTTP response: {exc.message}"))
        else:
            content.set_exception(aiohttp.ClientPayloadError("the connection closed before the body ended"))

    closed.add_done_callback(lost)
    return (lambda: closed.remove_done_callback(lost)), closed


class _AiohttpChannel(TaskChannel):
    """Sends its source's next request every time (the same one for `run`), its answer read by the source's
    reader when there is one (LLM runs)."""

    __slots__ = ("source", "transport")

    def __init__(self, transport: AiohttpTransport, owner: Owner, source: RequestSource) -> None:
        super().__init__(owner)
        self.transport, self.source = transport, source

    async def go(self) -> None:
        req, index = self.source.next_request()
        self.reader = reader = self.source.reader(index)
        try:
            answer = await self.transport.request(req, reader, keep=0)
        except asyncio.CancelledError:
            self.busy = False
            self.owner.on_failure(self, Interrupted())
            return
        except Exception as e:
            self.busy = False
            self.owner.on_failure(self, e)
            return
        self.busy = False
        self.owner.on_response(self, answer.status, answer.first, answer.done, answer.nbytes)


class _CancelChannel(_AiohttpChannel):
    """A channel whose sends a Canceller may abandon (--cancel-after, --cancel-rate): the response is closed
    without reading on (its connection is not reused), and the owner gets on_failure(Abandoned)."""

    __slots__ = ("cutting", "last", "timer")

    def __init__(self, transport: AiohttpTransport, owner: Owner, source: RequestSource) -> None:
        super().__init__(transport, owner, source)
        self.timer: asyncio.TimerHandle | None = None  # --cancel-after's, for the answer in flight
        self.cutting = False  # the task is being cancelled by a cut, not by the run's stop
        self.last: Any = None  # the previous answer's reader (for the Canceller's running mean)

    async def go(self) -> None:
        req, index = self.source.next_request()
        self.reader = reader = self.source.reader(index)
        cut_at = 0
        canceller = self.canceller
        if canceller is not None:
            canceller.learn(self.last)
            self.last = reader
            cut_at, self.timer = canceller.arm(self.cut, reader, index)
        try:
            answer = await self.transport.request(req, reader, keep=0, cut_at=cut_at)
        except asyncio.CancelledError:
            self._end(Abandoned() if self.cutting else Interrupted())
            return
        except Exception as e:
            self._end(e)
            return
        self._end(None)
        self.owner.on_response(self, answer.status, answer.first, answer.done, answer.nbytes)

    def _end(self, exc: BaseException | None) -> None:
        self.busy = self.cutting = False
        if self.timer is not None:
            self.timer.cancel()  # the answer ended first
            self.timer = None
        if exc is not None:
            self.owner.on_failure(self, exc)

    def cut(self, reader: Any) -> None:
        """Abandon the answer `reader` reads, if it is still in flight (go() reports it)."""
        self.timer = None
        if self.busy and self.reader is reader and self.task is not None:
            self.cutting = True
            self.task.cancel()


class AiohttpTransport:
    """HTTP/1.1 through aiohttp; redirects are not followed and bodies are not decompressed (as wrk)."""

    name = "aiohttp"

    def __init__(self, plan: Plan, connections: int, source: RequestSource | None = None) -> None:
        self.plan = plan
        self.connections = connections
        self.source = source
        self.streams = source is not None and source.streams
        self.cancels = self.streams and cancelling(plan)  # --cancel-*: channels that may abandon an answer
        self.urls: dict[str, URL] = {}
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # One connector (and session) per --source-ip address, each request to the next in turn; each
        # pool may hold every connection, and no more (a workload that sends concurrently is held to -c).
        sources: tuple[str | None, ...] = self.plan.client.source_ips or (None,)
        self.sessions = [self._session(source) for source in sources]
        self.fresh: aiohttp.ClientSession | None = None  # a new connection per request, for a resend
        self.watched: weakref.WeakSet[asyncio.Future[None]] = weakref.WeakSet()
        self.session = self.sessions[0]
        if len(self.sessions) == 1:
            self.send = self.session.request
        else:
            self.turn = 0
            self.send = self._send_next

    def _session(self, source: str | None, fresh: bool = False) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            force_close=fresh,
            limit=self.connections,  # (raised by grow() when a dashboard's change adds users)
            limit_per_host=self.connections,
            ttl_dns_cache=None,
            ssl=self.plan.client.tls_verify,  # False: do not verify the certificate
            local_addr=None if source is None else (source, 0),
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.plan.client.timeout_s),
            auto_decompress=False,
            skip_auto_headers=("Content-Type",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp would send an idempotent request again on its pool (where the next connection may be as
        # stale); squall sends once more itself, on a new connection, for any method (see `request`).
        session._retry_connection = False  # type: ignore[attr-defined]
        return session

    def grow(self, connections: int) -> None:
        """Let each pool hold `connections` (a steer added users past -c): aiohttp's connector keeps its
        limits in `_limit`/`_limit_per_host` (what its public `limit` reads) and checks them on every send."""
        if connections <= self.connections:
            return
        self.connections = connections
        for session in [*getattr(self, "sessions", ()), getattr(self, "fresh", None)]:
            if session is not None:
                connector = session.connector
                connector._limit = connector._limit_per_host = connections  # type: ignore[union-attr]

    def _send_next(self, *args: Any, **kwargs: Any) -> Any:
        session = self.sessions[self.turn]
        self.turn = (self.turn + 1) % len(self.sessions)
        return session.request(*args, **kwargs)

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Nothing: aiohttp opens its pool's connections as the first requests go out."""
        return 0

    def channel(self, owner: Owner, source: RequestSource | None = None) -> Channel:
        source = source or self.source
        assert source is not None, "a channel needs a request source"
        if self.cancels and source.streams:
            return _CancelChannel(self, owner, source)
        return _AiohttpChannel(self, owner, source)

    async def request(
        self, req: Request, reader: Any = None, keep: int = KEEP_BODY, cut_at: int = 0
    ) -> Answer:
        """One request; its body is read as it arrives (aiohttp buffers at most a few reads of it) and only
        its first `keep` bytes are kept; an answer cut after its head raises AnswerCut. `cut_at`: the
        reader's content event at which the answer is abandoned (its connection closed, Abandoned raised)."""
        url = self.urls.get(req.url)
        if url is None:
            url = self.urls[req.url] = URL(req.url, encoded=True)
        send = self.send
        for again in (True, False):
            try:
                resp = await send(
                    req.method, url, headers=req.headers, data=req.body or None, allow_redirects=False
                )
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                # A kept-alive connection the server closed after its last answer (without saying so), as
                # this request went out: no byte of an answer came, so it goes once more, on a new
                # connection (the pool's others may be as stale), as raw does; one failure (the 429 before
                # the close) stays one error. (aiohttp cannot say whether the connection was a kept-alive
                # one: a server that closes new connections unanswered gets each request twice.)
                if not again or not _closed_under(e):
                    raise
                if self.fresh is None:
                    self.fresh = self._session(
                        self.plan.client.source_ips[0] if self.plan.client.source_ips else None, fresh=True
                    )
                send = self.fresh.request
        async with resp:
            first = perf_counter_ns()
            nbytes = 0
            kept: list[bytes] = []
            watch = _fail_body_on_close(resp, self.watched)
            try:
                if reader is not None:
                    reader.retry_after = resp.headers.get("Retry-After") or ""  # (str: may hold surrogates)
                    if cut_at:
                        async for chunk in resp.content.iter_any():
                            reader.feed(chunk, perf_counter_ns())
                            nbytes += len(chunk)
                            if reader.events() >= cut_at:
                                resp.close()  # not read on: the connection is closed, not reused
                                raise Abandoned()
                    else:
                        async for chunk in resp.content.iter_any():
                            reader.feed(chunk, perf_counter_ns())
                            nbytes += len(chunk)
                else:
                    async for chunk in resp.content.iter_any():
                        if nbytes < keep:
                            kept.append(chunk[: keep - nbytes])
                        nbytes += len(chunk)
            except TimeoutError:
                raise
            except asyncio.CancelledError:
                resp.close()  # abandoned or interrupted: the connection is closed, not reused
                raise
            except _CUT as e:
                raise AnswerCut(f"the answer was cut: {e}") from e
            finally:
                if watch is not None:
                    watch[0]()
            if watch is not None and _ends_at_close(resp) and watch[1].done() and _ended_in_error(watch[1]):
                raise AnswerCut("the connection was reset before the body ended")
            body = kept[0] if len(kept) == 1 else b"".join(kept)
            return Answer(resp.status, first, perf_counter_ns(), nbytes, resp.headers, body)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, BadRequest | UnicodeEncodeError):  # (aiohttp encodes header values as UTF-8)
            return "bad_request"
        if isinstance(exc, AnswerCut):
            return "stream_broken" if self.streams else "truncated"
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
            return "tls"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return limit_kind(exc) or "connect"
        if isinstance(exc, OSError) and (kind := limit_kind(exc)):  # (a socket aiohttp could not make)
            return kind
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return "timeout"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return "truncated"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "reset"
        if isinstance(exc, aiohttp.ClientResponseError | BadBody):
            return "protocol"
        if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)
        ):
            return "reset"
        return "other"

    def begin(self, measure_start_ns: int) -> None:
        """Nothing to do: the driver tells warmup answers from measured ones."""

    def finish(self) -> None:
        """Nothing to add to the last window."""

    async def close(self) -> None:
        for session in getattr(self, "sessions", ()):
            await session.close()
        if getattr(self, "fresh", None) is not None:
            await self.fresh.close()  # type: ignore[union-attr]
