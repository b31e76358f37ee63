"""--dataset end to end: the records' messages and lengths reach the server; bad records exit 2, one line."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from squall.engine import run
from squall.engine.llm.tokens import make_counter
from squall.plan.build import LoadFlags, build
from squall.plan.llm import LlmFlags, llm_spec
from squall.plan.specs import RequestSpec

ANSWER = b'data: {"choices":[{"delta":{"content":"ok"}}]}\n\ndata: [DONE]\n\n'


def recording(got: list[dict]) -> Callable:
    """A keep-alive HTTP/1.1 handler that records each JSON body and streams a one-token answer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                got.append(orjson.loads(await reader.readexactly(length)))
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handle


RECORDS = [
    {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "q0"},
            {"from": "gpt", "value": "one two three"},
        ]
    },
    {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a b c d e f g"}]},
    {"messages": [{"role": "user", "content": "q2"}], "max_tokens": 9},
]


def test_dataset_records_are_sent_with_their_lengths(tmp_path: Path, byte_server: Callable) -> None:
    got: list = []
    port = byte_server(recording(got))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:2]))
    spec = llm_spec(url, LlmFlags(dataset=path), seed=0)
    plan = build(
        RequestSpec(url=url, method="POST"),
        LoadFlags(workers=1, quiet=True),
        llm=spec,
        connections=1,
        requests=4,
        argv=[],
    )
    assert run(plan).summary["requests"] == 4
    count = make_counter()
    sent = [(body["messages"], body["max_tokens"]) for body in got]
    first = (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q0"}],
        count("one two three"),
    )
    second = ([{"role": "user", "content": "q1"}], count("a b c d e f g"))
    assert sent == [first, second, first, second]


def test_a_sample_of_a_dataset_is_what_is_sent(tmp_path: Path, byte_server: Callable) -> None:
    got: list = []
    port = byte_server(recording(got))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"conversations": [{"from": "human", "value": f"q{i}"}]} for i in range(20)]))
    spec = llm_spec(url, LlmFlags(dataset=path, dataset_sample=5), seed=4)
    plan = build(
        RequestSpec(url=url, method="POST"),
        LoadFlags(workers=1, quiet=True),
        llm=spec,
        connections=1,
        requests=5,
        argv=[],
    )
    run(plan)
    assert [body["messages"][0]["content"] for body in got] == [p.text for p in spec.prompts]
    assert len(set(p.text for p in spec.prompts)) == 5


def squall_llm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "squall", "llm", "http://127.0.0.1:9/v1/chat/completions", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_datasets_are_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"conversations": [{"from": "human", "value": null}]}\n')
    cases = [
        (["--dataset", str(path)], f"--dataset {path}:2: conversations[0].value: missing or not a string"),
        (["--dataset", str(path), "--input-tokens", "5"], "use either --input-tokens or --dataset, not both"),
        (["--dataset-sample", "3"], "--dataset-sample is for --dataset FILE"),
        (["--dataset", str(path), "--dataset-format", "xml"], "--dataset-format 'xml' is not one of"),
        (["--prefixes", "3"], "--prefixes K needs --prefix-tokens N"),
    ]
    for args, message in cases:
        p = squall_llm(*args)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], p.stderr
