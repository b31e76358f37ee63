"""The one request builder, at the byte level: run, llm and a scenario step send exactly one Host header
(the user's replaces squall's, in any case), IPv6 hosts in brackets, on both transports."""

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from squall import __version__
from squall.engine import run
from squall.engine.workload.http import build, build_request
from squall.plan.load import Closed
from squall.plan.plan import Client, Outputs, Plan
from squall.plan.scenario.load import load_scenario
from squall.plan.shard import Spread
from squall.plan.specs import LlmSpec, RequestSpec
from squall.plan.stop import Stop

TRANSPORTS = ("raw", "aiohttp")
ANSWER = b'{"choices":[{"message":{"content":"hi"}}],"usage":{"completion_tokens":1,"prompt_tokens":1}}'


class Capture:
    """A server on `host` that keeps every request's raw bytes and answers each with a small JSON body."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.requests: list[bytes] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> "Capture":
        self._thread.start()
        assert self._ready.wait(5), "capture server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{'[::1]' if ':' in self.host else self.host}:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._conn, self.host, 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await asyncio.wait_for(self._stop.wait(), 60)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(params=["127.0.0.1", "::1"])
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    if request.param == "::1" and not ipv6():
        pytest.skip("no IPv6 loopback")
    with Capture(request.param) as c:
        yield c


def headers(raw: bytes, name: bytes) -> list[bytes]:
    lines = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return [v.strip() for n, _, v in (ln.partition(b":") for ln in lines) if n.strip().lower() == name]


def host_of(c: Capture) -> bytes:
    return (f"[{c.host}]" if ":" in c.host else c.host).encode() + b":%d" % c.port


def go(plan: Plan) -> None:
    res = run(plan.validate())
    assert (res.summary["requests"], res.summary["errors"]) == (1, 0), res.summary["error_kinds"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_run_sends_one_host(capture: Capture, transport: str) -> None:
    for hdrs in ((), (("host", "example.test"), ("user-agent", "me/1"))):
        spec = RequestSpec(capture.url + "/p?q=1", headers=hdrs)
        go(
            Plan(
                spec,
                load=Closed(connections=1),
                stop=Stop(requests=1),
                spread=Spread(workers=1),
                outputs=Outputs(quiet=True),
                client=Client(transport=transport),
            )
        )
    default, mine = capture.requests
    assert headers(default, b"host") == [host_of(capture)]
    assert headers(default, b"user-agent") == [f"squall/{__version__}".encode()]
    assert headers(mine, b"host") == [b"example.test"]
    assert headers(mine, b"user-agent") == [b"me/1"]
    if transport == "raw":
        assert default == b"GET /p?q=1 HTTP/1.1\r\nHost: %s\r\nUser-Agent: squall/%s\r\n\r\n" % (
            host_of(capture),
            __version__.encode(),
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_llm_sends_one_host(capture: Capture, transport: str) -> None:
    for hdrs in ((), (("HOST", "llm.test"), ("content-type", "application/json; charset=utf-8"))):
        spec = RequestSpec(capture.url + "/v1/chat/completions", "POST", hdrs)
        llm = LlmSpec(api="chat", stream=False, api_keys=("k",))
        go(
            Plan(
                spec,
                load=Closed(connections=1),
                stop=Stop(requests=1),
                spread=Spread(workers=1),
                outputs=Outputs(quiet=True),
                client=Client(transport=transport),
                llm=llm,
            )
        )
    default, mine = capture.requests
    assert headers(default, b"host") == [host_of(capture)]
    assert headers(default, b"content-type") == [b"application/json"]
    assert headers(default, b"authorization") == [b"Bearer k"]
    assert headers(mine, b"host") == [b"llm.test"]
    assert headers(mine, b"content-type") == [b"application/json; charset=utf-8"]
    body = default.partition(b"\r\n\r\n")[2]
    assert headers(default, b"content-length") == [str(len(body)).encode()]
    if transport == "raw":
        assert default.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n" % host_of(capture))


SCENARIO = """\
base_url: {url}
scenarios:
  - name: s
    steps:
      - name: plain
        request: {{path: /a}}
      - name: mine
        request: {{path: /b, headers: {{hOsT: step.test}}}}
      - name: ask
        llm: {{path: /v1/chat/completions, prompt: hi, stream: false}}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_scenario_steps_send_one_host(capture: Capture, transport: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(url=capture.url))
    sc = load_scenario(path)
    spec = RequestSpec(sc.base_url + "/")
    plan = Plan(
        spec,
        load=Closed(connections=1),
        client=Client(transport=transport),
        outputs=Outputs(quiet=True),
        stop=Stop(requests=1),
        spread=Spread(workers=1),
        scenario=sc,
    )
    res = run(plan.validate())
    assert res.summary["errors"] == 0
    plain, mine, ask = capture.requests
    assert headers(plain, b"host") == headers(ask, b"host") == [host_of(capture)]
    assert headers(mine, b"host") == [b"step.test"]
    if transport == "raw":
        assert plain == b"GET /a HTTP/1.1\r\nHost: %s\r\nUser-Agent: squall/%s\r\n\r\n" % (
            host_of(capture),
            __version__.encode(),
        )


LAYERED = """\
base_url: {url}
headers: {{Host: file.test, X-Team: a}}
scenarios:
  - name: s
    steps:
      - name: plain
        request: {{path: /a}}
      - name: mine
        request: {{path: /b, headers: {{hOsT: step.test, x-team: b}}}}
      - name: ask
        llm: {{path: /v1/chat/completions, prompt: hi, stream: false, headers: {{X-TEAM: c}}}}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_steps_header_replaces_the_files_of_that_name(
    capture: Capture, transport: str, tmp_path: Path
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(LAYERED.format(url=capture.url))
    plan = Plan(
        RequestSpec(capture.url + "/"),
        load=Closed(connections=1),
        client=Client(transport=transport),
        outputs=Outputs(quiet=True),
        stop=Stop(requests=1),
        spread=Spread(workers=1),
        scenario=load_scenario(path),
    )
    assert run(plan.validate()).summary["errors"] == 0
    plain, mine, ask = capture.requests
    got = [(headers(r, b"host"), headers(r, b"x-team")) for r in (plain, mine, ask)]
    assert got == [
        ([b"file.test"], [b"a"]),
        ([b"step.test"], [b"b"]),
        ([b"file.test"], [b"c"]),
    ]


def test_the_builder() -> None:
    assert build("GET", "http://[::1]/x").encode() == (
        b"GET /x HTTP/1.1\r\nHost: [::1]\r\nUser-Agent: squall/%s\r\n\r\n" % __version__.encode()
    )
    assert build("GET", "https://[::1]:8443/").headers[0] == ("Host", "[::1]:8443")
    assert build("GET", "https://h:443/").headers[0] == ("Host", "h")
    req = build("POST", "http://h:81/", (("X-A", "1"), ("host", "o")), b"", (("Accept", "a"),))
    assert req.headers == (
        ("User-Agent", f"squall/{__version__}"),
        ("Accept", "a"),
        ("X-A", "1"),
        ("host", "o"),
    )
    assert req.encode().endswith(b"Content-Length: 0\r\n\r\n")
    assert build_request(RequestSpec("http://h/", headers=(("Content-Length", "0"),))).count(b"Length") == 1
