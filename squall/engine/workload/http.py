"""The one request builder (run, llm and scenario steps, on every transport) and `run`'s request source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from squall import __version__
from squall.plan.specs import RequestSpec

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Headers = tuple[tuple[str, str], ...]


class BadRequest(ValueError):
    """A request that cannot go on the wire as built (a line break or an unencodable character in a header
    rendered from data): counted as the error kind `bad_request`, never sent."""


def authority(url: str) -> str:
    """The Host header's value for a URL: IPv6 literals in brackets, the port only when not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    return host if port == default else f"{host}:{port}"


def target(url: str) -> str:
    """The request-target of a URL: its path plus query."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True, slots=True)
class Request:
    """One request as sent: `headers` are all of them but Content-Length, in the order they go out."""

    method: str
    url: str
    headers: Headers
    body: bytes = b""

    def prefix(self) -> bytes:
        """The request line and headers, without Content-Length and the blank line that ends the head."""
        lines = [f"{self.method} {target(self.url)} HTTP/1.1", *(f"{n}: {v}" for n, v in self.headers)]
        head = "\r\n".join(lines) + "\r\n"
        try:
            return head.encode("latin-1")  # HTTP/1.1's own octets: what -H values are checked to fit
        except UnicodeEncodeError:
            pass
        try:  # a value rendered from a data row that latin-1 cannot carry: UTF-8, as aiohttp sends it
            return head.encode()
        except UnicodeEncodeError as e:
            raise BadRequest(f"a header cannot be encoded: {e}") from None

    def needs_length(self, body: bytes) -> bool:
        """Whether Content-Length must be added for `body` (the user did not set it)."""
        if any(n.lower() == "content-length" for n, _ in self.headers):
            return False
        return bool(body) or self.method in _BODY_METHODS

    def encode(self) -> bytes:
        """The wire bytes: head, Content-Length when the body (or the method) calls for one, body."""
        return self.prefix() + frame(self.body, self.needs_length(self.body))


def frame(body: bytes, length: bool = True) -> bytes:
    """What follows a request's headers: its Content-Length line (when asked for), the blank line, body."""
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body) if length else b"\r\n" + body


def build(method: str, url: str, headers: Headers = (), body: bytes = b"", defaults: Headers = ()) -> Request:
    """The ONE request builder: Host, User-Agent and `defaults`, each unless the user's headers name it
    (in any case), then the user's headers; BadRequest when a header value holds a line break."""
    names = set()
    for name, value in headers:
        if "\r" in value or "\n" in value:  # a value rendered from data must not add headers of its own
            raise BadRequest(f"header {name!r} contains a line break")
        names.add(name.lower())
    lead = [("Host", authority(url)), ("User-Agent", f"squall/{__version__}"), *defaults]
    return Request(method, url, (*((n, v) for n, v in lead if n.lower() not in names), *headers), body)


def build_request(spec: RequestSpec) -> bytes:
    """The wire bytes of `run`'s request: request line, Host, the user's headers, Content-Length, body."""
    return build(spec.method, spec.url, spec.headers, spec.body).encode()


class HttpSource:
    """`run`'s requests: the same one every time, its bytes built once; no answer reader."""

    streams = False

    def __init__(self, spec: RequestSpec) -> None:
        self.request = build(spec.method, spec.url, spec.headers, spec.body)
        self.wire = self.request.encode()

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its number (always 0: one request)."""
        return self.wire, 0

    def next_request(self) -> tuple[Request, int]:
        """The next request, for a transport that frames requests itself, and its number."""
        return self.request, 0

    def reader(self, index: int) -> Any:
        """No answer reader: `run` counts bytes only."""
        return None
