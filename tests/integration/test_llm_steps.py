"""LLM scenario steps: stats per stream kind, and a step's allowed statuses counted alike in its journey."""

import asyncio
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from squall.engine import run
from squall.hist import decode
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import RequestSpec
from squall.report.console import print_summary
from squall.result.document import Result
from squall.targets.mock_llm import MockThread


def _go(tmp_path: Path, text: str, **kw: object) -> Result:
    path = tmp_path / "journeys.yaml"
    path.write_text(text)
    sc = load_scenario(path)
    kw.setdefault("quiet", True)
    kw.setdefault("workers", 2)
    plan = assemble(RequestSpec(sc.base_url + "/"), transport="aiohttp", scenario=sc, **kw)  # type: ignore[arg-type]
    return run(plan.validate())


def _count(blob: str) -> int:
    return decode(blob).get_total_count()


def test_only_streamed_steps_give_ttft_itl_and_tpot(tmp_path: Path) -> None:
    with MockThread(ttft_s=0.04, itl_s=0.002, tokens=6) as mock:
        text = f"""
base_url: {mock.url}
scenarios:
  - name: chat
    steps:
      - name: streamed
        llm: {{path: /v1/chat/completions, model: m, prompt: hi, max_tokens: 6}}
      - name: whole
        llm: {{path: /v1/chat/completions, model: m, prompt: hi, max_tokens: 6, stream: false}}
"""
        res = _go(tmp_path, text, requests=20, connections=4)
    s, llm = res.summary, res.summary["llm"]
    assert (s["requests"], s["ok"], s["errors"]) == (40, 40, 0)
    assert (llm["streamed"], llm["unstreamed"]) == (20, 20)
    assert llm["output_tokens"] == 40 * 6  # tokens from both kinds
    step = res.doc["parts"]["step:streamed"]["histograms"]
    whole = res.doc["parts"]["step:whole"]["histograms"]
    top = res.doc["histograms"]
    # The headline TTFT is the streamed step's, sample for sample; the answer read whole adds none of it.
    assert _count(top["ttft"]) == _count(step["ttft"]) == 20
    assert _count(top["tpot"]) == _count(step["tpot"]) == 20
    assert _count(top["itl"]) == _count(step["itl"]) == 20 * 5
    assert not {"ttft", "itl", "tpot"} & set(whole)
    assert _count(top["e2e"]) == 40 and _count(whole["e2e"]) == 20
    assert llm["ttft_ms"] == s["steps"]["streamed"]["llm"]["ttft_ms"]
    assert llm["tpot_ms"]["min"] > 0  # no answer read whole pulls it to 0
    assert llm["ttft_ms"]["p50"] < llm["e2e_ms"]["p50"]
    console = Console(record=True, width=120)
    print_summary(res.doc, console)
    assert "answers: 20 streamed, 20 read whole (these add e2e and tokens, no TTFT, ITL or TPOT)" in (
        console.export_text()
    )


def _llm_server(byte_server: Callable[..., int]) -> int:
    """A server answering its chat requests in turn: every 5th from the 1st 500, from the 2nd 429, else 200
    (an event stream when the request asked for one); any other path 200."""
    seen = [0]
    whole = b'{"choices":[{"message":{"content":"fine"}}],"usage":{"completion_tokens":1,"prompt_tokens":1}}'
    events = b'data: {"choices":[{"delta":{"content":"fine"}}]}\n\ndata: [DONE]\n\n'
    fail = b'{"error":{"message":"no"}}'

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await r.readuntil(b"\r\n\r\n")).lower()
                length = head.partition(b"content-length:")[2].split(b"\r\n")[0]
                body = await r.readexactly(int(length or 0))
                chat = head.startswith(b"post /v1/chat")
                n, seen[0] = (seen[0], seen[0] + 1) if chat else (-1, seen[0])
                status, kind, answer = b"200 OK", b"application/json", whole
                if b'"stream":true' in body:
                    kind, answer = b"text/event-stream", events
                if chat and n % 5 == 0:
                    status, answer = b"500 Internal Server Error", fail
                elif chat and n % 5 == 1:
                    status, answer = b"429 Too Many Requests", fail
                w.write(
                    b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                    % (status, kind, len(answer))
                )
                w.write(answer)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    return byte_server(handle)


STATUS_STEP = """
base_url: http://127.0.0.1:{port}
scenarios:
  - name: ask
    steps:
      - name: answer
        llm: {{path: /v1/chat/completions, model: m, prompt: hi, stream: {stream}}}
        expect: {{status: {allowed}}}
      - name: again
        request: {{path: /v1/models}}
"""


def test_a_status_the_step_allows_is_ok_in_the_step_and_its_journey(
    tmp_path: Path, byte_server: Callable[..., int]
) -> None:
    for stream in ("true", "false"):  # (an error body is read the same way whether the step streams or not)
        port = _llm_server(byte_server)
        text = STATUS_STEP.format(port=port, stream=stream, allowed="[200, 429, 500]")
        res = _go(tmp_path, text, requests=50, connections=2, workers=1)
        s = res.summary
        answer, journey = s["steps"]["answer"], s["scenarios"]["ask"]
        assert answer["requests"] == 50
        assert (answer["ok"], answer["errors"], answer["error_kinds"]) == (50, 0, {}), stream
        assert (journey["completed"], journey["failed"], journey["failed_at"]) == (50, 0, {}), stream
        assert s["steps"]["again"]["requests"] == 50


def test_a_status_the_step_does_not_allow_fails_the_journey_with_its_kind(
    tmp_path: Path, byte_server: Callable[..., int]
) -> None:
    port = _llm_server(byte_server)
    text = STATUS_STEP.format(port=port, stream="false", allowed="[200, 429]").replace(
        "      - name: again\n        request: {path: /v1/models}\n", ""
    )
    res = _go(tmp_path, text, requests=50, connections=2, workers=1)
    s = res.summary
    answer, journey = s["steps"]["answer"], s["scenarios"]["ask"]
    assert answer["status_codes"] == {"200": 30, "429": 10, "500": 10}
    assert (answer["ok"], answer["errors"], answer["error_kinds"]) == (40, 10, {"http_5xx": 10})
    assert (journey["completed"], journey["failed"], journey["failed_at"]) == (40, 10, {"answer": 10})
    assert s["error_kinds"] == {"http_5xx": 10}
    assert s["llm"]["unstreamed"] == 30  # steps all read whole still have their LLM section (e2e, tokens)
    assert answer["llm"]["unstreamed"] == 30
