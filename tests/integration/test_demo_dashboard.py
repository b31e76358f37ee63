"""`squall demo` with the live dashboard on and the mock's /metrics scraped."""

import json
import re
import subprocess
import sys
from pathlib import Path

from squall.targets.demo import demo_plan, free_port, metrics_url


def test_the_demo_plan_has_the_dashboard_and_scrapes_the_mock(tmp_path: Path) -> None:
    port = free_port()
    url = "http://127.0.0.1:4321/v1/chat/completions"
    plan = demo_plan(url, "2s", 8, tmp_path / "d.json", True, dashboard=str(port))
    assert plan.outputs.dashboard is not None
    assert (plan.outputs.dashboard.host, plan.outputs.dashboard.port) == ("127.0.0.1", port)
    assert plan.outputs.dashboard.token == ""  # loopback: no token
    assert plan.outputs.dashboard.url() == f"http://127.0.0.1:{port}/"
    assert plan.scrape is not None and plan.scrape.urls == ("http://127.0.0.1:4321/metrics",)
    assert metrics_url(url) == "http://127.0.0.1:4321/metrics"


def test_the_demo_runs_with_its_dashboard_and_scrape(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.json"
    cmd = [sys.executable, "-m", "squall", "demo", "-d", "2s", "-c", "8", "-q", "--dashboard", str(port)]
    cmd += ["-o", str(out), "--html", str(tmp_path / "demo.html")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "its vLLM-style metrics scraped from /metrics" in res.stderr
    # The dashboard's sink prints the URL when it binds; the demo never prints it a second time.
    printed = re.findall(r"dashboard: (\S+)", res.stdout + res.stderr)
    assert printed in ([], [f"http://127.0.0.1:{port}/"]), printed
    doc = json.loads(out.read_text())
    assert doc["summary"]["requests"] >= 8
    if doc.get("target_metrics"):  # once the scraper lands: the mock's own names are in it
        assert "vllm:" in json.dumps(doc["target_metrics"])


def test_a_bad_dashboard_address_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "squall", "demo", "-d", "1s", "--dashboard", "nope"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2
    assert "--dashboard" in res.stderr and "Traceback" not in res.stderr
