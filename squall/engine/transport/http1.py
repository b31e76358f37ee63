"""One HTTP/1.1 connection as a uvloop protocol, its responses parsed by httptools; the raw transport's
channels own one each and hear back through `done`/`fail`/`resend` and their owner's callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter_ns
from typing import Any

import httptools

from squall.engine.transport.base import Abandoned, AnswerCut


class ConnectError(OSError):
    """The TCP (or TLS) connection could not be made."""


class TlsError(OSError):
    """The TLS handshake failed (certificate not trusted, wrong host name, protocol mismatch)."""


class ProtocolError(Exception):
    """The peer's bytes are not valid HTTP/1.1."""


# How an answer ends (`framing_of` its head), asked only when its connection closes before it did.
HEAD_OPEN = 0  # its head has not ended yet: a close now means no answer (`reset`)
FRAMED = 1  # by Content-Length, chunked encoding, or no body: a close before the end cuts it (`truncated`)
TO_CLOSE = 2  # its body ends where the connection does (no length, not chunked): a clean close ends it

HEAD_BYTES = 64 << 10  # kept of a head that came in many reads (a longer one is taken as never ended)


def interim(status: int) -> bool:
    """An interim (1xx) answer, which a final one follows on the same connection (101 ends the exchange)."""
    return 100 <= status < 200 and status != 101


class _Stop(Exception):
    """Raised by `_Framing` once the final answer's head has ended."""


class _Framing:
    """Reads heads (interim ones, then the final one) for how the final answer's body is delimited."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.length = False
        self.coding: bytes | None = None
        self.framing = HEAD_OPEN

    def on_message_begin(self) -> None:
        self.length, self.coding = False, None

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.length = True
        elif name == b"transfer-encoding":
            self.coding = value

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if interim(status):
            return
        if status in (204, 304):
            self.framing = FRAMED
        elif self.coding is not None:  # RFC 9112 6.3: chunked last, or the body ends at the close
            last = self.coding.rsplit(b",", 1)[-1].strip().lower()
            self.framing = FRAMED if last == b"chunked" else TO_CLOSE
        else:
            self.framing = FRAMED if self.length else TO_CLOSE
        raise _Stop


def framing_of(head: bytes) -> int:
    """How the final answer whose head starts `head` is delimited (HEAD_OPEN: its head is not all there)."""
    reading = _Framing()
    with contextlib.suppress(httptools.HttpParserError):  # _Stop, or bytes the real parser will refuse
        reading.parser.feed_data(head)
    return reading.framing


class Conn(asyncio.Protocol):
    """One keep-alive TCP connection of a channel; parses responses with httptools.

    Interim (1xx) answers are skipped: the final answer after them is the request's. An answer cut by the
    connection's end fails as AnswerCut once its head has ended (`truncated`), as a reset before that; only a
    body delimited by the close itself (no length, not chunked) ends well with it.
    """

    __slots__ = (
        "ch",
        "closed",
        "first",
        "head",
        "idle_made",
        "more",
        "more_n",
        "nbytes",
        "now",
        "parser",
        "transport",
    )

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.first = 0
        self.now = 0
        self.nbytes = 0
        self.closed = False
        self.idle_made = False  # opened earlier, idle since (see connection_lost)
        # An answer's first read, and the reads after it until its body began: its head is in them (read
        # again only if the connection closes before the answer ended).
        self.head = b""
        self.more: list[bytes] | None = None
        self.more_n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # The time the bytes arrived: the first chunk's is the response's first byte, the last chunk's
        # (the one that completes it) its end.
        self.now = now = perf_counter_ns()
        if not self.first:
            self.first = now
            self.head = data
            self.more = None
        elif not self.nbytes:
            self.more_head(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:  # one of ours raised: squall's fault, not the peer's
            self.close()
            self.ch.fail(self, e.__context__ or e)
        except httptools.HttpParserError as e:
            self.close()
            self.ch.fail(self, ProtocolError(f"bad HTTP response: {e}"))

    def more_head(self, data: bytes) -> None:
        """Keep a read that may hold more of the answer's head (a head in many reads: a trickle)."""
        more = self.more
        if more is None:
            self.more = [data]  # (kept, not copied: read again only if the connection closes early)
            self.more_n = len(data)
        elif self.more_n < HEAD_BYTES:
            more.append(data)
            self.more_n += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.first:
            # A connection made earlier (before the run, or kept alive after an answer) that the server
            # closed while it sat idle (its idle timeout, or a close after an answer without
            # `Connection: close`) just as the next request went out: that request goes again, once, on a
            # new connection.
            if not (self.idle_made and self.ch.resend(self)):
                self.ch.fail(self, ConnectionResetError("connection closed before a response"))
            return
        ch = self.ch
        if ch.conn is not self or not ch.busy:
            return  # no answer is awaited on this connection (it closed after one, or was replaced)
        framing = framing_of(self.head + b"".join(self.more)[:HEAD_BYTES] if self.more else self.head)
        if framing == TO_CLOSE and exc is None:  # the body ended where the connection did
            ch.done(self, self.parser.get_status_code(), self.first, perf_counter_ns(), self.nbytes)
        elif framing == HEAD_OPEN:
            ch.fail(self, ConnectionResetError("connection closed before the response's head ended"))
        else:
            ch.fail(self, AnswerCut("connection closed before the response's body ended"))

    # httptools callbacks: the hot path, kept to two Python calls per response
    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and interim(status):  # the final answer follows
            return
        keep = parser.should_keep_alive()
        if not keep:
            self.close()
        self.idle_made = keep
        ch = self.ch
        if ch.conn is self and ch.busy:
            ch.busy = False
            if self.first:
                ch.owner.on_response(ch, status, self.first, self.now, self.nbytes)
            else:  # more bytes in the chunk that held the last response: nothing was asked for them
                self.close()
                ch.owner.on_failure(ch, ProtocolError("a response arrived before its request was sent"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def end_at_head(self) -> None:
        """The answer ends with its head (HEAD: no body follows, whatever Content-Length says)."""
        parser = self.parser
        if interim(parser.get_status_code()):
            return
        self.parser = httptools.HttpResponseParser(self)
        keep = parser.should_keep_alive()
        self.idle_made = keep
        if not keep:
            self.close()
        if self.first:
            self.ch.done(self, parser.get_status_code(), self.first, self.now, self.nbytes)
        else:
            self.close()
            self.ch.fail(self, ProtocolError("a response arrived before its request was sent"))


class HeadConn(Conn):
    """For HEAD: no body follows the headers, whatever Content-Length says."""

    __slots__ = ()

    on_headers_complete = Conn.end_at_head

    def on_message_complete(self) -> None:
        pass


class StreamConn(Conn):
    """For LLM answers: body bytes go to the channel's AnswerReader with the time they arrived."""

    __slots__ = ()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after" and self.ch.reader is not None:
            self.ch.reader.retry_after = value

    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)
        reader = self.ch.reader
        if reader is not None:
            reader.feed(body, self.now)


class CutStreamConn(StreamConn):
    """For LLM answers a run may abandon (--cancel-rate): once the stream reaches its channel's cut point,
    the answer is abandoned at that read (the rest of it is not parsed) and the connection closed."""

    __slots__ = ()

    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)
        ch = self.ch
        reader = ch.reader
        if reader is not None:
            reader.feed(body, self.now)
            if ch.cut_at and reader.events() >= ch.cut_at:
                raise Abandoned()  # (through the parser: data_received closes the connection, fails the send)

    def on_message_complete(self) -> None:
        ch = self.ch
        if ch.conn is self and ch.busy and ch.timer is not None:
            ch.timer.cancel()  # the answer ended first
            ch.timer = None
        super().on_message_complete()


class FetchConn(Conn):
    """For `RawTransport.request`: the answer's headers and its body's first `ch.keep` bytes are kept (or
    the body is fed to its reader)."""

    __slots__ = ("chunks", "headers", "kept")

    def __init__(self, ch: Any) -> None:
        super().__init__(ch)
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.kept = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if self.ch.reader is not None and name.lower() == b"retry-after":
            self.ch.reader.retry_after = value

    def on_headers_complete(self) -> None:
        if interim(self.parser.get_status_code()):
            self.headers = []  # an interim answer's fields are not the final one's
        elif self.ch.head_only:
            self.end_at_head()

    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)
        ch = self.ch
        if ch.reader is not None:
            ch.reader.feed(body, self.now)
        elif self.kept < ch.keep:
            body = body[: ch.keep - self.kept]
            self.kept += len(body)
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.ch.head_only:
            super().on_message_complete()
