"""Transports behind one small interface: channels that send the plan's request and call back when done.

Callbacks instead of coroutines: the worker's per-request path is then a few plain calls (oha's fast path),
with no task, future or coroutine frame per request in the raw transport.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from squall.plan.plan import Plan


class Interrupted(Exception):
    """The request was cancelled by the run's stop, not failed by the target."""


class Owner(Protocol):
    """Who a channel reports to: exactly one call per send()."""

    def on_response(self, ch: Channel, status: int, first_ns: int, done_ns: int, nbytes: int) -> None:
        """The response ended; `first_ns`/`done_ns`: when its first and last bytes arrived."""

    def on_failure(self, ch: Channel, exc: BaseException) -> None: ...


class Channel:
    """One logical connection with at most one request in flight; `start`/`sent` belong to the worker."""

    __slots__ = ("busy", "reader", "sent", "start")

    def __init__(self) -> None:
        self.start = 0
        self.sent = 0
        self.busy = False
        self.reader: Any = None  # LLM runs: the StreamReader of the answer in flight

    def send(self) -> None:
        """Send the request; the outcome arrives later (never synchronously) through the owner."""
        raise NotImplementedError

    def abort(self) -> None:
        """Cancel the request in flight; the owner gets on_failure(Interrupted)."""
        raise NotImplementedError


class TaskChannel(Channel):
    """A channel whose send() runs `self.go()` as a task (aiohttp requests, journeys, Python workloads);
    abort() cancels it, and go() reports Interrupted to the owner."""

    __slots__ = ("owner", "task")

    def __init__(self, owner: Owner) -> None:
        super().__init__()
        self.owner = owner
        self.task: asyncio.Task[None] | None = None

    def send(self) -> None:
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self.go())

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def go(self) -> None:
        raise NotImplementedError


class Transport(Protocol):
    """Sends the plan's request over up to `connections` keep-alive connections."""

    name: str

    async def open(self) -> None: ...

    def channel(self, owner: Owner) -> Channel: ...

    def classify(self, exc: BaseException) -> str: ...

    async def close(self) -> None: ...


def make_transport(plan: Plan, connections: int, worker: int = 0, rec: Any = None) -> Transport:
    """The transport the plan names, sized for this worker's connections; `rec` records scenario steps."""
    if plan.py is not None:
        from squall.engine.transport.py import PyTransport

        return PyTransport(plan, connections, worker, rec)
    if plan.scenario is not None:
        from squall.engine.transport.journey import JourneyTransport

        return JourneyTransport(plan, connections, worker, rec)
    if plan.transport == "aiohttp":
        from squall.engine.transport.aiohttp import AiohttpTransport

        return AiohttpTransport(plan, connections)
    from squall.engine.transport.raw import RawTransport

    return RawTransport(plan, connections, worker)
