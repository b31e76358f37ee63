"""Transports behind one small interface: open, hand out channels that send the request, close."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from squall.plan import Plan

# A channel's send: one request, returning (status, first-byte perf_counter_ns, body bytes received).
# A failure raises; the transport's classify() names its error kind.
Send = Callable[[], Awaitable[tuple[int, int, int]]]


class Transport(Protocol):
    """Sends the plan's request over up to `connections` keep-alive connections."""

    name: str
    request_bytes: int

    async def open(self) -> None: ...

    def channel(self) -> Send: ...

    def classify(self, exc: BaseException) -> str: ...

    async def close(self) -> None: ...


def make_transport(plan: Plan, connections: int) -> Transport:
    """The transport the plan names, sized for this worker's connections."""
    from squall.engine.transport.aiohttp import AiohttpTransport

    return AiohttpTransport(plan, connections)
