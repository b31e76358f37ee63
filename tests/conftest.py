import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from squall.targets.serve import ServerThread


@pytest.fixture(scope="session")
def target() -> Iterator[ServerThread]:
    """The built-in target on 127.0.0.1, in a thread of the test process."""
    with ServerThread() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def byte_server() -> Callable[..., int]:
    """`byte_server(handler, ssl=None) -> port`: an asyncio stream server on 127.0.0.1 in a daemon thread.

    For answers the built-in target cannot give (chunked, close-delimited, TLS); it lives 60 s at most.
    """

    def start(handler: Handler, ssl: Any = None) -> int:
        ready = threading.Event()
        port: list[int] = []

        async def main() -> None:
            server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(60)

        threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
        assert ready.wait(5), "test server did not start"
        return port[0]

    return start
