"""Run a built-in target on its own uvloop loop in a daemon thread: the harness tests use for both targets."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

import uvloop


class TargetThread:
    """Context manager: `start()` binds a server on the thread's loop; `stop(server)` closes it on exit."""

    def __init__(
        self,
        start: Callable[[], Awaitable[asyncio.Server]],
        stop: Callable[[asyncio.Server], Awaitable[None]],
        name: str,
    ) -> None:
        self._start, self._stop = start, stop
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TargetThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        loop = uvloop.new_event_loop()
        try:
            server = loop.run_until_complete(self._start())
        except BaseException as exc:  # handed to __enter__ and re-raised in the caller's thread
            self._error = exc
            loop.close()
            self._started.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._loop = loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._stop(server))
            loop.close()


async def close_server(server: asyncio.Server, connections: Iterable[asyncio.BaseProtocol]) -> None:
    """Stop accepting, abort open connections, and let their connection_lost callbacks run."""
    server.close()
    for conn in list(connections):
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.abort()
    await server.wait_closed()
    await asyncio.sleep(0)


def serve_until_signal(
    start: Callable[[], Awaitable[asyncio.Server]],
    stop: Callable[[asyncio.Server], Awaitable[None]],
    ready: Callable[[int], None] | None,
) -> None:
    """Serve on uvloop until SIGINT or SIGTERM, calling ready(port) once listening."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        server = await start()
        try:
            if ready is not None:
                ready(server.sockets[0].getsockname()[1])
            await stopping.wait()
        finally:
            await stop(server)

    with contextlib.suppress(KeyboardInterrupt):  # a SIGINT that lands before the handlers are installed
        uvloop.run(main())
