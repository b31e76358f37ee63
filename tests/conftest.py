import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from squall.targets.serve import ServerThread

# Property tests judge answers, not speed: on a busy box one example can take longer than hypothesis's 200 ms
# deadline, which would fail a correct test (speed is measured in bench/).
settings.register_profile("squall", deadline=None)
settings.load_profile("squall")


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


@pytest.fixture(scope="session")
def check_result() -> Callable[[dict], None]:
    """`check_result(doc)`: assert that a result document matches docs/result-schema.json."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "result-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    def check(doc: dict) -> None:
        errors = sorted(validator.iter_errors(json.loads(json.dumps(doc))), key=lambda e: list(e.path))
        assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]

    return check
