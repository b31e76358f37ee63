"""--prometheus-port: a live /metrics endpoint from the collector while the run goes on."""

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from squall.report.json import read_json
from squall.studies.hunt import exit_code
from squall.targets.serve import ServerThread


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return r.read().decode()
    except OSError:
        return None


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_metrics_grow_while_the_run_goes_on(target: ServerThread) -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "squall", "run", target.url + "/delay/2", "-c", "4", "-w", "1", "-d", "6s"]
    proc = subprocess.Popen([*argv, "-q", "--prometheus-port", str(port)], stdout=subprocess.DEVNULL)
    seen: list[float] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None and len(seen) < 3:
            text = _scrape(port)
            if text and "squall_latency_seconds_count" in text:
                seen.append(_value(text, "squall_requests_total"))
                buckets = [
                    float(v) for v in re.findall(r'squall_latency_seconds_bucket\{le="[^"]+"\} (\S+)', text)
                ]
                assert buckets == sorted(buckets), buckets  # cumulative
                assert buckets[-1] == _value(text, "squall_latency_seconds_count")
                assert _value(text, 'squall_responses_total{code="200"}') <= seen[-1]
            time.sleep(1.0)
    finally:
        assert proc.wait(timeout=30) == 0
    assert len(seen) >= 2 and seen[-1] > seen[0] > 0, seen


def test_a_hunt_serves_metrics_at_every_level(target: ServerThread, tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "hunt.json"
    argv = [
        sys.executable,
        "-m",
        "squall",
        "hunt",
        target.url + "/delay/5",
        "--slo",
        "p99<1s",
        "--start",
        "1",
    ]
    argv += [
        "--max",
        "2",
        "--step-duration",
        "3s",
        "--warmup",
        "0s",
        "-w",
        "1",
        "--prometheus-port",
        str(port),
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and not seen:
            text = _scrape(port)
            if text and "squall_requests_total" in text:
                seen = int(_value(text, "squall_requests_total"))
            time.sleep(0.1)
    finally:
        code = proc.wait(timeout=60)
    assert seen > 0
    # A loaded box can leave the generator the limit at the first level: then, and only then, the hunt
    # exits 3 and says so; the metrics were served all the same.
    hunt = read_json(str(out))["hunt"]
    assert code == exit_code(hunt) and (code == 0 or (code == 3 and hunt["box_limited"])), (code, hunt)
