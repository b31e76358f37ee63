"""One HTTP/1.1 connection as a uvloop protocol, its responses parsed by httptools; the raw transport's
channels own one each and hear back through `done`/`fail`/`resend` and their owner's callbacks."""

from __future__ import annotations

import asyncio
from time import perf_counter_ns
from typing import Any

import httptools

from squall.engine.transport.base import AnswerCut


class ConnectError(OSError):
    """The TCP (or TLS) connection could not be made."""


class TlsError(OSError):
    """The TLS handshake failed (certificate not trusted, wrong host name, protocol mismatch)."""


class ProtocolError(Exception):
    """The peer's bytes are not valid HTTP/1.1."""


class Conn(asyncio.Protocol):
    """One keep-alive TCP connection of a channel; parses responses with httptools."""

    __slots__ = ("ch", "closed", "first", "idle_made", "nbytes", "now", "parser", "transport")

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.first = 0
        self.now = 0
        self.nbytes = 0
        self.closed = False
        self.idle_made = False  # opened before the run and not yet answered on (see connection_lost)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # The time the bytes arrived: the first chunk's is the response's first byte, the last chunk's
        # (the one that completes it) its end.
        self.now = now = perf_counter_ns()
        if not self.first:
            self.first = now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.close()
            self.ch.fail(self, ProtocolError(f"bad HTTP response: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self.parser
        if exc is None and self.first and parser.get_status_code() and not parser.should_keep_alive():
            # The peer closed cleanly after a status line, and the response was not keep-alive: a body with
            # neither Content-Length nor chunked encoding ends where the connection does.
            self.ch.done(self, parser.get_status_code(), self.first, perf_counter_ns(), self.nbytes)
        elif self.first:
            self.ch.fail(self, AnswerCut("connection closed before the response ended"))
        elif self.idle_made and self.ch.resend(self):
            # A connection opened before the run that the server closed while it sat idle (its idle
            # timeout) just as the first request went out: that request goes again on a new one.
            pass
        else:
            self.ch.fail(self, ConnectionResetError("connection closed before a response"))

    # httptools callbacks: the hot path, kept to two Python calls per response
    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        if not parser.should_keep_alive():
            self.close()
        self.idle_made = False
        ch = self.ch
        if ch.conn is self and ch.busy:
            ch.busy = False
            if self.first:
                ch.owner.on_response(ch, parser.get_status_code(), self.first, self.now, self.nbytes)
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
        self.parser = httptools.HttpResponseParser(self)
        self.idle_made = False
        if not parser.should_keep_alive():
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


class FetchConn(Conn):
    """For `RawTransport.request`: the answer's headers and body are kept (or fed to its reader)."""

    __slots__ = ("chunks", "headers")

    def __init__(self, ch: Any) -> None:
        super().__init__(ch)
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if self.ch.reader is not None and name.lower() == b"retry-after":
            self.ch.reader.retry_after = value

    def on_headers_complete(self) -> None:
        if self.ch.head_only:
            self.end_at_head()

    def on_body(self, body: bytes) -> None:
        self.nbytes += len(body)
        reader = self.ch.reader
        if reader is not None:
            reader.feed(body, self.now)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.ch.head_only:
            super().on_message_complete()
