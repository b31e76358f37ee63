"""`squall llm` against the Responses and Anthropic Messages APIs, streamed and not: a loopback server in a
thread answers each in its own shape (a reasoning phase, then the answer) and keeps what it received."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from typer.testing import CliRunner

from squall.cli import app
from squall.engine.llm.tokens import make_counter

GAP_S = 0.02  # between the server's events
THOUGHTS = ["Think", "ing a", "bout it."]
ANSWER = ["Hello", " there", "!"]
USAGE_IN, USAGE_OUT, USAGE_REASONING = 11, 29, 17


def sse(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class Server:
    """/v1/responses and /v1/messages on 127.0.0.1 in a thread; every request's headers and body are kept."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for e in events:
            await resp.write(e)
            await asyncio.sleep(GAP_S)
        await resp.write_eof()
        return resp

    async def _keep(self, request: web.Request) -> dict[str, Any]:
        body = orjson.loads(await request.read())
        with self.lock:
            self.seen.append((dict(request.headers), body))
        return body

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._keep(request)
        usage = {
            "input_tokens": USAGE_IN,
            "output_tokens": USAGE_OUT,
            "output_tokens_details": {"reasoning_tokens": USAGE_REASONING},
        }
        if not body["stream"]:
            output = [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "".join(THOUGHTS)}]},
                {"type": "message", "content": [{"type": "output_text", "text": "".join(ANSWER)}]},
            ]
            return web.json_response({"status": "completed", "output": output, "usage": usage})
        kind = "response.reasoning_summary_text.delta"
        events = [
            sse("response.created", {"type": "response.created", "response": {"status": "in_progress"}})
        ]
        events += [sse(kind, {"type": kind, "delta": t}) for t in THOUGHTS]
        kind = "response.output_text.delta"
        events += [sse(kind, {"type": kind, "delta": t}) for t in ANSWER]
        done = {"type": "response.completed", "response": {"status": "completed", "usage": usage}}
        return await self._stream(request, [*events, sse("response.completed", done)])

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._keep(request)
        if not body["stream"]:
            content = [
                {"type": "thinking", "thinking": "".join(THOUGHTS)},
                {"type": "text", "text": "".join(ANSWER)},
            ]
            usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT}
            return web.json_response({"type": "message", "content": content, "usage": usage})
        start = {
            "type": "message_start",
            "message": {"usage": {"input_tokens": USAGE_IN, "output_tokens": 1}},
        }
        events = [sse("message_start", start)]
        for kind, field, texts in (("thinking_delta", "thinking", THOUGHTS), ("text_delta", "text", ANSWER)):
            for t in texts:
                delta = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: t}}
                events.append(sse("content_block_delta", delta))
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": USAGE_OUT},
        }
        events += [sse("message_delta", end), sse("message_stop", {"type": "message_stop"})]
        return await self._stream(request, events)

    def __enter__(self) -> "Server":
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def main() -> None:
            web_app = web.Application()
            web_app.router.add_post("/v1/responses", self.responses)
            web_app.router.add_post("/v1/messages", self.messages)
            self.runner = web.AppRunner(web_app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(main(), self.loop)
        assert ready.wait(5), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


@pytest.fixture(autouse=True)
def no_keys_from_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUALL_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def run(url: str, out: Path, *more: str) -> dict[str, Any]:
    """`squall llm URL -n 6 -c 2 -w 1` (the API guessed from the path), its result document."""
    args = ["llm", url, "-n", "6", "-c", "2", "-w", "1", "-q", "--prompts", str(out.parent / "p.txt")]
    (out.parent / "p.txt").write_text("one question\nanother question\n")
    res = CliRunner().invoke(app, [*args, "-o", str(out), *more])
    assert res.exit_code == 0, res.output
    return orjson.loads(out.read_bytes())


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages"])
def test_a_streamed_reasoning_answer_of_each_api(
    server: Server, tmp_path: Path, check_result: Callable[[dict], None], path: str
) -> None:
    doc = run(server.url(path), tmp_path / "r.json", "--api-key", "sk-test")
    check_result(doc)
    api = "responses" if path == "/v1/responses" else "anthropic"
    s, llm = doc["summary"], doc["summary"]["llm"]
    assert (doc["meta"]["llm"]["api"], s["requests"], s["ok"], s["errors"]) == (api, 6, 6, 0)
    assert (llm["streamed"], llm["token_source"]) == (6, "usage")
    assert (llm["output_tokens"], llm["input_tokens"]) == (6 * USAGE_OUT, 6 * USAGE_IN)
    thought = USAGE_REASONING if api == "responses" else make_counter()("".join(THOUGHTS))  # (Messages: none)
    assert (llm["reasoning_tokens"], llm["reasoning_answers"]) == (6 * thought, 6)
    # Three reasoning events GAP_S apart come before the first answer token: TTFAT is that much later.
    assert llm["ttfat_ms"]["p50"] - llm["ttft_ms"]["p50"] >= 2.5 * GAP_S * 1000
    assert llm["itl_ms"]["p50"] >= 0.5 * GAP_S * 1000  # (gaps span reasoning and answer tokens alike)
    headers, body = server.seen[0]
    if api == "anthropic":
        assert (headers.get("x-api-key"), headers.get("anthropic-version")) == ("sk-test", "2023-06-01")
        assert "Authorization" not in headers
        assert body == {
            "model": "default",
            "messages": [{"role": "user", "content": body["messages"][0]["content"]}],
            "max_tokens": 1024,
            "stream": True,
        }
    else:
        assert headers.get("Authorization") == "Bearer sk-test"
        assert body == {"model": "default", "input": body["input"], "stream": True}
        assert body["input"] in ("one question", "another question")
    assert len(server.seen) == 6


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages"])
def test_an_answer_read_whole_of_each_api(server: Server, tmp_path: Path, path: str) -> None:
    doc = run(server.url(path), tmp_path / "r.json", "--no-stream", "--max-tokens", "40")
    llm = doc["summary"]["llm"]
    assert (doc["summary"]["ok"], llm["unstreamed"], llm["streamed"]) == (6, 6, 0)
    assert (llm["output_tokens"], llm["input_tokens"]) == (6 * USAGE_OUT, 6 * USAGE_IN)
    thought = USAGE_REASONING if path == "/v1/responses" else make_counter()("".join(THOUGHTS))
    assert (llm["reasoning_tokens"], llm["reasoning_answers"]) == (6 * thought, 6)
    assert (
        llm["ttft_ms"]["p50"] is None and llm["ttfat_ms"]["p50"] is None
    )  # (no first token apart from the end)
    _, body = server.seen[0]
    field = "max_output_tokens" if path == "/v1/responses" else "max_tokens"
    assert (body["stream"], body[field]) == (False, 40)
