"""--max-inflight: a worker's users (sessions) share a few connections, first come first served (`Pool`).

Each user is a `PoolChannel` to its driver; a send waits for one of the worker's connections, then goes on
it with the user's request source (`Lent`). A connection is always in exactly one place: idle, or lent to
one user.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from squall.engine.transport.base import Channel, Interrupted

if TYPE_CHECKING:
    from collections.abc import Callable

    from squall.engine.transport.base import Owner
    from squall.engine.workload.base import RequestSource
    from squall.engine.workload.http import Request


class Lent:
    """A pooled connection's request source: that of the user it is lent to."""

    streams = True
    __slots__ = ("source",)

    def __init__(self) -> None:
        self.source: Any = None

    def next(self) -> tuple[bytes, int]:
        """The lent-to user's next request as wire bytes, and its prompt's index."""
        return self.source.next()  # type: ignore[no-any-return]

    def next_request(self) -> tuple[Request, int]:
        """The lent-to user's next request as parts, and its prompt's index."""
        return self.source.next_request()  # type: ignore[no-any-return]

    def reader(self, index: int) -> Any:
        """The lent-to user's reader for the answer to prompt number `index`."""
        return self.source.reader(index)


class PoolChannel(Channel):
    """A user of a `Pool`: its send waits for one of the worker's connections, then goes on it."""

    __slots__ = ("conn", "owner", "pool", "source")

    def __init__(self, pool: Pool, owner: Owner, source: RequestSource) -> None:
        super().__init__()
        self.pool, self.owner, self.source = pool, owner, source
        self.conn: Channel | None = None

    def send(self) -> None:
        """Send the user's next request on an idle connection, or wait for the next one free."""
        self.busy = True
        self.pool.lend(self)

    def abort(self) -> None:
        """Abort the request: on its connection if it went, else drop it from the queue (on_failure
        Interrupted either way)."""
        if not self.busy:
            return
        if self.conn is not None:
            self.conn.abort()
            return
        self.pool.waiting.remove(self)  # still waiting for a connection: it never went
        self.busy = False
        self.owner.on_failure(self, Interrupted())


class Pool:
    """--max-inflight: the worker's users (sessions) share its `slots` connections, first come first served.

    A user whose request finds every connection busy waits for one. Its latency counts from when it was
    ready to send (the wait included: what its person would see); TTFT, TTFB and e2e count from the actual
    send (`sent` is set when it goes), and so does a timeout. Its wait counts in flight for the run (the
    driver's gauge), not for the target. Each connection is idle or lent to one user, never both: only
    `lend` (on a send) and `_back` (on an answer) move it. Once the driver stops, the users still waiting
    get Interrupted instead of a connection.
    """

    def __init__(self, transport: Any, slots: int, per_user: Callable[[int], RequestSource]) -> None:
        self.transport, self.slots, self.per_user = transport, slots, per_user
        self.idle: list[Channel] = []
        self.conns: list[Channel] = []
        self.sources: dict[Channel, Lent] = {}  # each connection's source, set to its user's when lent
        self.lent: dict[Channel, PoolChannel] = {}
        self.waiting: deque[PoolChannel] = deque()
        self.users = 0

    def channel(self, owner: Owner) -> Channel:
        """The next user's channel (the connections are made with the first)."""
        if not self.conns:
            for _ in range(self.slots):
                lent = Lent()
                conn: Channel = self.transport.channel(self, lent)
                self.sources[conn] = lent
                self.conns.append(conn)
            self.idle = self.conns[::-1]
        ch = PoolChannel(self, owner, self.per_user(self.users))
        self.users += 1
        return ch

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Open the pool's connections before t0."""
        n: int = await self.transport.preconnect(self.conns, within_s)
        return n

    def lend(self, ch: PoolChannel) -> None:
        """Send `ch`'s request on an idle connection, or queue it for the next one free. A request that
        cannot be built raises, as a plain channel's send does; its connection goes back to `idle`."""
        if not self.idle:
            self.waiting.append(ch)
            return
        conn = self.idle.pop()
        try:
            self._go(conn, ch)
        except Exception:
            self.idle.append(conn)
            raise

    def _go(self, conn: Channel, ch: PoolChannel) -> None:
        """Send `ch`'s request on `conn` (neither idle nor lent to anyone); on an exception `conn` is
        again neither, and `ch` has no connection."""
        self.lent[conn] = ch
        ch.conn = conn
        self.sources[conn].source = ch.source
        conn.canceller = ch.canceller  # (--cancel-*: the driver arms the user's channel, the send is here)
        conn.start = conn.sent = ch.sent = perf_counter_ns()
        try:
            conn.send()
        except Exception:  # (a bug building the request)
            del self.lent[conn]
            ch.conn = None
            raise

    def _back(self, conn: Channel) -> PoolChannel:
        """`conn`'s answer came: free its user, lend it on to the user who waited longest (each one whose
        request cannot be built, or every one once the driver stops, fails), else put it back on `idle`."""
        ch = self.lent.pop(conn)
        ch.conn = None
        ch.reader = conn.reader
        ch.busy = False
        while self.waiting:
            nxt = self.waiting.popleft()
            if getattr(nxt.owner, "stopping", False):
                nxt.busy = False
                nxt.owner.on_failure(nxt, Interrupted())
                continue
            try:
                self._go(conn, nxt)
            except Exception as e:
                nxt.busy = False
                nxt.owner.on_failure(nxt, e)
                continue
            return ch
        self.idle.append(conn)
        return ch

    def on_response(self, conn: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        """A connection's answer ended: its user's owner gets it (the connection goes on, see `_back`)."""
        ch = self._back(conn)
        ch.owner.on_response(ch, status, first, done, nbytes)

    def on_failure(self, conn: Channel, exc: BaseException) -> None:
        """A connection's request failed: its user's owner gets the failure (see `_back`)."""
        ch = self._back(conn)
        ch.owner.on_failure(ch, exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
