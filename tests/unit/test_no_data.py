"""No data is said as such: null percentiles, "—" on screen, empty CSV cells, and a warning in plain words."""

import csv
import io
from pathlib import Path

import pytest
from rich.console import Console

from squall.collector.aggregate import Aggregate, second_entry
from squall.collector.result import nothing_answered, target_summary
from squall.engine.recorder import Recorder
from squall.plan.plan import Plan
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop
from squall.report.console import print_summary
from squall.report.csv import write_csv
from squall.report.live import LiveView
from squall.result.merge import _series, _targets
from squall.wire import Window

EMPTY = dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"))


def _window(rec: Recorder, seq: int) -> Window:
    return rec.snapshot(seq, (seq - 1) * 10**9, seq * 10**9, 0)


def test_failures_leave_the_histograms_empty_and_the_percentiles_null() -> None:
    rec = Recorder(0, 10)
    for _ in range(3):
        rec.failure("connect")
    agg = Aggregate()
    agg.add(_window(rec, 1))
    rec.response(200, 0, 500_000, 1_000_000, 2_000_000, 2)  # one answer, 2 ms, in the second window
    agg.add(_window(rec, 2))
    first, second = agg.pop_seconds(2)
    assert (second_entry(first, 1.0)["p50"], second_entry(first, 1.0)["p99"]) == (None, None)
    assert second_entry(second, 1.0)["p50"] == 2.0
    s = agg.summary(2.0, open_model=False)
    assert (s["requests"], s["ok"], s["rps"], s["ok_rps"]) == (4, 1, 2.0, 0.5)
    assert s["latency_ms"]["max"] == 2.0 and agg.hists["latency"].get_total_count() == 1
    only_failures = Aggregate()
    rec.failure("timeout")
    only_failures.add(_window(rec, 3))
    assert only_failures.summary(1.0, open_model=True)["latency_ms"] == EMPTY
    assert only_failures.summary(1.0, open_model=True)["schedule_lag_ms"] == EMPTY


def _summary(**kw: object) -> dict:
    base = {"requests": 0, "ok": 0, "errors": 0, "status_codes": {}, "error_kinds": {}, "interrupted": 0}
    return base | {"rps": 1458.2, "ok_rps": 0.0} | kw


@pytest.mark.parametrize(
    ("summary", "py", "said"),
    [
        (
            _summary(requests=5, errors=5, error_kinds={"connect": 5}),
            False,
            "no request got an answer: 5 could not connect (connect: refused, unreachable or no such host); "
            "so there is no latency to report (every percentile is null), and the 1,458.2 req/s counts these "
            "failures (ok_rps 0)",
        ),
        (
            _summary(requests=7, errors=7, error_kinds={"timeout": 4, "reset": 3}, interrupted=2),
            False,
            "no request got an answer: 4 timed out (timeout: no complete answer within --timeout 2s), 3 saw "
            "the connection reset or closed before an answer (reset), 2 were still waiting when the run "
            "ended, and were cancelled; so",
        ),
        (
            _summary(error_kinds={"a_kind": 1, "tls": 5, "protocol": 2, "other": 2, "fd_exhausted": 1}),
            False,
            "no request got an answer: 5 failed the TLS handshake (tls), 2 failed (other), 2 got bytes that "
            "are not HTTP/1.1 (protocol), 2 failed in 2 other ways; so",
        ),
        (
            _summary(interrupted=64),
            False,
            "no request got an answer: 64 were still waiting when the run ended",
        ),
        (
            _summary(requests=6, errors=6, error_kinds={"ValueError": 4, "timeout": 2}),
            True,
            "no iteration completed: 4 raised ValueError, 2 timed out (timeout: no complete answer within "
            "--timeout 2s); so there is no latency to report (every percentile is null), and the 1,458.2/s",
        ),
        (
            _summary(requests=6, ok=1, errors=5, status_codes={"200": 1}, error_kinds={"connect": 5}),
            False,
            None,
        ),
        (_summary(requests=3, errors=3, status_codes={"503": 3}, error_kinds={"http_5xx": 3}), False, None),
        (_summary(), False, None),  # nothing ended at all: nothing to say here
    ],
)
def test_a_run_where_nothing_answered_says_what_happened(summary: dict, py: bool, said: str | None) -> None:
    got = nothing_answered(summary, in_process=py, timeout="--timeout 2s")
    if said is None:
        assert got is None
    else:
        assert got is not None and got.startswith(said), got


def test_the_target_figures_come_from_the_measured_samples() -> None:
    series = [
        {"t": 1.0, "target": {"cpu": 10.0, "rss_mb": 100.0, "fds": 9}},
        {"t": 2.0},  # a second sampled late: none
        {"t": 3.0, "target": {"cpu": 50.0, "rss_mb": 300.0, "fds": 9}},
        {"t": 4.0, "target": {"cpu": 30.0, "rss_mb": 200.0}},  # the last sample has no fds
    ]
    assert target_summary(series) == {
        "samples": 3,
        "cpu_mean_pct": 30.0,
        "cpu_max_pct": 50.0,
        "rss_max_mb": 300.0,
        "rss_last_mb": 200.0,
    }
    assert target_summary([{"t": 1.0}, {"t": 2.0, "target": {}}]) is None


def test_merged_target_figures() -> None:
    a = {"samples": 10, "cpu_mean_pct": 20.0, "cpu_max_pct": 60.0, "rss_max_mb": 500.0, "rss_last_mb": 400.0}
    b = {"samples": 30, "cpu_mean_pct": 40.0, "cpu_max_pct": 50.0, "rss_max_mb": 450.0, "rss_last_mb": 450.0}
    assert _targets([(20.0, b), (10.0, a), (15.0, None)]) == {
        "samples": 40,
        "cpu_mean_pct": 35.0,  # weighted by samples
        "cpu_max_pct": 60.0,
        "rss_max_mb": 500.0,
        "rss_last_mb": 450.0,  # b ended last
    }
    assert _targets([(1.0, None)]) is None


def test_a_merged_second_with_no_answer_anywhere_stays_null() -> None:
    docs = [
        {"timeseries": [{"t": 1.0, "requests": 2, "errors": 2, "p50": None, "p99": None}]} for _ in range(2)
    ]
    docs[1]["timeseries"].append({"t": 2.0, "requests": 1, "p50": 3.0, "p99": 5.0})
    series, approximate = _series(docs, ["a", "b"], [0.0, 0.0], 0.0)  # (no per-second histograms kept)
    assert approximate == 2
    assert [(e["t"], e["p50"], e["p99"]) for e in series] == [(1.0, None, None), (2.0, 3.0, 5.0)]


def _doc(summary: dict, series: list[dict]) -> dict:
    meta = {"method": "GET", "url": "http://127.0.0.1:1/", "transport": "raw", "workers": 1, "connections": 2}
    meta |= {"model": "closed", "stop_reason": "requests"}
    return {"meta": meta, "summary": summary, "timeseries": series, "warnings": [], "valid": True}


def _nothing() -> dict:
    s = _summary(requests=5, errors=5, error_kinds={"connect": 5}, duration_s=0.003, bytes_in=0)
    return s | {"latency_ms": EMPTY, "service_ms": EMPTY, "ttfb_ms": EMPTY}


def test_the_console_shows_dashes_and_ok_per_second() -> None:
    out = io.StringIO()
    doc = _doc(_nothing(), [])
    doc["thresholds"] = [{"expr": "p99<1s", "ok": False, "value": None}]
    print_summary(doc, Console(file=out, width=120, highlight=False))
    text = out.getvalue()
    assert "  5 requests in 0.00s, 1,458.2 req/s (0.0 ok/s), 0.00% ok, 5 errors, 0 bytes in" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()}
    assert rows["latency"] == rows["service"] == rows["ttfb"] == ["—"] * 8
    assert "threshold FAIL  p99<1s  (no data)" in text
    ok = _summary(requests=5, ok=5, status_codes={"200": 5}, duration_s=1.0, bytes_in=0, rps=5.0, ok_rps=5.0)
    out = io.StringIO()
    print_summary(_doc(ok | {"latency_ms": EMPTY | {"p50": 1.0}}, []), Console(file=out, width=120))
    assert " 5.0 req/s, 100.00% ok" in out.getvalue()  # no errors: ok/s would say the same again


def test_the_console_shows_the_target_figures() -> None:
    out = io.StringIO()
    target = {
        "samples": 4,
        "cpu_mean_pct": 12.5,
        "cpu_max_pct": 40.0,
        "rss_max_mb": 612.0,
        "rss_last_mb": 600.5,
    }
    print_summary(_doc(_nothing() | {"target": target}, []), Console(file=out, width=120))
    assert "  target process: CPU 12.5% mean, 40.0% max; RSS 612.0 MB max, 600.5 MB last (4 samples)" in (
        out.getvalue()
    )


def test_the_live_line_shows_a_dash_for_an_empty_second(capsys: pytest.CaptureFixture[str]) -> None:
    view = LiveView(Plan(RequestSpec("http://127.0.0.1:1/"), stop=Stop(duration_s=15.0)))
    entry = {"rps": 0.0, "p50": None, "p99": None, "errors": 3, "inflight": 0, "worker_cpu": {0: 5.0}}
    view.update(entry, Aggregate(), 2.0)
    view.update(entry | {"output_tokens_per_s": 0.0, "ttft_p50": None}, Aggregate(), 3.0)
    lines = capsys.readouterr().err.splitlines()
    assert "p50 —  p99 —  errors 3" in lines[0], lines
    assert "ttft p50 —  p50 —" in lines[1], lines


def test_the_csv_leaves_an_empty_cell_for_no_data(tmp_path: Path) -> None:
    series = [{"t": 1.0, "rps": 5.0, "requests": 5, "ok": 0, "errors": 5, "p50": None, "p99": None}]
    summary_path = write_csv(_doc(_nothing(), series), tmp_path / "r.csv")
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert dict(zip(rows[0], rows[1], strict=True))["p50"] == ""
    summary = dict(csv.reader(summary_path.open()))
    assert summary["latency_ms.p99"] == "" and summary["ok_rps"] == "0.0"
