"""The aiohttp transport: one ClientSession per worker, a keep-alive pool sized to its connections."""

from __future__ import annotations

import asyncio
import errno
from time import perf_counter_ns
from typing import Any

import aiohttp
from yarl import URL

from squall.engine.limits import limit_kind
from squall.engine.transport.base import (
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

_CUT = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError)


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
            answer = await self.transport.request(req, reader)
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


class AiohttpTransport:
    """HTTP/1.1 through aiohttp; redirects are not followed and bodies are not decompressed (as wrk)."""

    name = "aiohttp"

    def __init__(self, plan: Plan, connections: int, source: RequestSource | None = None) -> None:
        self.plan = plan
        self.connections = connections
        self.source = source
        self.streams = source is not None and source.streams
        self.urls: dict[str, URL] = {}
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        # One connector (and session) per --source-ip address, each request to the next in turn; each
        # pool may hold every connection (the channels, not the pools, bound what is in flight).
        sources: tuple[str | None, ...] = self.plan.client.source_ips or (None,)
        self.sessions = [self._session(source) for source in sources]
        self.session = self.sessions[0]
        if len(self.sessions) == 1:
            self.send = self.session.request
        else:
            self.turn = 0
            self.send = self._send_next

    def _session(self, source: str | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            limit_per_host=self.connections,
            ttl_dns_cache=None,
            ssl=self.plan.client.tls_verify,  # False: do not verify the certificate
            local_addr=None if source is None else (source, 0),
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.plan.client.timeout_s),
            auto_decompress=False,
            skip_auto_headers=("Content-Type",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

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
        return _AiohttpChannel(self, owner, source)

    async def request(self, req: Request, reader: Any = None) -> Answer:
        """One request; an answer cut after it began raises AnswerCut."""
        url = self.urls.get(req.url)
        if url is None:
            url = self.urls[req.url] = URL(req.url, encoded=True)
        async with self.send(
            req.method, url, headers=req.headers, data=req.body or None, allow_redirects=False
        ) as resp:
            first = perf_counter_ns()
            nbytes = 0
            body = b""
            try:
                if reader is not None:
                    reader.retry_after = resp.headers.get("Retry-After") or ""  # (str: may hold surrogates)
                    async for chunk in resp.content.iter_any():
                        reader.feed(chunk, perf_counter_ns())
                        nbytes += len(chunk)
                else:
                    body = await resp.read()
                    nbytes = len(body)
            except _CUT as e:
                raise AnswerCut(f"the answer was cut: {e}") from e
            return Answer(resp.status, first, perf_counter_ns(), nbytes, resp.headers, body)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, BadRequest | UnicodeEncodeError):  # (aiohttp encodes header values as UTF-8)
            return "bad_request"
        if isinstance(exc, AnswerCut):
            return "stream_broken" if self.streams else "reset"
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
            return "tls"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return limit_kind(exc) or "connect"
        if isinstance(exc, OSError) and (kind := limit_kind(exc)):  # (a socket aiohttp could not make)
            return kind
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return "timeout"
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return "reset"
        if isinstance(exc, aiohttp.ClientResponseError):
            return "protocol"
        if isinstance(exc, ConnectionError) or (
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
