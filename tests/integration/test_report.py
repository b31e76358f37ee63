"""HTML reports: self-contained (plotly.js inlined, nothing fetched), carrying the result's data."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_run_writes_a_self_contained_report(target: ServerThread, tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    args = [
        "run",
        target.url + "/",
        "-n",
        "300",
        "-c",
        "4",
        "-w",
        "1",
        "-q",
        "-o",
        str(out),
        "--html",
        str(page),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert "Plotly" in text and len(text) > 1_000_000  # the library itself is inside
    assert not re.search(r"<script[^>]+src=", text)  # nothing loaded from elsewhere
    data = _embedded(text)
    assert data["summary"]["requests"] == 300
    points = data["distributions"]["latency"]
    assert points[0][0] == 0 and points[-1][0] == 100
    assert [p[1] for p in points] == sorted(p[1] for p in points)  # percentiles never go down
    doc = read_json(str(out))
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
    assert _embedded(page.read_text())["summary"]["requests"] == 50


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


def test_report_draws_in_headless_chromium(target: ServerThread, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    args = ["run", target.url + "/delay/5", "-d", "3s", "-c", "4", "-w", "1", "-q", "-o", str(out)]
    assert CliRunner().invoke(app, [*args, "--html", str(page)]).exit_code == 0
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    res = subprocess.run(
        [browser, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    drawn = re.search(r'data-drawn="(\d+)"', res.stdout)
    assert drawn and int(drawn.group(1)) >= 6, res.stdout[-2000:]  # time charts and the HDR plot
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    size = ["--hide-scrollbars", "--window-size=1300,2400"]
    subprocess.run(
        [browser, *flags, *size, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 10_000
