"""The dashboard's HTTP side: a threaded server in the collector process that only reads published snapshots.

The collector's thread publishes immutable snapshots (the status, the page data, the series so far) on the
Board and takes commands (stop, a change of load) from its queue; the server's threads never touch the
collector's state. Each request gets an answer from the latest snapshot; the event stream wakes on each
new status, and ends when its client goes away or the run ends.
"""

from __future__ import annotations

import hmac
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import monotonic
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from squall.collector.served import Served
from squall.units import PlanError

MAX_BODY = 4096  # bytes of a POST body: {"users": N} is a dozen
MAX_STREAMS = 32  # event streams at once; more are refused (503)
PING_S = 15.0  # an idle event stream writes a comment this often, so a client gone is found out
REPLY_S = 3.0  # how long a POST waits for the collector's thread to apply it (it turns twice a second)
CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing, or reads nothing, for this long is dropped
STREAM_S = 3600.0  # an event stream ends after this long (the page reconnects at once)
RETRY_MS = 500  # the event stream's reconnection delay: a hunt's next level binds again within a second
ROUTES = {
    "/": "GET",
    "/api/status": "GET",
    "/api/series": "GET",
    "/api/page": "GET",
    "/api/events": "GET",
    "/api/stop": "POST",
    "/api/load": "POST",
}


class Refused(Exception):
    """A request the run cannot take now: the HTTP status and the one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


Command = tuple[str, dict[str, Any], "Future[dict[str, Any]]"]


class Board:
    """What the collector's thread publishes for the server's threads, and the commands going back."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.status = b"{}"
        self.version = 0  # of the status: each new one wakes the event streams
        self.page = b'{"version": 0, "pending": true}'
        self.series: tuple[dict[str, Any], ...] = ()
        self.closed = False
        self.streams = 0  # event streams open now
        self.page_asked = 0.0  # when /api/page was last asked for (monotonic s)
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def publish(self, status: bytes, page: bytes | None = None, series: Any = None) -> None:
        """A new status (and page data, series), for every reader; wakes the event streams."""
        with self.cond:
            if page is not None:
                self.page = page
            if series is not None:
                self.series = tuple(series)
            self.status = status
            self.version += 1
            self.cond.notify_all()

    def close(self) -> None:
        """The run has ended: event streams send the last status and end."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_delivered(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every event stream has sent the last status and ended."""
        deadline = monotonic() + timeout_s
        with self.cond:
            while self.streams and monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - monotonic()))

    def ask(self, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        """Have the collector's thread do `kind` (stop, load) and return its answer; raises Refused."""
        reply: Future[dict[str, Any]] = Future()
        self.commands.put((kind, args, reply))
        try:
            return reply.result(REPLY_S)
        except FutureTimeout:
            reply.cancel()
            raise Refused(409, "the run is ending: nothing can be changed now") from None


class DashboardServer(Served):
    """Serves the Board on host:port from daemon threads; `token` (when set) is asked of every request."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        board: Board,
        page: Callable[[], bytes],
        check_load: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.board = board
        handler = type("Handler", (_Handler,), {"owner": self})
        self.token = token
        self.page = page
        self.check_load = check_load
        server_class = _Server6 if ":" in host else _Server
        super().__init__(server_class((host, port), handler), "squall-dashboard")
        port = self.port
        names = {host.lower(), "localhost", "127.0.0.1", "[::1]", f"[{host.lower()}]"}
        self.hosts = {f"{name}:{port}" for name in names}  # the Host headers taken
        # Bound to every address, any Host is taken: such a server asks for its token (plan.build).
        self.any_host = host in ("0.0.0.0", "::", "")


class _Server(ThreadingHTTPServer):
    errors = 0  # requests whose handler raised: counted, never printed (the run's console is not theirs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors += 1


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    owner: DashboardServer
    timeout = CLIENT_TIMEOUT_S
    server_version = "squall-dashboard"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        refused = self._foreign()
        if refused:
            self._json(403, {"error": refused})
            return
        if not self._authorised(query):
            self._json(403, {"error": "a token is needed: open the URL squall printed (with ?token=...)"})
            return
        allowed = ROUTES.get(url.path)
        if allowed is None:
            self._json(404, {"error": f"no such path {url.path!r}: see docs/live.md"})
            return
        if method != allowed:
            self._json(405, {"error": f"{url.path} takes {allowed}, not {method}"}, allow=allowed)
            return
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if method == "POST" and kind != "application/json":
            self._json(415, {"error": f"{url.path} takes Content-Type: application/json"})
            return
        board = self.owner.board
        if url.path == "/":
            self._send(200, self.owner.page(), "text/html; charset=utf-8")
        elif url.path == "/api/status":
            self._send(200, board.status, "application/json")
        elif url.path == "/api/page":
            board.page_asked = monotonic()
            self._send(200, board.page, "application/json")
        elif url.path == "/api/series":
            self._series(query)
        elif url.path == "/api/events":
            self._events()
        else:
            self._command(url.path)

    def _foreign(self) -> str:
        """Why a request comes from elsewhere (a Host this server is not: DNS rebinding; an Origin not its
        own: another site's page); empty when it does not."""
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.owner.hosts and not (self.owner.any_host and host):
            return f"Host {host[:80]!r} is not this dashboard's address"
        origin = self.headers.get("Origin")
        if origin is not None and origin.strip().lower() != f"http://{host}":
            return (
                f"Origin {origin[:80]!r} is not this dashboard's own: requests from other pages are refused"
            )
        return ""

    def _authorised(self, query: dict[str, list[str]]) -> bool:
        token = self.owner.token
        if not token:
            return True
        given = (query.get("token") or [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _series(self, query: dict[str, list[str]]) -> None:
        series = self.owner.board.series
        start = (query.get("from") or ["0"])[0]
        if not (start.isascii() and start.isdigit() and len(start) < 10):
            shown = start[:20] + ("..." if len(start) > 20 else "")
            self._json(
                400, {"error": f"from={shown!r}: give the index of the first second wanted (0, 1, ...)"}
            )
            return
        # (orjson holds the GIL while it writes: the entries cannot change under it)
        self._send(200, orjson.dumps(list(series[int(start) :]), option=orjson.OPT_NON_STR_KEYS))

    def _events(self) -> None:
        board = self.owner.board
        with board.cond:
            if board.streams >= MAX_STREAMS:
                full = True
            else:
                full = False
                board.streams += 1
        if full:
            self._json(503, {"error": f"at most {MAX_STREAMS} event streams at once"})
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(f"retry: {RETRY_MS}\n\n".encode())
            seen, end = -1, monotonic() + STREAM_S
            while monotonic() < end:
                with board.cond:
                    board.cond.wait_for(lambda seen=seen: board.version != seen or board.closed, PING_S)
                    version, status, closed = board.version, board.status, board.closed
                if version != seen:
                    self.wfile.write(b"data: " + status + b"\n\n")
                    seen = version
                else:
                    self.wfile.write(b": ping\n\n")
                self.wfile.flush()
                if closed:
                    return
        except (OSError, ValueError):  # the client went away (or the server is closing)
            return
        finally:
            with board.cond:
                board.streams -= 1
                board.cond.notify_all()

    def _command(self, path: str) -> None:
        try:
            if path == "/api/stop":
                self._json(202, self.owner.board.ask("stop", {}))
                return
            args = self.owner.check_load(self._body())
            self._json(202, self.owner.board.ask("load", args))
        except Refused as e:
            self._json(e.status, {"error": str(e)})
        except PlanError as e:
            self._json(400, {"error": str(e)})

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            raise PlanError(f'send a JSON body of at most {MAX_BODY} bytes: {{"users": N}} or {{"rate": R}}')
        try:
            body = orjson.loads(self.rfile.read(length))
        except orjson.JSONDecodeError:
            raise PlanError('the body is not JSON: send {"users": N} or {"rate": R}') from None
        if not isinstance(body, dict):
            raise PlanError('the body must be a JSON object: {"users": N} or {"rate": R}')
        return body

    def _json(self, status: int, body: dict[str, Any], allow: str = "") -> None:
        self._send(status, orjson.dumps(body), allow=allow)

    def _send(self, status: int, body: bytes, kind: str = "application/json", allow: str = "") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client went away
            pass
