"""The aiohttp transport: one ClientSession per worker, a keep-alive pool sized to its connections."""

from __future__ import annotations

import asyncio
import errno
from time import perf_counter_ns

import aiohttp
from yarl import URL

from squall.engine.transport import Send
from squall.plan import Plan


class AiohttpTransport:
    """HTTP/1.1 through aiohttp; redirects are not followed and bodies are not decompressed (as wrk)."""

    name = "aiohttp"

    def __init__(self, plan: Plan, connections: int) -> None:
        self.plan = plan
        self.connections = connections
        self.request_bytes = len(plan.request.body)
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.connections, limit_per_host=self.connections, ttl_dns_cache=None
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.plan.timeout_s),
            auto_decompress=False,
            skip_auto_headers=("Content-Type",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def channel(self) -> Send:
        assert self.session is not None, "open() first"
        spec = self.plan.request
        request = self.session.request
        method, url = spec.method, URL(spec.url, encoded=True)
        headers = dict(spec.headers) or None
        data = spec.body or None

        async def send() -> tuple[int, int, int]:
            async with request(method, url, headers=headers, data=data, allow_redirects=False) as resp:
                first = perf_counter_ns()
                body = await resp.read()
                return resp.status, first, len(body)

        return send

    def classify(self, exc: BaseException) -> str:
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
