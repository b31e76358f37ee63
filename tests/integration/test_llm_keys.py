"""Keys and prompts reach the server: `llm`, `hunt --llm` and `soak --llm` against a loopback server that
records each request's key and prompt."""

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from typer.testing import CliRunner

from squall.cli import app

ANSWER = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'


class Recorder:
    """A chat endpoint on 127.0.0.1 in a thread: every request's (Authorization, prompt) is kept."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def keys(self) -> Counter[str]:
        with self.lock:
            return Counter(key for key, _ in self.seen)

    def prompts(self) -> Counter[str]:
        with self.lock:
            return Counter(prompt for _, prompt in self.seen)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        with self.lock:
            self.seen.append((request.headers.get("Authorization", ""), body["messages"][-1]["content"]))
        return web.Response(body=ANSWER, content_type="text/event-stream")

    def __enter__(self) -> "Recorder":
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def main() -> None:
            web_app = web.Application()
            web_app.router.add_post("/v1/chat/completions", self.answer)
            self.runner = web.AppRunner(web_app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(main(), self.loop)
        assert ready.wait(5), "recording server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"question {i}\n" for i in range(10)))
    return path


@pytest.fixture(autouse=True)
def no_keys_from_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUALL_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_n_over_a_prompt_list_sends_each_prompt_once_and_every_key_in_turn(
    recorder: Recorder, prompts: Path
) -> None:
    # 2 workers, 40 requests over 10 prompts and 4 keys: each prompt 4 times, each key 10 times.
    args = ["llm", recorder.url, "-c", "4", "-n", "40", "-w", "2", "-q", "--prompts", str(prompts)]
    res = CliRunner().invoke(
        app, [*args, "--api-key", "k0", "--api-key", "k1", "--api-key", "k2", "--api-key", "k3"]
    )
    assert res.exit_code == 0, res.output
    assert recorder.prompts() == {f"question {i}": 4 for i in range(10)}
    assert recorder.keys() == {f"Bearer k{i}": 10 for i in range(4)}
    # Every (key, prompt) pair is sent once: keys do not rotate in step with the prompts.
    assert len(set(recorder.seen)) == 40


def test_key_per_user_keeps_one_key_per_user(recorder: Recorder, prompts: Path) -> None:
    # 2 users on 2 workers (one each), 4 keys: user 0 keeps k0 and user 1 keeps k1, 20 requests each.
    args = ["llm", recorder.url, "-c", "2", "-n", "40", "-w", "2", "-q", "--prompts", str(prompts)]
    keys = [a for i in range(4) for a in ("--api-key", f"k{i}")]
    res = CliRunner().invoke(app, [*args, *keys, "--key-per", "user"])
    assert res.exit_code == 0, res.output
    assert recorder.keys() == {"Bearer k0": 20, "Bearer k1": 20}
    assert recorder.prompts() == {f"question {i}": 4 for i in range(10)}


def test_key_per_request_takes_the_next_key_each_request(recorder: Recorder, prompts: Path) -> None:
    args = ["llm", recorder.url, "-c", "2", "-n", "40", "-w", "2", "-q", "--prompts", str(prompts)]
    keys = [a for i in range(4) for a in ("--api-key", f"k{i}")]
    res = CliRunner().invoke(app, [*args, *keys, "--key-per", "request"])
    assert res.exit_code == 0, res.output
    assert recorder.keys() == {f"Bearer k{i}": 10 for i in range(4)}


def test_key_per_takes_user_or_request() -> None:
    res = CliRunner().invoke(app, ["llm", "http://127.0.0.1:1/v1/chat/completions", "--key-per", "session"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == "squall: error: --key-per 'session' is not one of request, user"


def test_n_below_the_prompt_count_sends_distinct_prompts_across_workers(
    recorder: Recorder, prompts: Path
) -> None:
    res = CliRunner().invoke(
        app, ["llm", recorder.url, "-c", "2", "-n", "10", "-w", "2", "-q", "--prompts", str(prompts)]
    )
    assert res.exit_code == 0, res.output
    assert recorder.prompts() == {f"question {i}": 1 for i in range(10)}


def test_hunt_llm_sends_the_key_and_the_prompts(recorder: Recorder, prompts: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alpha\nbeta\n")
    args = ["hunt", recorder.url, "--llm", "--slo", "errors<50%", "--start", "1", "--max", "2"]
    args += ["--step-duration", "500ms", "--warmup", "100ms", "-w", "1", "-q"]
    args += ["--prompts", str(prompts), "--api-key-file", str(keys), "--model", "m1", "--max-tokens", "7"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert set(recorder.keys()) == {"Bearer alpha", "Bearer beta"}
    assert set(recorder.prompts()) == {f"question {i}" for i in range(10)}


def test_soak_llm_takes_the_key_from_openai_api_key(
    recorder: Recorder, prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    args = ["soak", recorder.url, "--llm", "-d", "1s", "--warmup", "0s", "-c", "2", "-w", "1", "-q"]
    res = CliRunner().invoke(app, [*args, "--prompts", str(prompts), "--no-stream"])
    assert res.exit_code == 0, res.output
    assert set(recorder.keys()) == {"Bearer sk-from-env"}
    assert set(recorder.prompts()) == {f"question {i}" for i in range(10)}


def test_llm_options_without_llm_are_refused() -> None:
    for command in (["hunt", "--slo", "p99<1s"], ["soak"]):
        res = CliRunner().invoke(app, [*command, "http://127.0.0.1:1/", "--prompts", "p.txt"])
        assert res.exit_code == 2, res.output
        assert (
            res.output.strip()
            == "squall: error: LLM options (--prompts) are for --llm: add --llm or drop them"
        )
