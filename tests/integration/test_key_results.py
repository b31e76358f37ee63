"""summary.by_key (several keys, scenario keys from data rows) and summary.recovery after a real spike."""

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from squall.engine import run
from squall.plan.load import profile
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import LlmSpec, RequestSpec
from squall.report.console import print_summary
from squall.report.sections import figure_tables
from squall.result.document import Result
from squall.result.merge import merge
from squall.targets.mock_llm import MockThread

SSE = (
    b'data: {"choices":[{"index":0,"delta":{"content":"hi there"}}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\ndata: [DONE]\n\n'
)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(SSE), SSE)
LIMITED = b'{"error":"slow down"}'
TOO_MANY = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n%s" % (len(LIMITED), LIMITED)


def short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def keyed_handler(limited: bytes):  # type: ignore[no-untyped-def]
    """An LLM server answering 429 to requests sent with the key `limited`, a short stream to the others."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(10_000):  # (bounded: the runs here send a few hundred requests)
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: *(\d+)", head, re.I)
                await reader.readexactly(int(found.group(1)) if found else 0)
                writer.write(TOO_MANY if b"Bearer " + limited + b"\r\n" in head else OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


def llm_run(url: str, key_per: str, **kw: object) -> Result:
    spec = LlmSpec(api="chat", api_keys=("sk-one", "sk-two", "sk-three"), key_per=key_per)
    kw.setdefault("workers", 2)
    kw.setdefault("connections", 6)
    plan = assemble(RequestSpec(url, "POST"), quiet=True, llm=spec, **kw)  # type: ignore[arg-type]
    return run(plan.validate())


@pytest.mark.parametrize("key_per", ["request", "user"])
def test_by_key_adds_up_and_puts_429s_apart(byte_server, key_per: str, check_result, capsys) -> None:  # type: ignore[no-untyped-def]
    port = byte_server(keyed_handler(b"sk-two"))
    res = llm_run(f"http://127.0.0.1:{port}/v1/chat/completions", key_per, requests=90)
    check_result(res.doc)
    s, by_key = res.summary, res.summary["by_key"]
    assert set(by_key) == {short("sk-one"), short("sk-two"), short("sk-three")}
    for field in ("requests", "ok", "errors"):
        assert sum(k[field] for k in by_key.values()) == s[field]
    assert s["requests"] == 90
    two = by_key[short("sk-two")]
    assert two["rate_limited"] == two["errors"] == two["requests"] == s["error_kinds"]["http_429"]
    assert two["error_kinds"] == {"http_429": two["requests"]}
    if key_per == "request":
        assert [k["requests"] for k in by_key.values()] == [30, 30, 30]
    for name in (short("sk-one"), short("sk-three")):
        k = by_key[name]
        assert (k["errors"], k["rate_limited"], k["error_kinds"]) == (0, 0, {})
        assert (k["input_tokens"], k["output_tokens"]) == (7 * k["ok"], 3 * k["ok"])
        assert k["ttft_ms"]["p50"] is not None and k["latency_ms"]["p99"] is not None
    assert "sk-" not in str(res.doc)  # never the keys
    print_summary(res.doc)
    out = capsys.readouterr().out
    assert f"429s by key (sha256, first 8 hex digits): {short('sk-two')} {two['requests']:,} of" in out
    assert short("sk-one") not in out  # only the keys that got 429s
    assert any(t["id"] == "by_key" for t in figure_tables(res.doc))


def test_one_key_makes_no_key_parts() -> None:
    with MockThread(ttft_s=0.005, itl_s=0.001, tokens=3) as mock:
        spec = LlmSpec(api="chat", api_keys=("sk-only",))
        plan = assemble(RequestSpec(mock.url + "/v1/chat/completions", "POST"), quiet=True, llm=spec,
                        workers=1, connections=4, requests=20)  # fmt: skip
        res = run(plan.validate())
    assert res.summary["requests"] == 20
    assert "by_key" not in res.summary
    assert not any(k.startswith("key:") for k in res.doc.get("parts", {}))


def test_by_key_merges_exactly(byte_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = byte_server(keyed_handler(b"sk-three"))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    a, b = llm_run(url, "request", requests=30), llm_run(url, "request", requests=60, workers=1)
    merged = merge([a.doc, b.doc], ["a.json", "b.json"])
    for name, k in merged["summary"]["by_key"].items():
        for field in ("requests", "ok", "errors", "rate_limited", "output_tokens"):
            assert k[field] == a.summary["by_key"][name][field] + b.summary["by_key"][name][field]
    assert merged["summary"]["by_key"][short("sk-three")]["rate_limited"] == 30


SCENARIO = """\
base_url: {url}
data: {{csv: keys.csv, per: iteration}}
scenarios:
  - name: chat
    steps:
      - name: ask
        llm:
          path: /v1/chat/completions
          model: m
          prompt: "hello {{{{iteration}}}}"
          headers: {{Authorization: "Bearer {{{{key}}}}"}}
      - name: plain
        request:
          {{path: /v1/chat/completions, method: POST, json: {{n: 1}}, headers: {{x-api-key: "static"}}}}
"""


def _scenario_run(port: int, tmp_path: Path, keys: list[str], workers: int, requests: int) -> Result:
    """SCENARIO against the server on `port`, its ask step's keys the rows of a keys.csv of `keys`."""
    (tmp_path / "keys.csv").write_text("key\n" + "".join(f"{k}\n" for k in keys))
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(url=f"http://127.0.0.1:{port}"))
    sc = load_scenario(path)
    plan = assemble(RequestSpec(sc.base_url + "/"), quiet=True, scenario=sc, workers=workers, connections=4,
                    requests=requests)  # fmt: skip
    return run(plan.validate())


def test_a_scenarios_keys_come_from_its_data_rows(byte_server, tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    port = byte_server(keyed_handler(b"sk-b"))
    res = _scenario_run(port, tmp_path, ["sk-a", "sk-b"], workers=2, requests=40)
    check_result(res.doc)
    by_key = res.summary["by_key"]
    # Only the step whose key comes from a data row is counted by key (the plain step's key is fixed).
    assert set(by_key) == {short("sk-a"), short("sk-b")}
    ask = res.summary["steps"]["ask"]
    for field in ("requests", "ok", "errors"):
        assert sum(k[field] for k in by_key.values()) == ask[field]
    assert by_key[short("sk-b")]["rate_limited"] == by_key[short("sk-b")]["requests"] > 0
    assert by_key[short("sk-a")]["errors"] == 0 and by_key[short("sk-a")]["output_tokens"] > 0


def test_keys_past_a_worker_s_cap_are_counted_as_other_with_a_warning(byte_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = [f"sk-{i}" for i in range(300)]
    res = _scenario_run(byte_server(keyed_handler(b"none")), tmp_path, keys, workers=1, requests=300)
    by_key = res.summary["by_key"]
    assert len(by_key) == 257 and by_key["other"]["requests"] == 300 - 256
    assert sum(k["requests"] for k in by_key.values()) == res.summary["steps"]["ask"]["requests"]
    said = 'keys past the first 256 of a worker are counted together as "other"'
    assert any(said in w for w in res.warnings), res.warnings


def slowing_handler():  # type: ignore[no-untyped-def]
    """A server that answers in 5 ms with up to 4 requests in service, in 60 ms with more (a knee)."""
    busy = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(100_000):
                await reader.readuntil(b"\r\n\r\n")
                busy[0] += 1
                try:
                    await asyncio.sleep(0.005 if busy[0] <= 4 else 0.06)
                finally:
                    busy[0] -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


def test_a_spike_profile_gives_a_recovery_figure(byte_server, check_result) -> None:  # type: ignore[no-untyped-def]
    port = byte_server(slowing_handler())
    # 2 users, 20 from 2.0 s to 3.25 s (windows of a quarter second), then 2 again until 5 s
    plan = assemble(RequestSpec(f"http://127.0.0.1:{port}/"), quiet=True, workers=1, duration_s=5.0,
                    connections=20, shape=profile("spike", "users", 20, 5.0), window_s=0.25)  # fmt: skip
    res = run(plan.validate())
    check_result(res.doc)
    r = res.summary["recovery"]
    assert (r["spike_start_s"], r["spike_end_s"]) == (2.0, 3.25)
    assert r["baseline_seconds"] >= 5
    slowest = max(e["p99"] for e in res.doc["timeseries"] if 2.25 < e["t"] <= 3.25)
    assert slowest > 55 > r["baseline_p99_ms"]  # it did slow in the spike, and not before
    # (how soon it is back depends on this box's noise in quarter-second windows: a figure, or null)
    after = r["p99_recovered_after_s"]
    assert r["recovered"] is (after is not None)
    assert after is None or 0 <= after <= 1.5
    assert any(t["id"] == "recovery" for t in figure_tables(res.doc))
