"""The seams between transports and what they carry: Channel/Owner for the per-send fast path, and
`Transport.request` for iteration workloads.

Callbacks instead of coroutines on the fast path: the worker's per-request path is then a few plain calls
(oha's fast path), with no task, future or coroutine frame per request in the raw transport.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from squall.engine.workload.base import RequestSource

if TYPE_CHECKING:
    from squall.engine.workload.http import Request
    from squall.plan.plan import Plan

__all__ = [
    "KEEP_BODY",
    "Abandoned",
    "Answer",
    "AnswerCut",
    "Channel",
    "Interrupted",
    "Owner",
    "RequestSource",
    "TaskChannel",
    "Transport",
]


KEEP_BODY = 16 << 20
"""How much of a body `Transport.request` keeps for its caller (scenario checks and extracts): the first
16 MiB. Every byte is still read and counted; a body never sits whole in memory."""


class Interrupted(Exception):
    """The request was cancelled by the run's stop, not failed by the target."""


class Abandoned(Exception):
    """The client gave up on the answer (--cancel-after, --cancel-rate), as a user closing a tab does: its
    connection was closed; the request counts as `cancelled`, neither ok nor an error."""


class AnswerCut(ConnectionResetError):
    """The connection closed or was reset after the answer's head, before its body's end (a body shorter
    than its Content-Length, a chunked body cut, a stream without its end): `truncated` (`stream_broken`)."""


class Owner(Protocol):
    """Who a channel reports to: exactly one call per send()."""

    def on_response(self, ch: Channel, status: int, first_ns: int, done_ns: int, nbytes: int) -> None:
        """The response ended; `first_ns`/`done_ns`: when its first and last bytes arrived."""

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        """The request got no complete response (`Interrupted` when the run's stop cancelled it)."""


class Answer:
    """A whole answer to `Transport.request`: status, when its first and last bytes came, its head and body
    (the body's first `keep` bytes; empty when an AnswerReader read it). Interim (1xx) answers are skipped."""

    __slots__ = ("body", "done", "first", "headers", "nbytes", "status")

    def __init__(self, status: int, first: int, done: int, nbytes: int, headers: Any, body: bytes) -> None:
        self.status, self.first, self.done, self.nbytes = status, first, done, nbytes
        self.headers = headers  # case-insensitive: .get(name)
        self.body = body


class Channel:
    """One logical connection with at most one request in flight; `start`/`sent` belong to the worker."""

    __slots__ = ("busy", "canceller", "reader", "sent", "start")

    def __init__(self) -> None:
        self.start = 0
        self.sent = 0
        self.busy = False
        self.reader: Any = None  # LLM runs: the AnswerReader of the answer in flight
        self.canceller: Any = None  # LLM runs with --cancel-*: the Canceller that arms each send

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
        """One send, start to end; reports to the owner exactly once."""
        raise NotImplementedError


class Transport(Protocol):
    """Bytes on the wire: channels for the per-send fast path, `request` for iteration workloads."""

    name: str

    def __init__(self, plan: Plan, connections: int, source: RequestSource | None = None) -> None:
        """Sized for `connections`; `source` feeds the channels (None: only `request` is used)."""

    async def open(self) -> None:
        """Ready to send (inside the worker's loop)."""

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Open the channels' connections before t0 (a no-op where the client opens them itself); a
        connection not made within `within_s` is left to the first send. Returns how many opened."""
        ...

    def begin(self, measure_start_ns: int) -> None:
        """The run's t0 is known (nothing for a transport: the driver tells warmup from measured)."""

    def channel(self, owner: Owner, source: RequestSource | None = None) -> Channel:
        """A channel sending `source`'s requests (by default the one the transport was made with)."""
        ...

    async def request(self, req: Request, reader: Any = None, keep: int = KEEP_BODY) -> Answer:
        """Send one request and return its answer once its body has been read to the end; an AnswerReader,
        if given, reads the body, else its first `keep` bytes are kept. A cut answer raises AnswerCut."""
        ...

    def classify(self, exc: BaseException) -> str:
        """The error kind of a failed request (connect, tls, timeout, reset, truncated, stream_broken,
        protocol...)."""
        ...

    def finish(self) -> None:
        """The run is over, before its last window ships (nothing for a transport)."""

    async def close(self) -> None:
        """Close every connection."""
