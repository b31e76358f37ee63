"""The built-in targets' GET /metrics: vLLM-style Prometheus text from the mock (exact counts after N
requests, running and waiting behind --max-running), the serve target's own counters."""

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.specs import LlmSpec, RequestSpec
from squall.targets.mock_llm import MockThread
from squall.targets.mock_metrics import TTFT_BOUNDS
from squall.targets.mock_options import MockOptions
from squall.targets.serve import ServerThread

FAST = {"ttft_s": 0.03, "itl_s": 0.005, "tokens": 12}


def scrape(url: str) -> dict[str, float]:
    """{sample name (with le for buckets): value} of one /metrics read, parsed by prometheus_client."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            assert labels.pop("model_name", "squall-mock") == "squall-mock"
            out[s.name + (f"[{labels['le']}]" if "le" in labels else "")] = s.value
    return out


def chat(url: str, stream: bool, words: str = "one two three", timeout: float = 10) -> bytes:
    body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": words}]}
    req = urllib.request.Request(
        url + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def test_metrics_parse_and_start_at_zero() -> None:
    with MockThread(**FAST) as mock:
        m = scrape(mock.url)
    assert m["vllm:num_requests_running"] == m["vllm:num_requests_waiting"] == 0
    assert m["vllm:request_success_total"] == m["vllm:generation_tokens_total"] == 0
    assert m["vllm:time_to_first_token_seconds_count"] == 0
    assert m["vllm:kv_cache_usage_perc"] == m["vllm:gpu_cache_usage_perc"] == 0
    assert [k for k in m if k.startswith("vllm:time_to_first_token_seconds_bucket")] == [
        f"vllm:time_to_first_token_seconds_bucket[{b}]" for b in [*map(float, TTFT_BOUNDS), "+Inf"]
    ]


def test_counters_move_with_requests_streamed_and_whole() -> None:
    with MockThread(**FAST) as mock:
        for stream in (True, False, True, False, True):
            chat(mock.url, stream, "four words in here")
        m = scrape(mock.url)
    assert m["vllm:request_success_total"] == 5
    assert m["vllm:generation_tokens_total"] == 5 * 12
    assert m["vllm:prompt_tokens_total"] == 5 * 4
    assert m["vllm:time_to_first_token_seconds_count"] == 5
    assert m["vllm:e2e_request_latency_seconds_count"] == 5
    assert m["vllm:time_to_first_token_seconds_bucket[+Inf]"] == 5
    assert m["vllm:time_to_first_token_seconds_bucket[0.02]"] == 0  # TTFT is 30 ms
    assert m["vllm:time_to_first_token_seconds_bucket[0.25]"] == 5
    assert 5 * 0.03 <= m["vllm:time_to_first_token_seconds_sum"] < 5 * 0.25
    assert m["vllm:e2e_request_latency_seconds_sum"] >= 5 * (0.03 + 11 * 0.005)


def test_a_squall_run_and_the_mock_agree_on_counts() -> None:
    with MockThread(**FAST) as mock:
        plan = assemble(
            RequestSpec(mock.url + "/v1/chat/completions", "POST"),
            quiet=True,
            llm=LlmSpec(api="chat"),
            workers=1,
            connections=8,
            requests=40,
        )
        s = run(plan.validate()).summary
        m = scrape(mock.url)
    assert (s["requests"], s["ok"]) == (40, 40)
    assert m["vllm:request_success_total"] == 40
    assert m["vllm:time_to_first_token_seconds_count"] == 40
    assert m["vllm:generation_tokens_total"] == s["llm"]["output_tokens"] == 40 * 12
    assert m["vllm:prompt_tokens_total"] == s["llm"]["input_tokens"]


def test_requests_beyond_max_running_wait_and_their_ttft_includes_the_wait() -> None:
    with MockThread(ttft_s=0.3, itl_s=0.01, tokens=5, max_running=2) as mock:
        threads = [threading.Thread(target=chat, args=(mock.url, True)) for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        m = scrape(mock.url)
        while m["vllm:num_requests_waiting"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
            m = scrape(mock.url)
        during = m
        for t in threads:
            t.join(10)
        after = scrape(mock.url)
    assert (during["vllm:num_requests_running"], during["vllm:num_requests_waiting"]) == (2, 4)
    assert during["vllm:kv_cache_usage_perc"] == 1.0  # 2 of 2
    assert (after["vllm:num_requests_running"], after["vllm:num_requests_waiting"]) == (0, 0)
    assert after["vllm:request_success_total"] == 6
    # Three waves of two: TTFTs of about 0.3, 0.65 and 1.0 s (each wave waits for the one before).
    assert after["vllm:time_to_first_token_seconds_bucket[0.5]"] == 2
    assert after["vllm:time_to_first_token_seconds_bucket[0.75]"] == 4
    assert after["vllm:time_to_first_token_seconds_bucket[2.5]"] == 6


def test_a_waiting_request_whose_client_leaves_is_no_longer_waiting() -> None:
    with MockThread(ttft_s=0.5, itl_s=0.01, tokens=3, max_running=1) as mock:
        first = threading.Thread(target=chat, args=(mock.url, True))
        first.start()
        body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
        with socket.create_connection(("127.0.0.1", mock.port)) as s:
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            deadline = time.monotonic() + 5
            while scrape(mock.url)["vllm:num_requests_waiting"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert scrape(mock.url)["vllm:num_requests_waiting"] == 1
        deadline = time.monotonic() + 5
        while scrape(mock.url)["vllm:num_requests_waiting"] > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.join(10)
        m = scrape(mock.url)
    assert (m["vllm:num_requests_waiting"], m["vllm:num_requests_running"]) == (0, 0)
    assert m["vllm:request_success_total"] == 1


def test_max_running_is_checked() -> None:
    with pytest.raises(ValueError, match="--max-running"):
        MockOptions(max_running=-1)
    res = subprocess.run(
        [sys.executable, "-m", "squall", "mock", "--port", "0", "--max-running", "-3"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2
    assert "--max-running" in res.stderr and "Traceback" not in res.stderr


def test_serve_counts_its_responses() -> None:
    with ServerThread() as server:
        for _ in range(7):
            urllib.request.urlopen(server.url + "/", timeout=5).read()
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got["squall_serve_requests_total"] == 7
    assert got["squall_serve_connections"] >= 1
    assert got["squall_serve_slots_busy"] == got["squall_serve_slots_waiting"] == 0
