"""Histograms hold answered requests only; a run where nothing was answered says so, percentiles null."""

import asyncio
import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.engine import run
from squall.hist import decode
from squall.plan.plan import assemble
from squall.plan.specs import PySpec, RequestSpec
from squall.plan.thresholds import parse_threshold
from squall.result.document import Result
from squall.result.read import read_result
from squall.targets.serve import ServerThread

TRANSPORTS = ("raw", "aiohttp")
EMPTY = dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"))


def go(url: str, transport: str = "raw", **kw: object) -> Result:
    kw.setdefault("workers", 1)
    kw.setdefault("connections", 2)
    return run(assemble(RequestSpec(url), quiet=True, transport=transport, **kw).validate())  # type: ignore[arg-type]


def answered(doc: dict, name: str = "latency") -> int:
    blob = doc["histograms"].get(name)
    return 0 if blob is None else decode(blob).get_total_count()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_connects_are_no_latency_and_say_so(closed_port: int, transport: str, check_result) -> None:  # type: ignore[no-untyped-def]
    res = go(f"http://127.0.0.1:{closed_port}/", transport, requests=5)
    doc, s = res.doc, res.summary
    check_result(doc)
    assert (s["requests"], s["ok"], s["errors"], s["error_kinds"]) == (5, 0, 5, {"connect": 5})
    for name in ("latency_ms", "service_ms", "ttfb_ms"):
        assert s[name] == EMPTY, name  # null, never 0 ms
    assert answered(doc) == 0 and answered(doc, "ttfb") == 0
    assert s["rps"] > 0 and s["ok_rps"] == 0.0  # the failures came fast; none was ok
    assert all(e["p50"] is None and e["p99"] is None for e in doc["timeseries"])
    said = [w for w in res.warnings if w.startswith("no request got an answer: ")]
    assert said == [
        "no request got an answer: 5 could not connect (connect: refused, unreachable or no such host); so "
        "there is no latency to report (every percentile is null), and the "
        f"{s['rps']:,.1f} req/s counts these failures (ok_rps 0)"
    ]
    assert res.valid and res.exit_code() == 0  # squall measured it honestly: nothing answered


def test_timeouts_are_named_with_the_timeout_and_an_unjudgeable_bound_fails(target: ServerThread) -> None:
    bounds = tuple(parse_threshold(t) for t in ("p99<1s", "errors.timeout<=4", "ok_rps>=0"))
    res = go(target.url + "/delay/2000", requests=4, connections=4, timeout_s=0.2, thresholds=bounds)
    s = res.summary
    assert s["error_kinds"] == {"timeout": 4} and s["latency_ms"] == EMPTY
    assert any(
        w.startswith(
            "no request got an answer: 4 timed out (timeout: no complete answer within --timeout 0.2s)"
        )
        for w in res.warnings
    )
    verdicts = [(t["expr"], t["ok"], t["value"]) for t in res.doc["thresholds"]]
    assert verdicts == [("p99<1s", False, None), ("errors.timeout<=4", True, 4.0), ("ok_rps>=0", True, 0.0)]
    assert res.valid and res.exit_code() == 1  # no data is not a pass


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_only_answered_requests_are_in_the_histograms(byte_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    """Every other connection is closed unanswered: those are `reset` errors, outside every histogram."""
    turn = itertools.count()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if next(turn) % 2 == 0:
            await asyncio.sleep(0.002)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    res = go(f"http://127.0.0.1:{byte_server(handler)}/", transport, requests=40)
    doc, s = res.doc, res.summary
    assert s["requests"] == 40 and s["ok"] + s["errors"] == 40
    assert s["ok"] > 0 and s["errors"] > 0 and set(s["error_kinds"]) == {"reset"}, s["error_kinds"]
    assert answered(doc) == answered(doc, "ttfb") == sum(s["status_codes"].values()) == s["ok"]
    assert s["latency_ms"]["min"] >= 2.0  # no failure's quick end pulled it down
    assert sum(e["ok"] for e in doc["timeseries"]) == s["ok"]
    assert not any(w.startswith("no request got an answer") for w in res.warnings)


def test_a_second_with_no_answer_has_null_percentiles(target: ServerThread) -> None:
    # One connection, each answer 1.5 s late: the first measured second ends with nothing answered.
    res = go(target.url + "/delay/1500", connections=1, duration_s=2.0)
    series = res.doc["timeseries"]
    empty = [e for e in series if e["requests"] == 0]
    assert empty and all(e["p50"] is None and e["p99"] is None for e in empty)
    assert all(e["p50"] is not None for e in series if e["requests"])


def test_a_py_run_whose_every_iteration_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "always_raises.py").write_text(
        "def workload():\n    async def once():\n        raise ValueError('no')\n    return once\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = assemble(
        RequestSpec("http://127.0.0.1/"),
        py=PySpec("always_raises:workload"),
        workers=1,
        connections=2,
        requests=6,
        quiet=True,
    )
    res = run(plan.validate())
    assert res.summary["error_kinds"] == {"ValueError": 6} and res.summary["latency_ms"] == EMPTY
    said = [w for w in res.warnings if w.startswith("no iteration completed: ")]
    assert len(said) == 1 and said[0].startswith("no iteration completed: 6 raised ValueError; ")


def test_the_console_shows_dashes_and_ok_per_second(closed_port: int, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        [
            "run",
            f"http://127.0.0.1:{closed_port}/",
            "-n",
            "5",
            "-w",
            "1",
            "-o",
            str(out),
            "--threshold",
            "p99<1s",
        ],
    )
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert any(" req/s (0.0 ok/s), 0.00% ok, 5 errors" in line for line in lines), res.output
    latency = next(line for line in lines if line.startswith("latency"))
    assert latency.split()[1:] == ["—"] * 8
    assert "threshold FAIL  p99<1s  (no data)" in res.output
    doc = read_result(out)  # a result with null percentiles reads back whole
    assert doc["summary"]["latency_ms"]["p99"] is None and doc["thresholds"][0]["value"] is None
    assert doc["timeseries"][0]["p50"] is None


def test_a_scenario_step_that_got_no_answer_has_no_latency(closed_port: int, tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    steps = "[{name: home, request: {path: /}}, {name: item, request: {path: /item}}]"
    scenario.write_text(
        f"base_url: http://127.0.0.1:{closed_port}\nscenarios:\n  - name: a\n    steps: {steps}\n"
    )
    out = tmp_path / "s.json"
    res = CliRunner().invoke(
        app, ["scenario", str(scenario), "-n", "4", "-u", "1", "-w", "1", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    s = read_result(out)["summary"]
    assert s["latency_ms"] == EMPTY
    assert s["steps"]["home"]["error_kinds"] == {"connect": 4} and s["steps"]["home"]["latency_ms"] == EMPTY
    assert s["steps"]["item"]["requests"] == 0 and s["steps"]["item"]["latency_ms"] == EMPTY
    assert s["scenarios"]["a"]["failed_at"] == {"home": 4}
    assert s["scenarios"]["a"]["duration_ms"] == EMPTY  # a failed iteration has no duration
