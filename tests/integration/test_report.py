"""HTML reports: self-contained (plotly.js inlined once, nothing fetched), carrying the result's figures as
tables, drawn without a script error in headless Chromium (runs, hunts, soaks and --param matrices)."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json
from squall.targets.serve import ServerThread

ARTIFACTS = Path(__file__).resolve().parents[2] / ".pytest-artifacts"  # kept after the run, gitignored


def _embedded(page: str) -> dict:
    m = re.search(r'<script id="squall-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def _rows(data: dict[str, Any], tid: str) -> dict[str, list[Any]]:
    (t,) = [t for t in data["tables"] if t["id"] == tid]
    return {r[0]: r[1:] for r in t["rows"]}


def test_run_writes_a_self_contained_report(target: ServerThread, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    args = ["run", target.url + "/status/503", "-n", "300", "-c", "4", "-w", "1", "-q", "-o", str(out)]
    res = CliRunner().invoke(app, [*args, "--html", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count("plotly.js (basic - minified)") == 1  # the library itself is inside, once
    assert len(text) < 1_300_000  # (the full library made every report 4.8 MB)
    assert not re.search(r"<script[^>]+src=", text)  # nothing loaded from elsewhere
    data = _embedded(text)
    doc = read_json(str(out))
    assert _rows(data, "totals")["requests"] == ["300"]
    assert _rows(data, "totals")["errors"] == ["300 (100.00 %)"]
    assert _rows(data, "status_codes") == {"503": ["300", "100.00 %"]}
    assert _rows(data, "error_kinds") == {"http_5xx": ["300", "100.00 %", "100.00 %"]}
    assert _rows(data, "config")["command"] == [doc["meta"]["command"]]
    points = data["distributions"]["latency"]
    assert points[0][0] == 0 and points[-1][0] == 100
    assert [p[1] for p in points] == sorted(p[1] for p in points)  # percentiles never go down
    assert points[-1][1] == doc["summary"]["latency_ms"]["max"]


def test_report_command_turns_a_result_into_html(target: ServerThread, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "page.html"
    assert (
        CliRunner()
        .invoke(app, ["run", target.url + "/", "-n", "50", "-w", "1", "-q", "-o", str(out)])
        .exit_code
        == 0
    )
    res = subprocess.run(
        [sys.executable, "-m", "squall", "report", str(out), "--html", str(page)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _rows(_embedded(page.read_text()), "totals")["requests"] == ["50"]


def test_report_refuses_what_is_not_a_result(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    for args, needle in (
        (["report", str(bad), "--html", str(tmp_path / "o.html")], "not a squall result"),
        (["report", str(tmp_path / "missing.json"), "--html", str(tmp_path / "o.html")], "cannot be read"),
        (["report", str(bad)], "--html"),
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, res.output
        assert needle in res.output and len(res.output.strip().splitlines()) == 1


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return browser


FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]


def _draw(page: Path, shot: str = "") -> str:
    """The page's DOM once drawn in headless Chromium; fails on any script error or console message."""
    browser = _browser()
    res = subprocess.run(
        [browser, *FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    assert 'data-drawn="' in res.stdout, res.stdout[-2000:]  # the script ran to its end
    if shot:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / shot
        path.unlink(missing_ok=True)
        size = ["--hide-scrollbars", "--window-size=1300,2400"]
        subprocess.run(
            [browser, *FLAGS, *size, f"--screenshot={path}", page.as_uri()], capture_output=True, timeout=120
        )
        assert path.stat().st_size > 10_000
    return res.stdout


def _cells(dom: str, tid: str) -> list[list[str]]:
    """The text of each row's cells of the table `tid` in the drawn DOM."""
    m = re.search(rf'<table id="table-{tid}">(.*?)</table>', dom, re.S)
    assert m, f"no table {tid}"
    rows = re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)
    cells = (re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, re.S) for r in rows)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in row] for row in cells]


def _drawn(dom: str) -> int:
    m = re.search(r'data-drawn="(\d+)"', dom)
    assert m
    return int(m.group(1))


def test_report_draws_in_headless_chromium(target: ServerThread, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    # One answer every 1.2 s per connection: the first second has none, and is drawn as a gap.
    args = ["run", target.url + "/delay/1200", "-d", "3s", "-c", "2", "-w", "1", "-q", "-o", str(out)]
    args += ["--threshold", "p99<2s", "--threshold", "errors<1%"]
    assert CliRunner().invoke(app, [*args, "--html", str(page)]).exit_code == 0
    doc = read_json(str(out))
    s = doc["summary"]
    dom = _draw(page, "report.png")
    charts = re.findall(r'<div class="chart[^"]*" data-title="([^"]*)"', dom)
    assert _drawn(dom) >= 6, (
        charts,
        [(e["t"], e["requests"]) for e in doc["timeseries"]],
    )  # and the HDR plot
    assert dom.count('class="legend"') == _drawn(dom)  # every chart has its legend
    totals = dict(_cells(dom, "totals")[1:])
    assert totals["requests"] == f"{s['requests']:,}" and totals["ok"] == f"{s['ok']:,} (100.00 %)"
    assert _cells(dom, "status_codes")[1:] == [["200", f"{s['requests']:,}", "100.00 %"]]
    assert [r[:2] for r in _cells(dom, "thresholds")[1:]] == [["p99<2s", "pass"], ["errors<1%", "pass"]]
    config = dict(_cells(dom, "config")[1:])
    assert config["connections"] == "2" and config["duration"] == "3 s"
    assert doc["timeseries"][0]["requests"] == 0  # the first second had no answer ...
    data = _embedded(page.read_text())
    assert data["series"]["p50"][0] is None  # ... and the page is given a gap there, not 0 ms
    gaps = re.search(r'data-title="Latency percentiles[^"]*" data-gaps="(\d+)"', dom)
    assert gaps and int(gaps.group(1)) >= 2, dom[-3000:]  # p50 and p99 are both drawn with the gap

    failing = tmp_path / "e.html"  # every answer a 503: the errors chart, with its legend, and the tables
    args = ["run", target.url + "/status/503", "-d", "2s", "-c", "2", "-w", "1", "-q", "--html", str(failing)]
    assert CliRunner().invoke(app, args).exit_code == 0
    dom = _draw(failing, "errors.png")
    assert 'data-title="Errors by kind"' in dom and dom.count('class="legend"') == _drawn(dom)
    requests = dict(_cells(dom, "totals")[1:])["requests"]
    assert _cells(dom, "error_kinds")[1:] == [["http_5xx", requests, "100.00 %", "100.00 %"]]
    assert _cells(dom, "status_codes")[1:] == [["503", requests, "100.00 %"]]


@pytest.mark.slow
def test_hunt_soak_and_matrix_reports_draw(target: ServerThread, tmp_path: Path) -> None:
    hunt, hunt_out = tmp_path / "hunt.html", tmp_path / "hunt.json"
    args = ["hunt", target.url + "/delay/2", "--slo", "p99<2s", "--start", "1", "--max", "2", "-w", "1"]
    args += ["--step-duration", "1s", "--warmup", "0s", "-q", "--html", str(hunt), "-o", str(hunt_out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    dom = _draw(hunt, "hunt.png")
    # (2 users pass as 1 does; on a starved box 2 can look no faster than 1, and then 1 is the best)
    found = read_json(str(hunt_out))["hunt"]
    best = "2 users" if found["best"] == 2 else "1 user"
    assert found["best"] in (1, 2) and 'id="verdict-hunt"' in dom and f"best: {best}" in dom
    assert [r[0] for r in _cells(dom, "hunt_levels")[1:]] == ["1", "2"]
    assert [r[-1] for r in _cells(dom, "hunt_levels")[1:]] == ["ok", "ok"]
    assert _drawn(dom) >= 2 and dom.count('class="legend"') == _drawn(dom)

    soak, soak_out = tmp_path / "soak.html", tmp_path / "soak.json"
    args = ["soak", target.url + "/", "-d", "4s", "--warmup", "0s", "-c", "2", "-w", "1", "-q"]
    args += ["--target-pid", str(os.getpid())]  # the target server runs in this process
    res = CliRunner().invoke(app, [*args, "-o", str(soak_out), "--html", str(soak)])
    assert res.exit_code == 0, res.output
    dom = _draw(soak, "soak.png")
    card = re.search(r'id="verdict-soak">(.*?)</ul>', dom, re.S)
    assert card, dom[-3000:]
    verdict = read_json(str(soak_out))["soak"]
    slope, (lo, hi) = verdict["rss_slope_mb_per_h"], verdict["rss_slope_ci_mb_per_h"]  # judged: 3+ samples
    said = "LEAK SUSPECTED" if verdict["leak_suspected"] else "no leak"
    assert f">{said}<" in card.group(1)
    assert f"RSS {slope:+,.2f} MB/h (95 % CI {lo:+,.2f} to {hi:+,.2f})" in html.unescape(card.group(1))
    assert _drawn(dom) >= 7  # the RSS and trend chart above the time charts

    matrix, matrix_out = tmp_path / "m.html", tmp_path / "m.json"
    args = ["py", "examples.agent_sdk:workload", "-w", "1", "-n", "20", "--param", "agents=1,2"]
    res = CliRunner().invoke(
        app, [*args, "--param", "latency_ms=1", "-o", str(matrix_out), "--html", str(matrix)]
    )
    assert res.exit_code == 0, res.output
    dom = _draw(matrix, "matrix.png")
    cells = read_json(str(matrix_out))["cells"]
    rows = _cells(dom, "cells")
    assert rows[0][:3] == ["agents", "latency_ms", "iterations"]
    assert [r[:3] for r in rows[1:]] == [["1", "1", "20"], ["2", "1", "20"]]
    assert [r[3] for r in rows[1:]] == [f"{c['summary']['rps']:,.1f}" for c in cells]
    assert _drawn(dom) >= 4 and dom.count('class="legend"') == _drawn(dom)  # a chart per figure
    again = tmp_path / "again.html"  # `squall report` draws a matrix document as the run did
    res = CliRunner().invoke(app, ["report", str(matrix_out), "--html", str(again)])
    assert res.exit_code == 0, res.output
    assert again.read_text() == matrix.read_text()


def test_a_matrix_report_path_is_checked_before_the_first_cell(tmp_path: Path) -> None:
    args = ["py", "examples.agent_sdk:workload", "-w", "1", "-n", "5", "--param", "agents=1,2"]
    res = CliRunner().invoke(app, [*args, "--html", str(tmp_path / "no" / "such" / "m.html")])
    assert res.exit_code == 2, res.output
    assert "--html" in res.output and "matrix:" not in res.output  # no cell ran


def test_a_matrix_document_has_no_series_for_csv(tmp_path: Path) -> None:
    doc = tmp_path / "m.json"
    doc.write_text('{"schema": "squall/matrix@1", "command": "py m:f", "cells": []}')
    res = CliRunner().invoke(app, ["report", str(doc), "--csv", str(tmp_path / "m.csv")])
    assert res.exit_code == 2, res.output
    assert "is a --param matrix" in res.output and not (tmp_path / "m.csv").exists()


def test_a_conversation_report_draws_ttft_by_turn(tmp_path: Path) -> None:
    from squall.targets.mock_llm import MockThread

    page = tmp_path / "c.html"
    with MockThread(ttft_s=0.02, itl_s=0.002, tokens=4, reasoning_tokens=3) as mock:
        url = f"http://127.0.0.1:{mock.port}/v1/chat/completions"
        args = ["llm", url, "--turns", "3", "-n", "6", "-c", "2", "-w", "1", "-q", "--html", str(page)]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    dom = _draw(page)
    charts = re.findall(r'<div class="chart[^"]*" data-title="([^"]*)"', dom)
    assert "TTFT by turn" in charts, charts
    assert dom.count('class="legend"') == _drawn(dom)
    assert [r[:2] for r in _cells(dom, "by_turn")[1:]] == [["1", "2"], ["2", "2"], ["3", "2"]]
    data = _embedded(page.read_text())
    assert data["by_turn"]["turn"] == ["1", "2", "3"] and "ttfat" in data["distributions"]
