"""The raw transport's HTTP/1.1 connection fed random and adversarial bytes at random split points: nothing a
peer sends raises out of it, and each request ends exactly once (an answer, or a failure of a known kind)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from squall.engine.transport.base import AnswerCut
from squall.engine.transport.http1 import Conn, ProtocolError

SETTINGS = settings(max_examples=200, deadline=None, database=None)


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class FakeChannel:
    """A channel awaiting one answer at a time, recording how each ended."""

    def __init__(self) -> None:
        self.conn: Conn | None = None
        self.busy = True
        self.reader = None
        self.head_only = False
        self.owner = self
        self.ends: list[tuple[str, Any]] = []

    def on_response(self, ch: Any, status: int, first: int, done: int, nbytes: int) -> None:
        self.ends.append(("ok", (status, nbytes)))

    def on_failure(self, ch: Any, exc: BaseException) -> None:
        self.ends.append(("fail", exc))

    def done(self, conn: Conn, status: int, first: int, done: int, nbytes: int) -> None:
        if conn is self.conn and self.busy:
            self.busy = False
            self.on_response(self, status, first, done, nbytes)

    def fail(self, conn: Conn | None, exc: BaseException) -> None:
        if (conn is None or conn is self.conn) and self.busy:
            self.busy = False
            self.on_failure(self, exc)

    def resend(self, conn: Conn) -> bool:
        return False


def connect() -> tuple[FakeChannel, Conn]:
    ch = FakeChannel()
    conn = Conn(ch)
    ch.conn = conn
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    return ch, conn


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in [*points, len(data)]:
        if p > last:
            out.append(data[last:p])
            last = p
    return out


KNOWN = (ProtocolError, AnswerCut, ConnectionResetError)


@SETTINGS
@given(st.binary(max_size=600), st.lists(st.integers(0, 700), max_size=8), st.booleans())
def test_random_bytes_never_raise_and_end_the_request_once(data: bytes, cuts: list[int], reset: bool) -> None:
    ch, conn = connect()
    for piece in pieces(data, cuts):
        if conn.closed:
            break
        conn.data_received(piece)
    conn.connection_lost(ConnectionResetError() if reset else None)
    assert len(ch.ends) == 1
    how, what = ch.ends[0]
    assert how == "ok" or isinstance(what, KNOWN)


def answer(status: int, body: bytes, framing: str) -> bytes:
    if framing == "length":
        return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    return b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (status, chunks)


@SETTINGS
@given(
    st.sampled_from([200, 204, 404, 429, 500]),
    st.binary(max_size=200),
    st.sampled_from(["length", "chunked"]),
    st.lists(st.sampled_from([100, 102, 103]), max_size=2),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_valid_answers_in_any_pieces_after_interim_ones(
    status: int, body: bytes, framing: str, interims: list[int], cuts: list[int]
) -> None:
    if status == 204:
        body = b""
    data = b"".join(b"HTTP/1.1 %d I\r\n\r\n" % s for s in interims) + answer(status, body, framing)
    ch, conn = connect()
    for piece in pieces(data, cuts):
        conn.data_received(piece)
    assert ch.ends == [("ok", (status, len(body)))]
    conn.connection_lost(None)  # a close after the answer ended changes nothing
    assert len(ch.ends) == 1


@SETTINGS
@given(
    st.binary(min_size=1, max_size=200),
    st.sampled_from(["length", "chunked"]),
    st.integers(1, 10_000),
    st.booleans(),
)
def test_an_answer_cut_anywhere_is_never_ok(body: bytes, framing: str, cut: int, reset: bool) -> None:
    data = answer(200, body, framing)
    cut = cut % len(data)  # strictly before the answer's end
    ch, conn = connect()
    if cut:
        conn.data_received(data[:cut])
    conn.connection_lost(ConnectionResetError() if reset else None)
    assert len(ch.ends) == 1
    how, what = ch.ends[0]
    assert how == "fail" and isinstance(what, AnswerCut | ConnectionResetError)
    head_end = data.index(b"\r\n\r\n") + 4
    assert isinstance(what, AnswerCut) == (cut >= head_end)
