"""The raw transport's `request` path (scenario steps on --transport raw), against 127.0.0.1 servers: a
request that cannot be encoded never takes a channel, header values go out as UTF-8, a line break rendered
into a header is a counted `bad_request`, and a kept-alive connection the peer closed is resent once."""

import asyncio
import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from squall.engine import run
from squall.engine.transport.raw import RawTransport
from squall.engine.workload.http import build
from squall.plan.load import Closed
from squall.plan.plan import Client, Outputs, Plan
from squall.plan.scenario.load import load_scenario
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def recording(heads: list[bytes], answers_per_conn: int | None = None) -> Callable:
    """A handler keeping every request head; after `answers_per_conn` answers it closes the connection on
    the next request without answering it (as a server whose idle timeout crosses the client's send)."""

    async def conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if answers_per_conn is not None and answered == answers_per_conn:
                    break
                heads.append(head)
                writer.write(OK)
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return conn


def fetch_all(url: str, requests: list) -> tuple[list, RawTransport, int]:
    """Send `requests` one after another on one RawTransport: each outcome (an Answer or the exception), the
    transport, and how many channels it made."""

    async def main() -> tuple[list, RawTransport, int]:
        t = RawTransport(Plan(RequestSpec(url), client=Client(timeout_s=5.0)), 1)
        await t.open()
        out: list = []
        try:
            for req in requests:
                try:
                    out.append(await t.request(req))
                except Exception as e:
                    out.append(e)
            made = len(t.channels)
        finally:
            await t.close()
        return out, t, made

    return uvloop.run(main())


def test_a_request_that_cannot_be_encoded_takes_no_channel(byte_server) -> None:  # type: ignore[no-untyped-def]
    heads: list[bytes] = []
    url = f"http://127.0.0.1:{byte_server(recording(heads))}/"
    bad = build("GET", url, (("X-Name", "\ud800"),))  # a lone surrogate: no UTF-8 for it
    got, t, made = fetch_all(url, [bad, build("GET", url), bad, bad, build("GET", url), bad])
    kinds = [type(x).__name__ for x in got]
    assert kinds == ["BadRequest", "Answer", "BadRequest", "BadRequest", "Answer", "BadRequest"]
    assert [a.status for a in got if not isinstance(a, Exception)] == [200, 200]
    assert t.classify(got[0]) == "bad_request"
    assert (len(heads), made) == (2, 1)  # one pooled channel, reused; none left behind by a failure


def test_a_kept_alive_connection_closed_by_the_peer_is_resent_once(byte_server) -> None:  # type: ignore[no-untyped-def]
    heads: list[bytes] = []
    url = f"http://127.0.0.1:{byte_server(recording(heads, answers_per_conn=1))}/"
    reqs = [build("GET", url + f"r{i}") for i in range(4)] + [build("HEAD", url + "h")]
    got, _, made = fetch_all(url, reqs)
    assert [(a.status, a.body) for a in got] == [(200, b"ok")] * 4 + [(200, b"")]
    assert [h.split(b" ")[1] for h in heads] == [b"/r0", b"/r1", b"/r2", b"/r3", b"/h"]
    assert made == 1


def test_a_connection_that_never_answers_is_not_resent(byte_server) -> None:  # type: ignore[no-untyped-def]
    heads: list[bytes] = []
    url = f"http://127.0.0.1:{byte_server(recording(heads, answers_per_conn=0))}/"
    got, t, _ = fetch_all(url, [build("GET", url)])
    assert [type(x).__name__ for x in got] == ["ConnectionResetError"]
    assert t.classify(got[0]) == "reset"


SCENARIO = """\
base_url: {url}
data: {{csv: rows.csv, per: iteration}}
scenarios:
  - name: s
    steps:
      - name: hello
        request: {{path: /hello, headers: {{X-Name: "{{{{name}}}}"}}}}
"""


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_rendered_header_values(byte_server, tmp_path: Path, transport: str) -> None:  # type: ignore[no-untyped-def]
    heads: list[bytes] = []
    url = f"http://127.0.0.1:{byte_server(recording(heads))}"
    with (tmp_path / "rows.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["name"], ["é☃"], ["a\r\nX-Injected: 1"], ["b\nc"]])
    (tmp_path / "s.yaml").write_text(SCENARIO.format(url=url))
    sc = load_scenario(tmp_path / "s.yaml")
    plan = Plan(
        RequestSpec(url + "/"),
        load=Closed(connections=1),
        client=Client(transport=transport),
        outputs=Outputs(quiet=True),
        stop=Stop(requests=6),
        spread=Spread(workers=1),
        scenario=sc,
    )
    s = run(plan.validate()).summary
    assert (s["requests"], s["ok"], s["errors"], s["error_kinds"]) == (6, 2, 4, {"bad_request": 4})
    assert s["steps"]["hello"]["error_kinds"] == {"bad_request": 4}
    assert heads == [heads[0]] * 2
    assert b"X-Name: \xc3\xa9\xe2\x98\x83\r\n" in heads[0]
    assert not any(b"X-Injected" in h for h in heads)
