"""`run(plan)` end to end: real worker and collector processes against loopback servers."""

import os

import pytest

from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.specs import RequestSpec
from squall.result.document import Result
from squall.targets.serve import ServerThread


def go(url: str, **kw: object) -> Result:
    kw.setdefault("quiet", True)
    kw.setdefault("workers", 2)
    kw.setdefault("connections", 8)
    return run(assemble(RequestSpec(url), **kw).validate())  # type: ignore[arg-type]


def test_exact_request_count(target: ServerThread) -> None:
    res = go(target.url + "/", requests=1000)
    s = res.summary
    assert s["requests"] == 1000
    assert s["ok"] == 1000
    assert s["errors"] == 0
    assert s["status_codes"] == {"200": 1000}
    assert s["bytes_in"] == 12 * 1000
    assert res.valid or res.doc["generator_limited"]
    assert res.doc["workers_lost"] == {}
    assert res.doc["schema"] == "squall/result@1"
    for key in ("latency_ms", "service_ms", "ttfb_ms"):
        assert list(s[key]) == ["min", "mean", "p50", "p90", "p95", "p99", "p999", "max"]
    assert "schedule_lag_ms" not in s
    assert s["latency_ms"]["p50"] > 0
    assert set(res.doc["meta"]["pids"]) == {"0", "1"}


@pytest.mark.parametrize(
    ("path", "kind", "code"),
    [
        ("/status/503", "http_5xx", "503"),
        ("/status/429", "http_429", "429"),
        ("/status/404", "http_4xx", "404"),
    ],
)
def test_http_errors_are_classified(target: ServerThread, path: str, kind: str, code: str) -> None:
    s = go(target.url + path, requests=50, workers=1, connections=4).summary
    assert s["requests"] == 50
    assert s["errors"] == 50
    assert s["error_kinds"] == {kind: 50}
    assert s["status_codes"] == {code: 50}


def test_connect_refused(closed_port: int) -> None:
    s = go(f"http://127.0.0.1:{closed_port}/", requests=20, workers=1, connections=2).summary
    assert s["requests"] == 20
    assert s["error_kinds"] == {"connect": 20}
    assert s["status_codes"] == {}


def test_timeout(target: ServerThread) -> None:
    s = go(target.url + "/delay/2000", requests=4, workers=1, connections=4, timeout_s=0.2).summary
    assert s["error_kinds"] == {"timeout": 4}


def test_reset(target: ServerThread) -> None:
    s = go(target.url + "/reset", requests=10, workers=1, connections=2).summary
    assert s["requests"] == 10
    assert s["error_kinds"] == {"reset": 10}


def test_duration_run_has_a_series(target: ServerThread) -> None:
    res = go(target.url + "/", duration_s=2.0, target_pid=os.getpid())
    s, series = res.summary, res.doc["timeseries"]
    assert s["requests"] > 100
    assert 1.9 < s["duration_s"] < 4.5
    assert [e["t"] for e in series[:2]] == [1.0, 2.0]
    assert sum(e["requests"] for e in series) == s["requests"]
    first = series[0]
    for key in ("rps", "ok", "errors", "p50", "p99", "inflight", "worker_cpu", "worker_rss_mb", "host_cpu"):
        assert key in first
    assert set(first["worker_cpu"]) == {0, 1} or set(first["worker_cpu"]) == {"0", "1"}
    assert first["target"]["rss_mb"] > 0
    assert first["target"]["threads"] >= 2
    assert res.doc["meta"]["stop_reason"] == "duration"


def test_open_model_delivers_the_schedule(target: ServerThread) -> None:
    res = go(target.url + "/", rate=400.0, duration_s=1.5)
    s = res.summary
    assert s["requests"] == 600  # constant arrivals: exactly rate x duration
    assert s["dropped"] == 0
    assert "schedule_lag_ms" in s
    assert res.doc["meta"]["model"] == "open"
    assert res.doc["timeseries"][0]["target_rps"] == 400.0


def test_open_model_with_request_budget(target: ServerThread) -> None:
    s = go(target.url + "/", rate=1000.0, requests=300, arrival="poisson").summary
    assert s["requests"] == 300


def test_warmup_is_not_counted(target: ServerThread) -> None:
    s = go(target.url + "/", rate=200.0, duration_s=1.0, warmup_s=0.5).summary
    assert s["requests"] == 200
    assert s["warmup_requests"] == 100


def test_result_file_is_written(target: ServerThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from squall.report.json import read_json

    out = tmp_path / "r.json"
    res = go(target.url + "/", requests=100, out_path=str(out))
    doc = read_json(str(out))
    assert doc["summary"] == res.summary
    assert set(doc["histograms"]) >= {"latency", "service", "ttfb"}
    assert doc["meta"]["connections"] == 8


def test_open_model_duration_is_exact_across_workers(target: ServerThread) -> None:
    res = go(target.url + "/", rate=100.0, duration_s=3.0, workers=3, connections=9)
    s = res.summary
    assert s["requests"] == 300
    assert s["duration_s"] == 3.0
    assert s["rps"] == 100.0
    assert sum(e["requests"] for e in res.doc["timeseries"]) == 300


def test_drain_cancels_what_is_still_in_flight(target: ServerThread) -> None:
    for transport in ("raw", "aiohttp"):
        res = go(
            target.url + "/delay/5000",
            workers=1,
            connections=4,
            duration_s=0.5,
            transport=transport,
            drain_s=0.3,
        )
        s = res.summary
        assert s["interrupted"] == 4, transport
        assert s["requests"] == 0, transport
        assert any("still in flight" in w for w in res.warnings)


def test_a_rate_beyond_the_generator_is_reported_not_hidden(target: ServerThread) -> None:
    # 3M/s: far beyond what one worker's pacer can dispatch on any machine, so squall itself falls behind
    # (at 300k/s a slow target could make every send "dropped" before the pacer ever lagged).
    res = go(target.url + "/", rate=3_000_000.0, duration_s=1.0, workers=1, connections=8, drain_s=0.5)
    s = res.summary
    assert res.exit_code() == 3
    assert res.doc["generator_limited"] is True
    assert s["unsent"] > 0
    accounted = s["requests"] + s["dropped"] + s["unsent"] + s["interrupted"]
    assert abs(accounted - 3_000_000) <= 2, accounted
    assert any("fell behind its schedule" in w for w in res.warnings)


def test_a_saturated_open_model_measures_from_its_own_schedule(target: ServerThread) -> None:
    # 4 connections at 20 ms hold ~200/s; 400/s is asked. The warmup's unsent queue is left behind at its
    # end, so the first measured second is as busy as the others (it used to spend itself on that queue).
    res = go(target.url + "/delay/20", rate=400.0, connections=4, workers=1, duration_s=2.0, warmup_s=1.0)
    full = [e["requests"] for e in res.doc["timeseries"] if not e["partial"]]
    assert len(full) == 2 and min(full) >= 0.6 * max(full), full
    assert res.summary["dropped"] > 0


def test_a_late_shard_starts_at_once_and_says_so(target: ServerThread) -> None:
    import time

    res = go(target.url + "/", requests=20, connections=2, workers=1, start_at=time.time() - 5)
    assert res.summary["requests"] == 20
    assert any("after --start-at" in w for w in res.warnings)


def test_a_bound_on_a_histogram_with_no_values_fails(target: ServerThread) -> None:
    from squall.plan.thresholds import parse_threshold

    # Every request times out: nothing was answered, so "p99<1s" has no data and must not pass as 0 ms.
    res = go(
        target.url + "/delay/2000",
        requests=2,
        connections=2,
        workers=1,
        timeout_s=0.2,
        thresholds=(parse_threshold("p99<1s"), parse_threshold("errors<=100%")),
    )
    assert res.summary["error_kinds"] == {"timeout": 2}
    verdicts = {t["expr"]: (t["ok"], t["value"]) for t in res.doc["thresholds"]}
    assert verdicts == {"p99<1s": (False, None), "errors<=100%": (True, 100.0)}
    assert res.exit_code() == 1


def test_the_run_ends_with_the_last_answer_not_after_a_last_think(target: ServerThread) -> None:
    import time

    from squall.plan.load import parse_think

    began = time.monotonic()
    res = go(target.url + "/", requests=3, connections=3, workers=1, think=parse_think("20s"))
    assert res.summary["requests"] == 3
    assert time.monotonic() - began < 10  # each user's one request, then no 20 s pause before the end
