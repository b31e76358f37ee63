"""The mock LLM server, spoken to over loopback with raw sockets: endpoints, faults, keep-alive and timing."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from squall.targets.mock_events import WORDS
from squall.targets.mock_llm import MockThread
from squall.targets.mock_options import MockOptions

TTFT, ITL, TOKENS = 0.02, 0.005, 6
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say five words"}]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockThread]:
    with MockThread(ttft_s=TTFT, itl_s=ITL, tokens=TOKENS) as srv:
        yield srv


class Conn:
    """A raw HTTP/1.1 client: sends a request, reads a response chunk by chunk (chunks kept apart)."""

    def __init__(self, srv: MockThread, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def send(
        self, method: str, path: str, body: object = None, version: str = "1.1", extra: str = ""
    ) -> None:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/{version}\r\nHost: x\r\nContent-Length: {len(data)}\r\n{extra}\r\n"
        self.sock.sendall(head.encode() + data)

    def read_head(self) -> tuple[int, dict[str, str]]:
        status = int(self.rfile.readline().split()[1])
        headers = {}
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        return status, headers

    def read(self) -> tuple[int, dict[str, str], list[bytes], bool]:
        """(status, headers, body chunks, complete): complete is False when the connection closed early."""
        status, headers = self.read_head()
        return (status, headers, *self.read_body(headers))

    def read_body(self, headers: dict[str, str]) -> tuple[list[bytes], bool]:
        if "content-length" in headers:
            body = self.rfile.read(int(headers["content-length"]))
            return [body], len(body) == int(headers["content-length"])
        if headers.get("transfer-encoding") != "chunked":  # HTTP/1.0 stream: the close ends it
            return [self.rfile.read()], True
        chunks = []
        while size_line := self.rfile.readline():
            size = int(size_line, 16)
            chunk = self.rfile.read(size + 2)
            if size == 0:
                return chunks, True
            assert chunk.endswith(b"\r\n"), chunk
            chunks.append(chunk[:-2])
        return chunks, False

    def call(
        self, method: str, path: str, body: object = None
    ) -> tuple[int, dict[str, str], list[bytes], bool]:
        self.send(method, path, body)
        return self.read()


def call(
    srv: MockThread, path: str, body: object = None, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection; the body decoded as JSON."""
    conn = Conn(srv)
    try:
        status, headers, chunks, _ = conn.call(method, path, body)
    finally:
        conn.close()
    return status, headers, json.loads(b"".join(chunks))


def events(chunks: list[bytes]) -> list[Any]:
    """Each chunk must be exactly one SSE event; JSON payloads are decoded, others kept as bytes."""
    out = []
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1, chunk
        payload = chunk[6:-2]
        out.append(payload if payload in (b"[DONE]", b"{not json") else json.loads(payload))
    return out


def stream(srv: MockThread, path: str, body: dict[str, Any]) -> tuple[list[Any], bool]:
    conn = Conn(srv)
    try:
        status, headers, chunks, complete = conn.call("POST", path, body)
    finally:
        conn.close()
    assert (status, headers["content-type"], headers["transfer-encoding"]) == (
        200,
        "text/event-stream",
        "chunked",
    )
    return events(chunks), complete


def chat(n: int | None = None, stream: bool = True, usage: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "stream": stream, **extra}
    if n is not None:
        body["max_tokens"] = n
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# endpoints


def test_chat_stream_role_tokens_finish_usage_done(mock: MockThread) -> None:
    evs, complete = stream(mock, CHAT, chat(usage=True))
    assert complete
    assert evs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"]["content"] for e in evs[1 : 1 + TOKENS]] == list(WORDS[:TOKENS])
    assert all(e["object"] == "chat.completion.chunk" for e in evs[:-1])
    finish = evs[1 + TOKENS]["choices"][0]
    assert (finish["delta"], finish["finish_reason"]) == ({}, "stop")
    assert evs[2 + TOKENS]["choices"] == []
    assert evs[2 + TOKENS]["usage"] == usage(5, TOKENS)  # five words in MESSAGES
    assert evs[3 + TOKENS :] == [b"[DONE]"]


def test_chat_stream_without_include_usage_has_no_usage_event(mock: MockThread) -> None:
    evs, _ = stream(mock, CHAT, chat())
    assert len(evs) == TOKENS + 3
    assert evs[-1] == b"[DONE]"
    assert not any("usage" in e for e in evs[:-1])


def test_chat_blocking_joins_the_tokens_and_always_has_usage(mock: MockThread) -> None:
    status, headers, body = call(mock, CHAT, chat(4, stream=False))
    assert (status, headers["content-type"]) == (200, "application/json")
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "".join(WORDS[:4])}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == usage(5, 4)


def test_completions_stream_and_blocking_use_text(mock: MockThread) -> None:
    body = {"model": "m", "prompt": "one two three", "max_tokens": 3, "stream": True}
    evs, _ = stream(mock, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
    assert [e["choices"][0]["text"] for e in evs[:3]] == list(WORDS[:3])
    assert evs[3]["choices"][0]["finish_reason"] == "stop"
    assert (evs[4]["usage"], evs[5]) == (usage(3, 3), b"[DONE]")
    status, _, whole = call(mock, "/v1/completions", {**body, "stream": False})
    assert (status, whole["choices"][0]["text"], whole["usage"]) == (200, "".join(WORDS[:3]), usage(3, 3))


def test_dify_streaming_ends_with_message_end_and_no_done(mock: MockThread) -> None:
    body = {"query": "hi there", "inputs": {}, "response_mode": "streaming", "user": "u1"}
    evs, complete = stream(mock, "/v1/chat-messages", body)
    assert complete
    assert [(e["event"], e["answer"]) for e in evs[:-1]] == [("message", w) for w in WORDS[:TOKENS]]
    assert evs[-1]["event"] == "message_end"
    assert evs[-1]["metadata"]["usage"] == usage(2, TOKENS)


def test_dify_blocking(mock: MockThread) -> None:
    status, _, body = call(
        mock, "/v1/chat-messages", {"query": "hi", "inputs": {}, "response_mode": "blocking"}
    )
    assert (status, body["answer"], body["metadata"]["usage"]) == (
        200,
        "".join(WORDS[:TOKENS]),
        usage(1, TOKENS),
    )


def test_models_lists_the_configured_model(mock: MockThread) -> None:
    status, _, body = call(mock, "/v1/models", method="GET")
    assert status == 200
    assert (body["object"], [(m["id"], m["object"]) for m in body["data"]]) == (
        "list",
        [("squall-mock", "model")],
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "want"),
    [
        ("POST", CHAT, b"{not json", (400, "bad_json")),
        ("POST", CHAT, b"[1, 2]", (400, "invalid_value")),
        ("POST", CHAT, {"messages": "hi"}, (400, "invalid_value")),
        ("POST", CHAT, {"messages": [], "max_tokens": 0}, (400, "invalid_value")),
        ("POST", "/v1/chat-messages", {"query": "q", "response_mode": "fast"}, (400, "invalid_value")),
        ("GET", "/v1/nothing", None, (404, "not_found")),
        ("GET", CHAT, None, (405, "method_not_allowed")),
        ("POST", "/v1/models", None, (405, "method_not_allowed")),
    ],
)
def test_errors_have_the_openai_shape(
    mock: MockThread, method: str, path: str, body: object, want: tuple[int, str]
) -> None:
    status, headers, got = call(mock, path, body, method)
    assert (status, got["error"]["code"]) == want
    assert headers["content-type"] == "application/json"
    assert isinstance(got["error"]["message"], str) and isinstance(got["error"]["type"], str)


# token counts


def test_token_count_is_min_of_max_tokens_and_the_servers_draw(mock: MockThread) -> None:
    assert len(stream(mock, CHAT, chat(2))[0]) == 2 + 3
    assert len(stream(mock, CHAT, chat(100))[0]) == TOKENS + 3
    assert (
        len(stream(mock, CHAT, chat(9, ignore_eos=True))[0]) == 9 + 3
    )  # exact length, as vLLM benchmarks ask
    assert call(mock, CHAT, chat(1000, stream=False))[2]["usage"]["completion_tokens"] == TOKENS


def test_tokens_stddev_draws_are_seeded_and_at_least_one() -> None:
    def counts() -> list[int]:
        with MockThread(ttft_s=0, itl_s=0, tokens=3, tokens_stddev=5.0, seed=7) as srv:
            return [call(srv, CHAT, chat(stream=False))[2]["usage"]["completion_tokens"] for _ in range(8)]

    first = counts()
    assert first == counts()
    assert min(first) >= 1 and len(set(first)) > 1


# connections


def test_keep_alive_serves_streams_and_blocking_on_one_connection(mock: MockThread) -> None:
    conn = Conn(mock)
    local = conn.sock.getsockname()
    try:
        for body in (chat(2), chat(3, stream=False), chat(1)):
            status, _, _, complete = conn.call("POST", CHAT, body)
            assert (status, complete) == (200, True)
        assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(mock: MockThread) -> None:
    conn = Conn(mock)
    try:
        conn.send("POST", CHAT, chat(3))
        conn.send("GET", "/v1/models")
        assert len(events(conn.read()[2])) == 3 + 3
        assert json.loads(conn.read()[2][0])["object"] == "list"
    finally:
        conn.close()


def test_http10_stream_is_raw_sse_ended_by_close(mock: MockThread) -> None:
    conn = Conn(mock)
    try:
        conn.send("POST", CHAT, chat(2), version="1.0")
        status, headers, (body,), _ = conn.read()
    finally:
        conn.close()
    assert (status, headers.get("transfer-encoding"), headers["connection"]) == (200, None, "close")
    assert body.count(b"\n\n") == 2 + 3 and body.endswith(b"data: [DONE]\n\n")


# faults


def fault(**fraction: float) -> MockThread:
    return MockThread(ttft_s=TTFT, itl_s=ITL, tokens=TOKENS, **fraction)


def test_fail_429_has_retry_after_and_the_openai_error() -> None:
    with fault(fail_429=1.0) as srv:
        status, headers, body = call(srv, CHAT, chat())
        assert (status, headers["retry-after"], body["error"]["code"]) == (429, "1", "rate_limit_exceeded")
        assert srv.state.faults["fail_429"] == 1


def test_fail_500() -> None:
    with fault(fail_500=1.0) as srv:
        status, _, body = call(srv, CHAT, chat())
        assert (status, body["error"]["type"]) == (500, "server_error")


def test_hang_never_answers_and_keeps_the_connection_open() -> None:
    with fault(hang=1.0) as srv:
        conn = Conn(srv, timeout=0.2)
        try:
            conn.send("POST", CHAT, chat())
            with pytest.raises(TimeoutError):
                conn.sock.recv(1)  # neither data nor EOF
            assert srv.state.faults["hang"] == 1
        finally:
            conn.close()


def test_drop_mid_stream_sends_half_then_closes_without_last_chunk() -> None:
    with fault(drop_mid_stream=1.0) as srv:
        evs, complete = stream(srv, CHAT, chat())
        assert not complete
        assert len(evs) == 1 + TOKENS // 2  # the role event and half the tokens
        conn = Conn(srv)
        try:
            status, headers, (body,), complete = conn.call("POST", CHAT, chat(stream=False))
        finally:
            conn.close()
        assert (status, complete) == (200, False) and 0 < len(body) < int(headers["content-length"])


def test_bad_chunk_is_one_broken_event_and_the_stream_goes_on() -> None:
    with fault(bad_chunk=1.0) as srv:
        evs, complete = stream(srv, CHAT, chat(6, usage=True))
        assert complete
        assert evs.count(b"{not json") == 1
        good = [e for e in evs if e != b"{not json"]
        assert [e["choices"][0]["delta"]["content"] for e in good[1:7]] == list(WORDS[:6])
        assert (good[-2]["usage"]["completion_tokens"], good[-1]) == (6, b"[DONE]")


def test_empty_stream_has_no_tokens() -> None:
    with fault(empty=1.0) as srv:
        evs, complete = stream(srv, CHAT, chat(usage=True))
        assert complete
        assert [list(e["choices"][0]["delta"]) for e in evs[:2]] == [["role", "content"], []]
        assert (evs[2]["usage"], evs[3:]) == (usage(5, 0), [b"[DONE]"])


def test_fault_fractions_split_the_requests() -> None:
    with MockThread(ttft_s=0, itl_s=0, tokens=1, fail_429=0.25, fail_500=0.25, seed=3) as srv:
        codes = [call(srv, CHAT, chat(stream=False))[0] for _ in range(80)]
        assert codes.count(429) == srv.state.faults["fail_429"] > 5
        assert codes.count(500) == srv.state.faults["fail_500"] > 5
        assert codes.count(200) == 80 - codes.count(429) - codes.count(500) > 20
        assert srv.state.requests == 80


# timing


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_no_event_is_early(jitter: float) -> None:
    with MockThread(ttft_s=TTFT, itl_s=ITL, tokens=12, jitter=jitter, record_sends=True) as srv:
        conn = Conn(srv)
        try:
            for _ in range(3):
                sent = time.perf_counter()
                conn.send("POST", CHAT, chat())
                status, headers = conn.read_head()
                first_byte = time.perf_counter() - sent
                assert (status, conn.read_body(headers)[1]) == (200, True)
                assert first_byte < TTFT  # the head and the role event go at once
        finally:
            conn.close()
        assert len(srv.state.sends) == 3 and srv.state.streams_open == 0
        for arrival, sends in zip(srv.state.arrivals, srv.state.sends, strict=True):
            assert len(sends) == 12
            assert sends[0] - arrival >= TTFT * (1 - jitter) * 1e9
            gaps = [b - a for a, b in itertools.pairwise(sends)]
            assert min(gaps) >= (ITL * (1 - jitter) - 0.001) * 1e9
            if jitter == 0:
                assert all(t - arrival >= (TTFT + k * ITL) * 1e9 for k, t in enumerate(sends))


# options and process


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("ttft_s", -1.0, "--ttft must be from 0"),
        ("tokens", 0, "--tokens must be an integer from 1"),
        ("jitter", 1.5, "--jitter must be a fraction from 0 to 1"),
        ("hang", -0.1, "--hang must be a fraction"),
        ("port", 70000, "port must be from 0 to 65535"),
    ],
)
def test_options_are_validated(field: str, value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        MockOptions(**{field: value})  # type: ignore[arg-type]


def test_fault_fractions_must_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="must add up to at most 1"):
        MockOptions(fail_429=0.6, drop_mid_stream=0.6)


def test_serve_mock_exits_cleanly_on_sigterm() -> None:
    code = (
        "from squall.targets.mock_llm import serve_mock\n"
        "from squall.targets.mock_options import MockOptions\n"
        "serve_mock(MockOptions(port=0), ready=lambda port: print(port, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_mock_command_serves_reasoning_and_tool_calls_from_its_flags() -> None:
    cmd = [
        sys.executable,
        "-m",
        "squall",
        "mock",
        "--port",
        "0",
        "--ttft",
        "0s",
        "--itl",
        "0s",
        "--tokens",
        "3",
    ]
    proc = subprocess.Popen(
        [*cmd, "--reasoning-tokens", "2", "--tool-calls", "--keep-received", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        srv = type("Srv", (), {"port": port})()
        status, _, body = call(srv, CHAT, chat(stream=False))  # type: ignore[arg-type]
        message = body["choices"][0]["message"]
        assert (status, message["tool_calls"][0]["function"]["name"]) == (200, "mock_tool")
        assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"input": "".join(WORDS[:3])}
        assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 2}
        assert call(srv, "/v1/received", method="GET")[2] == [chat(stream=False)]  # type: ignore[arg-type]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        (["--reasoning-tokens", "-1"], "--reasoning-tokens must be an integer from 0"),
        (["--keep-received", "-5"], "--keep-received must be an integer from 0"),
    ],
)
def test_mock_command_rejects_bad_new_flags_in_one_line(flag: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "squall", "mock", "--port", "0", *flag],
        capture_output=True,
        text=True,
        timeout=20,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("squall: error: ") and says in lines[0]
