"""The aiohttp transport: one ClientSession per worker, a keep-alive pool sized to its connections."""

from __future__ import annotations

import asyncio
import errno
from time import perf_counter_ns

import aiohttp
from yarl import URL

from squall.engine.transport import Channel, Interrupted, Owner, TaskChannel
from squall.plan.plan import Plan


class _AiohttpChannel(TaskChannel):
    __slots__ = ("transport",)

    def __init__(self, transport: AiohttpTransport, owner: Owner) -> None:
        super().__init__(owner)
        self.transport = transport

    async def go(self) -> None:
        t = self.transport
        try:
            async with t.request(
                t.method, t.url, headers=t.headers, data=t.data, allow_redirects=False
            ) as resp:
                first = perf_counter_ns()
                body = await resp.read()
                done = perf_counter_ns()
                status = resp.status
        except asyncio.CancelledError:
            self.busy = False
            self.owner.on_failure(self, Interrupted())
            return
        except Exception as e:
            self.busy = False
            self.owner.on_failure(self, e)
            return
        self.busy = False
        self.owner.on_response(self, status, first, done, len(body))


class AiohttpTransport:
    """HTTP/1.1 through aiohttp; redirects are not followed and bodies are not decompressed (as wrk)."""

    name = "aiohttp"

    def __init__(self, plan: Plan, connections: int) -> None:
        spec = plan.request
        self.plan = plan
        self.connections = connections
        self.method, self.url = spec.method, URL(spec.url, encoded=True)
        self.headers = dict(spec.headers) or None
        self.data = spec.body or None
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            limit_per_host=self.connections,
            ttl_dns_cache=None,
            ssl=self.plan.tls_verify,  # False: do not verify the certificate
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.plan.timeout_s),
            auto_decompress=False,
            skip_auto_headers=("Content-Type",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.request = self.session.request

    def channel(self, owner: Owner) -> Channel:
        return _AiohttpChannel(self, owner)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
            return "tls"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return "connect"
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

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
