"""Conversations end to end against a recording server on loopback (aiohttp.web, in a thread): every turn's
request carries exactly the history it should, answers as the server streamed them, cut ones included."""

import asyncio
import io
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from rich.console import Console

from squall.engine import run
from squall.plan.load import Think
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import LlmSpec, Prompt, RequestSpec
from squall.report.console import print_summary
from squall.report.sections import by_turn_chart, figure_tables
from squall.result.document import Result
from squall.result.merge import merge
from squall.units import PlanError


def answer_to(last: str) -> str:
    """The server's answer to a user message: known, with quotes and non-ASCII text."""
    return f're "{last}" — ok'


class Recorder:
    """A chat (and completions) server that records each request: peer port, body, and concurrency.

    `lockstep`: answer only once that many requests are in (every user's turn k goes before any turn k+1).
    A user message holding "cut" is answered by half a stream, then the connection is closed; one holding
    "drop" gets no answer at all (the connection closes before any byte); one holding "surrogate" gets "a"
    and a lone surrogate escape.
    """

    def __init__(self, lockstep: int = 0, delay_s: float = 0.0) -> None:
        self.lockstep, self.delay_s = lockstep, delay_s
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.inflight = self.max_inflight = 0
        self.ready = threading.Event()
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        self.requests.append((peer, body))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.lockstep:
                await asyncio.wait_for(self.barrier.wait(), 5)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if "messages" in body:
                last = body["messages"][-1]["content"]
            else:
                last = body["prompt"].rpartition("\n")[2]
            if "drop" in last:
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            if "surrogate" in last:  # an answer holding a lone surrogate escape (half a character)
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(b'data: {"choices":[{"delta":{"content":"a\\ud83d"}}]}\n\ndata: [DONE]\n\n')
                await resp.write_eof()
                return resp
            text = answer_to(last)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            half = len(text) // 2
            field = "delta" if "messages" in body else None
            for piece in (text[:half], text[half:]):
                choice = {"delta": {"content": piece}} if field else {"text": piece}
                await resp.write(b"data: " + orjson.dumps({"choices": [choice]}) + b"\n\n")
                if "cut" in last:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            self.inflight -= 1

    def serve(self) -> None:
        async def main() -> None:
            if self.lockstep:
                self.barrier = asyncio.Barrier(self.lockstep)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self.handle)
            app.router.add_post("/v1/completions", self.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.ready.set()
            await asyncio.sleep(60)

        asyncio.run(main())


@pytest.fixture
def server() -> Iterator[Any]:
    def start(**kw: Any) -> Recorder:
        rec = Recorder(**kw)
        threading.Thread(target=rec.serve, daemon=True).start()
        assert rec.ready.wait(5)
        return rec

    yield start


def go(rec: Recorder, path: str = "/v1/chat/completions", **kw: Any) -> Result:
    spec = LlmSpec(**kw.pop("spec"))
    kw.setdefault("workers", 1)
    plan = assemble(RequestSpec(f"http://127.0.0.1:{rec.port}{path}", "POST"), quiet=True, llm=spec, **kw)
    return run(plan.validate())


def expected_history(messages: list[dict[str, str]]) -> None:
    """Every assistant message is the server's answer to the user message before it."""
    for before, after in itertools.pairwise(messages):
        if after["role"] == "assistant":
            assert before["role"] == "user"
            whole = answer_to(before["content"])
            if "cut" in before["content"]:
                assert after["content"] == whole[: len(whole) // 2]
            elif "drop" in before["content"]:
                assert after["content"] == ""
            else:
                assert after["content"] == whole


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_three_users_three_turns_nine_requests_are_three_sessions_of_three_turns(
    server: Any, transport: str, check_result: Callable[[dict], None]
) -> None:
    rec = server(lockstep=3)
    prompts = tuple(Prompt(f"q{i} é") for i in range(9))
    res = go(rec, spec={"turns": 3, "prompts": prompts}, connections=3, requests=9, transport=transport)
    assert (res.summary["requests"], res.summary["ok"], res.summary["errors"]) == (9, 9, 0)
    check_result(res.doc)
    bodies = [body["messages"] for _, body in rec.requests]
    # The worker's rotation: the sessions open with q0, q1, q2; turn 2 takes q3..q5, turn 3 q6..q8.
    sessions: dict[str, list[list[dict[str, str]]]] = {}  # by the session's first message
    for messages in bodies:
        sessions.setdefault(messages[0]["content"], []).append(messages)
    assert len(sessions) == 3
    for turns in sessions.values():
        assert [len(m) for m in turns] == [1, 3, 5]
        for k in (1, 2):
            assert turns[k][: len(turns[k - 1])] == turns[k - 1]  # the history grows, never changes
        expected_history(turns[2])
    firsts = sorted(m[0]["content"] for m in bodies if len(m) == 1)
    assert firsts == ["q0 é", "q1 é", "q2 é"]
    seconds = sorted(m[2]["content"] for m in bodies if len(m) == 3)
    assert seconds == ["q3 é", "q4 é", "q5 é"]
    by_turn = res.summary["llm"]["by_turn"]
    assert {k: v["requests"] for k, v in by_turn.items()} == {"1": 3, "2": 3, "3": 3}
    assert all(v["errors"] == 0 and v["ttft_ms"]["p50"] is not None for v in by_turn.values())
    means = [by_turn[k]["input_tokens_mean"] for k in ("1", "2", "3")]
    assert means[0] < means[1] < means[2]  # (estimated: the server sends no usage)
    # Shown: the console's and the HTML report's "TTFT by turn"; carried exactly by `squall merge`.
    out = io.StringIO()
    print_summary(res.doc, Console(file=out, width=120, highlight=False))
    shown = out.getvalue()
    assert "TTFT by turn" in shown
    table = next(t for t in figure_tables(res.doc) if t["id"] == "by_turn")
    assert [row[:2] for row in table["rows"]] == [["1", "3"], ["2", "3"], ["3", "3"]]
    chart = by_turn_chart(res.summary["llm"])
    assert chart is not None and chart["turn"] == ["1", "2", "3"]
    merged = merge([res.doc, res.doc], ["a.json", "b.json"])
    assert merged["summary"]["llm"]["by_turn"]["2"]["requests"] == 6
    assert merged["summary"]["llm"]["by_turn"]["3"]["ttft_ms"] == by_turn["3"]["ttft_ms"]


def test_a_cut_answer_and_an_unanswered_turn_go_on_with_what_arrived(server: Any) -> None:
    rec = server()
    prompts = (Prompt("start"), Prompt("cut here"), Prompt("drop this"), Prompt("last"))
    res = go(rec, spec={"turns": 4, "prompts": prompts}, connections=1, requests=4)
    s = res.summary
    assert s["requests"] == 4
    assert s["errors"] == 2
    assert s["error_kinds"]["stream_broken"] == 1
    last = rec.requests[-1][1]["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["start", "cut here", "drop this", "last"]
    expected_history(last)
    assert [m["content"] for m in last if m["role"] == "assistant"][1:] == [answer_to("cut here")[:9], ""]
    by_turn = s["llm"]["by_turn"]
    assert (by_turn["1"]["requests"], by_turn["1"]["errors"]) == (1, 0)
    assert (by_turn["4"]["requests"], by_turn["4"]["errors"]) == (1, 0)


def test_completions_carry_the_history_as_one_prompt_string(server: Any) -> None:
    rec = server()
    prompts = (Prompt("one"), Prompt("two"))
    res = go(
        rec,
        "/v1/completions",
        spec={"api": "completions", "turns": 2, "prompts": prompts, "prefixes": ("SYS",)},
        connections=1,
        requests=2,
    )
    assert res.summary["ok"] == 2
    assert [body["prompt"] for _, body in rec.requests] == ["SYS\none", f"SYS\none\n{answer_to('one')}\ntwo"]


def test_prefixes_are_bound_to_users_across_workers(server: Any) -> None:
    """(The raw transport: one connection per user, so the peer port names the user.)"""
    rec = server(lockstep=4)
    spec = {"prompts": (Prompt("p"),), "prefixes": ("P0", "P1", "P2"), "turns": 2}
    res = go(rec, spec=spec, workers=2, connections=4, requests=8)
    assert res.summary["ok"] == 8
    # (each worker's two users: one session of two turns each; the turns merged across the workers)
    assert {k: v["requests"] for k, v in res.summary["llm"]["by_turn"].items()} == {"1": 4, "2": 4}
    prefixes: dict[int, set[str]] = {}
    for peer, body in rec.requests:
        assert body["messages"][0]["role"] == "system"
        prefixes.setdefault(peer, set()).add(body["messages"][0]["content"])
    assert all(len(p) == 1 for p in prefixes.values())  # one prefix each user, every request
    assert Counter(p.pop() for p in prefixes.values()) == {"P0": 2, "P1": 1, "P2": 1}


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_max_inflight_caps_requests_in_flight_over_the_sessions(server: Any, transport: str) -> None:
    rec = server(delay_s=0.03)
    prompts = tuple(Prompt(f"q{i}") for i in range(6))
    spec = {"turns": 2, "prompts": prompts, "max_inflight": 2}
    res = go(rec, spec=spec, connections=6, requests=12, transport=transport)
    assert (res.summary["requests"], res.summary["ok"]) == (12, 12)
    assert rec.max_inflight == 2
    assert len({peer for peer, _ in rec.requests}) == 2  # the sessions share the worker's two connections
    turns = [len(body["messages"]) for _, body in rec.requests]
    assert Counter(turns) == {1: 6, 3: 6}
    for _, body in rec.requests:
        expected_history(body["messages"])
    assert {k: v["requests"] for k, v in res.summary["llm"]["by_turn"].items()} == {"1": 6, "2": 6}


def test_think_time_parts_a_users_turns(server: Any) -> None:
    rec = server()
    think = Think("uniform", 0.3, 0.3, 0.3)
    res = go(
        rec, spec={"turns": 2, "prompts": (Prompt("a"), Prompt("b"))}, connections=1, requests=2, think=think
    )
    assert res.summary["ok"] == 2
    assert res.summary["duration_s"] >= 0.3


def _scenario(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "journeys.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_a_journeys_history_steps_carry_one_conversation(server: Any, tmp_path: Path) -> None:
    rec = server()
    sc = _scenario(
        tmp_path,
        f"""
base_url: http://127.0.0.1:{rec.port}
scenarios:
  - name: chat
    steps:
      - name: ask
        llm: {{prompt: "first {{{{user}}}}", history: true}}
      - name: aside
        llm: {{prompt: "no history"}}
      - name: cut
        llm: {{prompt: "cut me", history: true}}
      - name: again
        llm: {{prompt: "again", history: true}}
""",
    )
    plan = assemble(
        RequestSpec(sc.base_url + "/"), scenario=sc, quiet=True, workers=1, connections=1, requests=1
    )
    res = run(plan.validate())
    assert res.summary["requests"] == 3  # (the cut answer fails its step and ends the iteration)
    sent = [body["messages"] for _, body in rec.requests]
    assert sent[:2] == [[{"role": "user", "content": "first 0"}], [{"role": "user", "content": "no history"}]]
    assert sent[2] == [
        {"role": "user", "content": "first 0"},
        {"role": "assistant", "content": answer_to("first 0")},
        {"role": "user", "content": "cut me"},
    ]


def test_a_history_step_carries_an_answer_with_a_lone_surrogate(server: Any, tmp_path: Path) -> None:
    rec = server()
    sc = _scenario(
        tmp_path,
        f"""
base_url: http://127.0.0.1:{rec.port}
scenarios:
  - name: chat
    steps:
      - name: ask
        llm: {{prompt: "surrogate", history: true}}
      - name: again
        llm: {{prompt: "again", history: true}}
""",
    )
    plan = assemble(
        RequestSpec(sc.base_url + "/"), scenario=sc, quiet=True, workers=1, connections=1, requests=1
    )
    res = run(plan.validate())
    assert (res.summary["requests"], res.summary["ok"], res.summary["errors"]) == (2, 2, 0)
    assert rec.requests[1][1]["messages"] == [
        {"role": "user", "content": "surrogate"},
        {"role": "assistant", "content": "a\ud83d"},
        {"role": "user", "content": "again"},
    ]


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_history_must_be_true_or_false(tmp_path: Path, value: str) -> None:
    text = f"""base_url: http://127.0.0.1:9
scenarios:
  - name: chat
    steps:
      - name: ask
        llm:
          prompt: hi
          history: {value}
"""
    with pytest.raises(PlanError) as e:
        _scenario(tmp_path, text)
    where = "scenarios[0].steps[0] (ask).llm.history"
    assert str(e.value) == f"{tmp_path / 'journeys.yaml'}:8: {where}: must be true or false (unquoted)"


def test_a_single_turn_run_with_prefixes_has_no_turns(server: Any) -> None:
    rec = server(lockstep=2)
    res = go(rec, spec={"prompts": (Prompt("p"),), "prefixes": ("P0", "P1")}, connections=2, requests=4)
    assert res.summary["ok"] == 4
    assert "by_turn" not in res.summary["llm"]
    assert sorted(body["messages"][0]["content"] for _, body in rec.requests) == ["P0", "P0", "P1", "P1"]


def test_max_inflight_below_the_workers_caps_the_workers() -> None:
    request = RequestSpec(url="http://127.0.0.1:9/v1/chat/completions", method="POST")
    plan = assemble(request, llm=LlmSpec(turns=2, max_inflight=1), workers=2, connections=4).validate()
    assert plan.spread.workers == 1
    plan = assemble(request, llm=LlmSpec(turns=2, max_inflight=3), workers=2, connections=4).validate()
    assert plan.spread.workers == 2


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--api", "completions", "--turns", "2", "--body-json", '{"prompt": "x"}'], '"prompt"'),
        (["--turns", "3", "--body-json", '{"messages": [{"role": "user", "content": "x"}]}'], '"messages"'),
        (["--prefix-tokens", "16", "--body-json", '{"messages": []}'], '"messages"'),
        (["--api", "anthropic", "--turns", "2", "--body-json", '{"system": "s"}'], '"system"'),
    ],
)
def test_body_json_setting_the_history_is_refused_with_sessions(args: list[str], field: str) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "squall", "llm", "http://127.0.0.1:9/v1/chat/completions", "-n", "1", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--body-json" in lines[0] and field in lines[0], lines
    assert "--turns" in lines[0] and "--prefix-tokens" in lines[0]


def test_body_json_of_other_fields_goes_with_sessions() -> None:
    request = RequestSpec(url="http://127.0.0.1:9/v1/chat/completions", method="POST")
    spec = LlmSpec(turns=2, body_json=(("top_p", 0.5),))
    assert assemble(request, llm=spec).validate().llm == spec


def test_a_later_turn_says_only_the_next_records_user_message(server: Any) -> None:
    """(A prompt file's record with a system message and assistant text, drawn as a later turn: its first
    user message alone joins the conversation.)"""
    rec = server()
    record = Prompt(messages=(("system", "SYS-B"), ("user", "B1"), ("assistant", "x"), ("user", "B2")))
    res = go(rec, spec={"turns": 2, "prompts": (Prompt("A1"), record)}, connections=1, requests=2)
    assert res.summary["ok"] == 2
    second = rec.requests[1][1]["messages"]
    assert second == [
        {"role": "user", "content": "A1"},
        {"role": "assistant", "content": answer_to("A1")},
        {"role": "user", "content": "B1"},
    ]
