from collections.abc import Iterator

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
