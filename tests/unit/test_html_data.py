"""The data the HTML report is given: tables as text, verdict cards, chart columns with gaps, the matrix."""

import re
from typing import Any

from squall.report.html import chart_series, columns, page_data, plotly_js, render, with_gaps
from squall.report.matrix_page import matrix_data
from squall.report.sections import hunt_card, hunt_table, soak_card

LAT = {"min": 1.0, "mean": 2.0, "p50": 2.0, "p90": 3.0, "p95": 3.5, "p99": 4.0, "p999": 5.0, "max": 1500.0}


def _doc(**over: Any) -> dict[str, Any]:
    doc = {
        "schema": "squall/result@1",
        "meta": {
            "command": "squall run http://127.0.0.1:9/ -d 3s -c 4 --threshold p99<300ms",
            "version": "0.1.0",
            "started_at": "2026-01-01T00:00:00+0000",
            "url": "http://127.0.0.1:9/",
            "method": "GET",
            "transport": "raw",
            "workers": 1,
            "connections": 4,
            "model": "open",
            "rate": 50.0,
            "arrival": "poisson",
            "duration_s": 3.0,
            "warmup_s": 0.0,
            "timeout_s": 30.0,
            "shape": {
                "kind": "ramp",
                "stages": [{"duration_s": 1.0, "target": 10}, {"duration_s": 2, "target": 50}],
            },
            "stop_reason": "duration",
        },
        "summary": {
            "requests": 1234,
            "ok": 1200,
            "errors": 34,
            "error_kinds": {"timeout": 4, "http_5xx": 30},
            "status_codes": {"200": 1200, "503": 30},
            "duration_s": 3.0,
            "rps": 411.333,
            "ok_rps": 400.0,
            "bytes_in": 98765,
            "dropped": 0,
            "latency_ms": LAT,
            "service_ms": dict(LAT, p50=None),
        },
        "histograms": {},
        "timeseries": [
            {
                "t": 1.0,
                "span_s": 1.0,
                "requests": 0,
                "ok": 0,
                "errors": 0,
                "error_kinds": {},
                "p50": 0.0,
                "p99": 0.0,
                "rps": 0.0,
                "worker_cpu": {"0": 5.0},
                "worker_rss_mb": {"0": 40.0},
            },
            {
                "t": 2.0,
                "span_s": 0.5,
                "requests": 600,
                "ok": 590,
                "errors": 10,
                "error_kinds": {"http_5xx": 10},
                "p50": 2.0,
                "p99": 4.0,
                "rps": 1200.0,
                "worker_cpu": {"0": 50.0},
                "worker_rss_mb": {"0": 41.0},
            },
            {
                "t": 3.0,
                "span_s": 1.0,
                "requests": 634,
                "ok": 610,
                "errors": 24,
                "error_kinds": {"http_5xx": 20, "timeout": 4},
                "p50": None,
                "p99": None,
                "rps": 634.0,
                "worker_cpu": {"0": 40.0},
                "worker_rss_mb": {"0": 0},
            },
            {"t": 3.2, "partial": True, "requests": 1, "ok": 1, "p50": 9.0, "p99": 9.0},
        ],
        "thresholds": [
            {"expr": "p99<300ms", "ok": True, "value": 4.0},
            {"expr": "errors<1%", "ok": False, "value": 2.755},
        ],
        "host": {"hostname": "box", "cpus": 2, "memory_mb": 1024, "platform": "Linux", "python": "3.11"},
        "valid": True,
        "warnings": ["a warning"],
    }
    doc.update(over)
    return doc


def _table(data: dict[str, Any], tid: str) -> dict[str, Any]:
    (t,) = [t for t in data["tables"] if t["id"] == tid]
    return t


def _rows(data: dict[str, Any], tid: str) -> dict[str, list[Any]]:
    return {r[0]: r[1:] for r in _table(data, tid)["rows"]}


def test_the_totals_table_has_every_figure_of_the_summary() -> None:
    rows = _rows(page_data(_doc()), "totals")
    assert rows["requests"] == ["1,234"]
    assert rows["ok"] == ["1,200 (97.24 %)"]
    assert rows["errors"] == ["34 (2.76 %)"]
    assert rows["requests/s"] == ["411.3"]
    assert rows["ok requests/s"] == ["400.0"]
    assert rows["measured time"] == ["3.00 s"]
    assert rows["bytes in"] == ["98,765"]
    assert rows["dropped (the backlog was full)"] == ["0"]
    assert len(rows) == 8  # and nothing twice: kinds, codes and timings have tables of their own


def test_the_totals_table_has_the_target_process_the_console_prints() -> None:
    import io

    from rich.console import Console

    from squall.report.console import print_summary

    target = {"samples": 3, "cpu_mean_pct": 77.7, "cpu_max_pct": 83.6, "rss_max_mb": 39.9}
    target["rss_last_mb"] = 39.5
    doc = _doc()
    doc["summary"]["target"] = target
    rows = _rows(page_data(doc), "totals")
    assert rows["target process CPU"] == ["77.7 % mean, 83.6 % max"]
    assert rows["target process RSS"] == ["39.9 MB max, 39.5 MB last"]
    assert rows["target process samples"] == ["3"]
    assert len(rows) == 11
    out = io.StringIO()
    print_summary(doc, Console(file=out, width=200))
    said = "target process: CPU 77.7% mean, 83.6% max; RSS 39.9 MB max, 39.5 MB last (3 samples)"
    assert said in out.getvalue()  # the same figures as the console's line
    doc["summary"]["target"] = {"samples": 0, "cpu_mean_pct": None, "rss_max_mb": None}
    rows = _rows(page_data(doc), "totals")
    assert rows["target process CPU"] == ["—"] and rows["target process RSS"] == ["—"]
    assert "target process CPU" not in _rows(page_data(_doc()), "totals")


def test_timings_by_percentile_and_a_percentile_of_nothing_is_a_dash() -> None:
    t = _table(page_data(_doc()), "times")
    assert t["head"] == ["", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max"]
    rows = {r[0]: r[1:] for r in t["rows"]}
    assert rows["latency"] == [
        "1.00 ms",
        "2.00 ms",
        "2.00 ms",
        "3.00 ms",
        "3.50 ms",
        "4.00 ms",
        "5.00 ms",
        "1.50 s",
    ]
    assert rows["service"][2] == "—"
    empty = _doc()
    empty["summary"]["latency_ms"] = dict.fromkeys(LAT, None)
    assert _rows(page_data(empty), "times")["latency"] == ["—"] * 8
    zeros = _doc()  # an older result: an empty histogram's percentiles were 0
    zeros["summary"]["latency_ms"] = dict.fromkeys(LAT, 0.0)
    assert _rows(page_data(zeros), "times")["latency"] == ["—"] * 8


def test_status_and_error_tables_count_and_share() -> None:
    data = page_data(_doc())
    assert _table(data, "status_codes")["head"] == ["status", "count", "share of requests"]
    assert _table(data, "status_codes")["rows"] == [["200", "1,200", "97.24 %"], ["503", "30", "2.43 %"]]
    assert _table(data, "error_kinds")["head"] == ["kind", "count", "share of requests", "share of errors"]
    assert _table(data, "error_kinds")["rows"] == [
        ["http_5xx", "30", "2.43 %", "88.24 %"],
        ["timeout", "4", "0.32 %", "11.76 %"],
    ]
    clean = _doc()
    clean["summary"]["error_kinds"] = {}
    assert _table(page_data(clean), "error_kinds")["rows"] == []
    assert _table(page_data(clean), "error_kinds")["note"] == "none"


def test_thresholds_say_pass_or_fail() -> None:
    data = page_data(_doc())
    assert _table(data, "thresholds")["rows"] == [
        ["p99<300ms", ["pass", "ok"], "4.000"],
        ["errors<1%", ["FAIL", "bad"], "2.755"],
    ]
    assert ["thresholds", "1 failed", "bad"] in data["cards"]
    nothing = _doc(thresholds=[{"expr": "ttft_p99<1s", "ok": False, "value": None}])
    assert _table(page_data(nothing), "thresholds")["rows"] == [["ttft_p99<1s", ["FAIL", "bad"], "no data"]]


def test_the_configuration_says_what_was_asked_for() -> None:
    rows = _rows(page_data(_doc()), "config")
    assert rows["command"] == ["squall run http://127.0.0.1:9/ -d 3s -c 4 --threshold p99<300ms"]
    assert rows["load model"] == ["open: 50 req/s, poisson arrivals"]
    assert rows["connections"] == ["4"]
    assert rows["stages"] == ["ramp: 1 s to 10, 2 s to 50"]
    assert rows["duration"] == ["3 s"]
    assert rows["workers"] == ["1"] and rows["transport"] == ["raw"]
    assert rows["thresholds"] == ["p99<300ms, errors<1%"]
    assert rows["host"] == ["box: 2 CPUs, 1,024 MB, Linux, Python 3.11"]
    assert "warm-up" not in rows  # what was not asked for is not listed
    assert rows["method"] == ["GET"] and "iterations (-n)" not in rows


def test_a_scenario_configuration_names_no_method_and_counts_iterations() -> None:
    doc = _doc()
    doc["meta"] |= {"scenario": "checkout", "requests": 50, "method": "GET"}
    rows = _rows(page_data(doc), "config")
    assert "method" not in rows and "request budget (-n)" not in rows
    assert rows["iterations (-n)"] == ["50"] and rows["users"] == ["4"]
    doc["meta"] |= {"scenario": None, "py": {"target": "w.py:run", "params": {}}}
    rows = _rows(page_data(doc), "config")
    assert "method" not in rows and rows["iterations (-n)"] == ["50"]
    doc = _doc()
    doc["meta"]["requests"] = 50
    rows = _rows(page_data(doc), "config")
    assert rows["request budget (-n)"] == ["50"] and rows["method"] == ["GET"]


def test_llm_figures_have_their_table_and_rows() -> None:
    doc = _doc()
    doc["summary"]["llm"] = {
        "output_tokens": 5000,
        "output_tokens_per_s": 1666.67,
        "input_tokens": 100,
        "token_source": "usage",
        "goodput_rps": 3.5,
        "bad_chunks": 0,
        "ttft_ms": dict(LAT, p50=120.0),
        "tpot_ms": dict.fromkeys(LAT, None),
        "streamed": 12,
        "input_tokens_per_s": 33.333,
        "answers_estimated": 2,
        "bad_usage": 1,
        "retry_after": {"count": 3, "max_s": 12.5},
        "retry_after_clamped": 4,
    }
    data = page_data(doc)
    rows = _rows(data, "llm")
    assert rows["input tokens/s"] == ["33.33"]
    assert rows["answers with estimated tokens"] == ["2"]
    assert rows["usage fields that were not numbers"] == ["1"]
    assert rows["Retry-After clamped to 1 h"] == ["4"]
    assert rows["429s with Retry-After (max s)"] == ["3 (12.5)"]
    assert not [k for k in rows if "_" in k]  # no raw field name
    doc["summary"]["llm"]["retry_after"] = {"count": 0, "max_s": 0.0}
    assert _rows(page_data(doc), "llm")["429s with Retry-After (max s)"] == ["0"]
    assert rows["output tokens"] == ["5,000"] and rows["goodput (req/s)"] == ["3.50"]
    assert rows["tokens counted from"] == ["usage"] and rows["streamed"] == ["12"]
    times = _rows(data, "times")
    assert times["ttft"][2] == "120.00 ms" and times["tpot"] == ["—"] * 8
    assert ["TTFT p50", "120.00 ms", ""] in data["cards"]


def test_an_empty_second_is_a_gap_not_zero() -> None:
    got = with_gaps(_doc()["timeseries"])
    assert [e["p50"] for e in got] == [None, 2.0, None, 9.0]  # old 0 with no requests; null stays null
    assert got[2]["worker_rss_mb"] == {"0": None}  # a worker sampled after it exited
    only_errors = with_gaps([{"t": 1.0, "requests": 5, "ok": 0, "p50": 0.0, "p99": 0.0}])
    assert only_errors[0]["p50"] is None  # an older result: nothing ok, an empty histogram's 0
    cols = page_data(_doc())["series"]
    assert cols["t"] == [1.0, 2.0, 3.0]  # the partial last second is not charted
    assert cols["p50"] == [None, 2.0, None] and cols["p99"] == [None, 4.0, None]
    assert cols["ok_rps"] == [0.0, 1180.0, 610.0]  # ok per second of the entry's span
    assert cols["error_kinds"] == {"http_5xx": [0, 10, 20], "timeout": [0, 0, 4]}
    assert cols["worker_cpu"] == {"0": [5.0, 50.0, 40.0]}
    assert "target_rps" not in cols and "ttft_p50" not in cols  # no column without a value


def test_a_group_of_empty_seconds_stays_a_gap() -> None:
    series = [
        {"t": float(i), "requests": 0 if i < 4 else 5, "ok": 5, "p50": 0.0 if i < 4 else 1.0}
        for i in range(8)
    ]
    points, per_point = chart_series(with_gaps(series), limit=2)
    assert per_point == 4 and [p["p50"] for p in points] == [None, 1.0]
    assert columns(points)["p50"] == [None, 1.0]


def test_the_page_inlines_plotly_once_and_the_data_once() -> None:
    page = render(_doc())
    assert page.count("plotly.js (basic - minified)") == 1
    assert len(plotly_js()) < 1_300_000
    assert len(page) < len(plotly_js()) + 60_000
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count('id="squall-data"') == 1


def _hunt() -> dict[str, Any]:
    step = {
        "p50_ms": 2.0,
        "p99_ms": 9.0,
        "requests": 500,
        "errors": 0,
        "error_rate": 0.0,
        "generator_cpu_pct": 30,
    }
    steps = [
        dict(step, level=4.0, rps=400.0, ok=True, limited=False, failed_slo=[]),
        dict(step, level=1.0, rps=100.0, ok=True, limited=False, failed_slo=[]),
        dict(
            step,
            level=8.0,
            rps=410.0,
            ok=False,
            limited=False,
            failed_slo=["p99<5ms"],
            errors=5,
            error_rate=0.01,
        ),
        dict(
            step,
            level=6.0,
            rps=405.0,
            ok=True,
            limited=False,
            failed_slo=[],
            verdict="too_few",
            samples=50,
            samples_needed=200,
        ),
    ]
    return {
        "mode": "concurrency",
        "slos": ["p99<5ms"],
        "best": 4.0,
        "best_rps": 400.0,
        "first_failing": 8.0,
        "failed_slo": ["p99<5ms"],
        "stop_reason": "slo",
        "box_limited": False,
        "knee": 4.0,
        "steps": steps,
    }


def test_the_hunt_card_and_levels() -> None:
    card = hunt_card(_hunt())
    assert card["verdict"] == "best: 4 users (400.0 req/s) meets every SLO" and card["class"] == "ok"
    assert card["lines"] == [
        "SLOs: p99<5ms",
        "first failing: 8 users (p99<5ms)",
        "knee of the throughput curve: 4 users",
        "stopped: a level failed an SLO",
    ]
    t = hunt_table(_hunt())
    assert [r[0] for r in t["rows"]] == ["1", "4", "6", "8"]  # by level, not in the order they ran
    assert t["rows"][3] == [
        "8",
        "410.0",
        "2.00 ms",
        "9.00 ms",
        "500",
        "5 (1.00 %)",
        "30 %",
        ["FAIL p99<5ms", "bad"],
    ]
    assert t["rows"][2][-1] == "too few samples (n=50, need 200): not judged"
    nothing = dict(_hunt(), best=None, best_rps=None, stop_reason="generator")
    assert hunt_card(nothing)["verdict"] == "no level met the SLOs" and hunt_card(nothing)["class"] == "bad"
    assert hunt_card(nothing)["lines"][-1].startswith("stopped: squall itself was the limit")
    assert t["head"][-2] == "squall CPU"


def test_the_console_says_why_the_hunt_stopped_in_the_htmls_words() -> None:
    from rich.console import Console

    from squall.report.tables import print_hunt

    for reason, said in (
        ("max", "stopped: it reached --max"),
        ("slo", "stopped: a level failed an SLO"),
        ("plateau", "stopped: throughput stopped rising"),
        ("interrupted", "stopped early by Ctrl-C: the levels above were not searched"),
    ):
        hunt = _hunt() | {"stop_reason": reason}
        for st in hunt["steps"]:
            st["generator_cpu_pct"] = st.get("generator_cpu_pct")
        console = Console(record=True, width=300)
        print_hunt(hunt, console)
        text = console.export_text()
        assert hunt_card(hunt)["lines"][-1] == said
        assert f"  {said}\n" in text and text.count(said) == 1
        assert "squall CPU" in text and "gen CPU" not in text
    data = page_data(_doc(hunt=_hunt()))
    assert data["verdicts"][0]["id"] == "hunt" and data["tables"][0]["id"] == "hunt_levels"
    assert data["hunt"]["level"] == [1.0, 4.0, 6.0, 8.0] and data["hunt"]["failed"] == [
        False,
        False,
        False,
        True,
    ]
    assert data["hunt"]["marks"] == [["best", 4.0], ["first failing", 8.0], ["knee", 4.0]]


def _soak(**over: Any) -> dict[str, Any]:
    soak = {
        "leak_threshold_mb_per_h": 5.0,
        "subject": "target",
        "rss_slope_mb_per_h": 12.5,
        "rss_slope_ci_mb_per_h": [8.25, 16.75],
        "leak_suspected": True,
        "fd_growth": 3,
        "generator_rss_slope_mb_per_h": -0.5,
        "generator_rss_slope_ci_mb_per_h": [-1.0, 0.0],
        "generator_rss_from_s": 60.0,
        "latency_drift": {"stretch_s": 10, "p50_first_ms": 2.0, "p50_last_ms": 3.0, "p99_first_ms": 8.0,
                          "p99_last_ms": 1200.0},
        "error_drift": {"first_pct": 0.0, "last_pct": 1.5, "change_pct": 1.5},
        "series": [{"t": float(t), "rss_mb": 100.0 + t, "fds": 20 + t // 10} for t in range(1, 31)],
    }  # fmt: skip
    soak.update(over)
    return soak


def test_the_soak_card_gives_the_leak_verdict_with_its_interval() -> None:
    card = soak_card(_soak())
    assert (card["verdict"], card["class"]) == ("LEAK SUSPECTED", "bad")
    assert card["lines"] == [
        "the target's RSS +12.50 MB/h (95 % CI +8.25 to +16.75); threshold 5 MB/h",
        "file descriptors: +3 over the run",
        "drift (first vs last 10 s): p50 2.00 ms → 3.00 ms, p99 8.00 ms → 1.20 s",
        "errors 0.00 % → 1.50 %",
        "squall's own RSS: -0.50 MB/h (95 % CI -1.00 to +0.00) from 60 s on, once settled",
    ]
    short = _soak(generator_rss_slope_mb_per_h=None, generator_rss_growth_mb=4.0, generator_rss_to_s=90.0)
    assert soak_card(short)["lines"][-1] == (
        "squall's own RSS: +4.00 MB from 60 s to 90 s, once settled "
        "(too short a stretch for a per-hour slope)"
    )
    assert soak_card(_soak(leak_suspected=False))["verdict"] == "no leak"
    unjudged = soak_card(_soak(rss_slope_mb_per_h=None, note="the target was not sampled", fd_growth=None))
    assert unjudged["verdict"] == "leak not judged"
    assert unjudged["lines"][:2] == ["the target was not sampled", "file descriptors: not sampled"]
    chart = page_data(_doc(soak=_soak()))["soak"]
    assert chart["trend"]["slope"] == 12.5 and chart["trend"]["t"] == [1.0, 30.0]
    assert len(chart["rss"]) == 30 and chart["fds"][0] == 20


def _cell(a: int, b: str, rps: float, p99: float | None, **over: Any) -> dict[str, Any]:
    summary = {
        "requests": 30,
        "ok": 29,
        "errors": 1,
        "rps": rps,
        "latency_ms": dict(LAT, p99=p99),
        "phases": {"offer": {"latency_ms": dict(LAT, p50=1.5, p99=p99)}},
    }
    return {
        "params": {"a": a, "b": b},
        "summary": summary,
        "valid": True,
        "warnings": [],
        "thresholds": [],
    } | over


def test_the_matrix_page_has_every_cell_and_a_chart_per_figure() -> None:
    doc = {
        "schema": "squall/matrix@1",
        "command": "squall py -w 1 examples.agent_sdk:workload --param a=1,2 --param b=x,y",
        "cells": [
            _cell(1, "x", 10.0, 4.0),
            _cell(1, "y", 20.0, None),
            _cell(2, "x", 30.0, 6.0, thresholds=[{"expr": "p99<5ms", "ok": False, "value": 6.0}]),
        ],
        "skipped": [{"a": 2, "b": "y"}],
    }
    data = matrix_data(doc)
    assert data["title"] == "squall py matrix — examples.agent_sdk:workload"
    t = data["tables"][0]
    assert t["head"] == ["a", "b", "iterations", "iterations/s", "ok", "errors", "p50", "p90", "p99", "max",
                         "offer p50 / p99", "verdict"]  # fmt: skip
    assert t["rows"][0] == ["1", "x", "30", "10.0", "96.67 %", "1", "2.00 ms", "3.00 ms", "4.00 ms", "1.50 s",
                            "1.50 ms / 4.00 ms", ["ok", "ok"]]  # fmt: skip
    assert t["rows"][1][8] == "—"
    assert t["rows"][2][-1] == ["FAIL p99<5ms", "bad"]
    assert data["warnings"][0] == "stopped early: 1 cell(s) not run (a=2, b=y)"
    m = data["matrix"]
    assert (m["x_name"], m["x"], m["group"]) == ("a", ["1", "1", "2"], ["b=x", "b=y", "b=x"])
    figures = {f["name"]: (f["unit"], f["values"]) for f in m["figures"]}
    assert figures["iterations/s"] == ("iterations/s", [10.0, 20.0, 30.0])
    assert figures["p99"] == ("ms", [4.0, None, 6.0])
    assert figures["offer p99"] == ("ms", [4.0, None, 6.0])
    config = {r[0]: r[1] for r in data["tables"][1]["rows"]}
    assert config["--param a"] == "1, 2" and config["--param b"] == "x, y" and config["cells run"] == "3 of 4"
    assert "squall py matrix" in render(doc)


def test_a_document_still_in_memory_names_workers_and_codes_by_number() -> None:
    doc = _doc()
    doc["summary"]["status_codes"] = {200: 1200, 503: 30}
    for e in doc["timeseries"]:
        e["worker_cpu"] = {1: 1.0, 0: 2.0}
    data = page_data(doc)
    assert data["series"]["worker_cpu"] == {"0": [2.0, 2.0, 2.0], "1": [1.0, 1.0, 1.0]}
    assert [r[0] for r in _table(data, "status_codes")["rows"]] == ["200", "503"]
    assert "squall-data" in render(doc)


def test_a_run_cut_short_says_so_first() -> None:
    doc = _doc()
    doc["meta"]["stop_reason"] = "interrupted"
    doc["summary"]["interrupted"] = 3
    assert page_data(doc)["warnings"][:2] == [
        "stopped early by Ctrl-C, after 3.2 s of the 3 s asked for; 3 in flight were not counted",
        "a warning",
    ]
    assert page_data(_doc())["warnings"] == ["a warning"]


def test_a_dashboard_stop_says_so_and_no_lt_sign_reaches_the_page_raw() -> None:
    doc = _doc()
    doc["meta"].update(stop_reason="interrupted", stopped_by="dashboard")
    assert page_data(doc)["warnings"][0].startswith("stopped early from the dashboard, after 3.2 s")
    doc["warnings"] = ["</script><script>alert(1)</script><!--"]
    page = render(doc)
    assert "alert(1)" in page and "<script>alert" not in page and "<!--" not in page.split("squall-data")[1]
    assert "\\u003c/script>\\u003cscript>alert(1)" in page
