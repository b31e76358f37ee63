"""--max-inflight's Pool with fake connections: each connection is idle or lent to one user, never both."""

from typing import Any

import pytest

from squall.engine.transport.base import Channel, Interrupted
from squall.engine.workload.pool import Pool, PoolChannel


class Conn(Channel):
    """A connection that builds its request at send (as the transports do) and never answers by itself."""

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source
        self.sends = 0

    def send(self) -> None:
        self.source.next()
        self.busy = True
        self.sends += 1

    def abort(self) -> None:
        pass


class Transport:
    def channel(self, owner: Any, source: Any) -> Channel:
        return Conn(source)


class User:
    """A user's request source; `bad` ones raise while their request is built."""

    def __init__(self, bad: bool = False) -> None:
        self.bad = bad

    def next(self) -> tuple[bytes, int]:
        if self.bad:
            raise ValueError("cannot build")
        return b"", 0


class Owner:
    def __init__(self) -> None:
        self.stopping = False
        self.answers: list[Channel] = []
        self.failures: list[tuple[Channel, type]] = []

    def on_response(self, ch: Channel, status: int, first: int, done: int, nbytes: int) -> None:
        self.answers.append(ch)

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self.failures.append((ch, type(exc)))


def pool_of(users: list[User], slots: int = 1) -> tuple[Pool, Owner, list[PoolChannel]]:
    owner = Owner()
    pool = Pool(Transport(), slots, lambda u: users[u])
    chans = [pool.channel(owner) for _ in users]
    return pool, owner, chans  # type: ignore[return-value]


def places(pool: Pool, conn: Channel) -> int:
    return pool.idle.count(conn) + (conn in pool.lent)


def test_a_waiter_that_cannot_be_built_passes_the_connection_to_the_next_once() -> None:
    pool, owner, (a, b, c) = pool_of([User(), User(bad=True), User()])
    a.send()
    b.send()
    c.send()
    conn = pool.conns[0]
    assert pool.lent[conn] is a and len(pool.waiting) == 2
    pool.on_response(conn, 200, 0, 0, 0)
    assert owner.failures == [(b, ValueError)] and owner.answers == [a]
    assert pool.lent[conn] is c and c.conn is conn and places(pool, conn) == 1
    assert pool.idle == [] and not b.busy and c.busy
    pool.on_response(conn, 200, 0, 0, 0)
    assert pool.idle == [conn] and places(pool, conn) == 1 and not pool.lent


def test_when_every_waiter_fails_the_connection_is_idle_exactly_once() -> None:
    pool, owner, (a, b, c) = pool_of([User(), User(bad=True), User(bad=True)])
    a.send()
    b.send()
    c.send()
    conn = pool.conns[0]
    pool.on_failure(conn, Interrupted())
    assert owner.failures == [(b, ValueError), (c, ValueError), (a, Interrupted)]
    assert pool.idle == [conn] and not pool.lent and not pool.waiting
    a.send()  # the connection is lent again, from idle, once
    assert pool.lent[conn] is a and pool.idle == []


def test_a_send_that_cannot_be_built_raises_and_leaves_the_connection_idle() -> None:
    pool, _owner, (a, b) = pool_of([User(bad=True), User()])
    with pytest.raises(ValueError):
        a.send()
    conn = pool.conns[0]
    assert pool.idle == [conn] and not pool.lent and a.conn is None
    b.send()
    assert pool.lent[conn] is b and places(pool, conn) == 1


def test_once_the_driver_stops_the_waiting_users_are_interrupted_not_sent() -> None:
    pool, owner, (a, b, c) = pool_of([User(), User(), User()])
    a.send()
    b.send()
    c.send()
    conn = pool.conns[0]
    owner.stopping = True
    pool.on_response(conn, 200, 0, 0, 0)
    assert owner.failures == [(b, Interrupted), (c, Interrupted)] and owner.answers == [a]
    assert conn.sends == 1 and pool.idle == [conn] and not b.busy and not c.busy  # type: ignore[attr-defined]


def test_the_users_canceller_goes_with_its_send() -> None:
    pool, _owner, (a,) = pool_of([User()])
    a.canceller = marker = object()
    a.send()
    assert pool.conns[0].canceller is marker
