"""--dashboard's endpoints, used directly: status, series and events while a run goes on, a change of users,
refusals with their reasons, the stop (exit 130, every file written), the token, a port in use, a hunt."""

import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.engine import run
from squall.plan import build
from squall.plan.plan import Dashboard, Plan
from squall.plan.specs import RequestSpec
from squall.report.json import read_json
from squall.targets.serve import ServerThread

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, body: Any = None, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """(status, JSON answer) of one request; the answer is text when it is not JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    if method == "POST":  # (as the page sends them)
        headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode()


def _until(read: Any, ok: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = read()
        if ok(got):
            return got
        time.sleep(0.1)
    raise AssertionError(f"never: {got}")


def _events(url: str, n: int) -> list[tuple[float, dict[str, Any]]]:
    """The first `n` events of the stream, with the time each came."""
    got = []
    with urllib.request.urlopen(url + "api/events", timeout=5) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.readline() == b"retry: 500\n"
        while len(got) < n:
            line = r.readline()
            if line.startswith(b"data: "):
                got.append((time.monotonic(), json.loads(line[6:])))
    return got


def test_endpoints_while_a_run_goes_on(target: ServerThread, tmp_path: Path) -> None:
    out, port = tmp_path / "r.json", _free_port()
    args = ["run", target.url + "/delay/5", "-c", "2", "-d", "30s", "-w", "1", "-q", "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "squall", *args, "--dashboard", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        assert proc.stderr.readline().strip() == f"dashboard: {url}"  # type: ignore[union-attr]
        status = _until(lambda: _call(url + "api/status")[1], lambda s: s.get("seconds", 0) >= 1)
        assert status["phase"] == "running" and status["model"] == "closed" and status["users"] == 2
        assert status["totals"]["requests"] >= status["last"]["requests"] > 0
        assert status["totals"]["errors"] == 0 and status["changes"] == []
        code, page = _call(url)
        assert code == 200 and page.count("plotly.js (basic - minified)") == 1 and 'id="squall-data"' in page

        events = _events(url, 4)  # (the first at once: the latest status)
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(events[1:])]
        assert all(0.6 < g < 1.4 for g in gaps), gaps  # then one a second
        seconds = [e["seconds"] for _, e in events]
        assert seconds == sorted(seconds) and seconds[-1] > seconds[0]
        series = _call(url + "api/series")[1]
        assert len(series) >= seconds[-1] and [e["t"] for e in series[:2]] == [1.0, 2.0]
        assert _call(url + "api/series?from=1")[1][0]["t"] == 2.0

        code, answer = _call(url + "api/load", {"users": 3}, "POST")
        assert code == 202 and answer["change"]["users"] == 3 and answer["change"]["by"] == "dashboard"
        assert [c["users"] for c in _call(url + "api/status")[1]["changes"]] == [3]
        for body, needle in (
            ({"rate": 50}, "closed-model"),
            ({"users": -1}, "whole number"),
            ({"users": 2.5}, "whole number"),
            ({"users": 1, "rate": 1}, "give one of"),
            ({"workers": 3}, "unknown field"),
            ([3], "JSON object"),
            (b"{users", "not JSON"),
        ):
            code, answer = _call(url + "api/load", body, "POST")
            assert (code, needle in answer["error"]) == (400, True), (body, answer)
            assert "\n" not in answer["error"]
        assert _call(url + "api/nothing")[0] == 404
        assert _call(url + "api/load")[0] == 405 and _call(url + "api/status", {}, "POST")[0] == 405
        page_data = _until(lambda: _call(url + "api/page")[1], lambda d: not d.get("pending"))
        assert page_data["series"]["t"][0] == 1.0 and page_data["tables"]

        code, answer = _call(url + "api/stop", None, "POST")
        assert code == 202 and answer == {"stopping": True, "reason": "interrupted"}
        assert proc.wait(20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "interrupted"
    (change,) = doc["meta"]["changes"]
    assert (change["users"], change["by"]) == (3, "dashboard")


def test_the_series_follow_a_change_of_users(target: ServerThread, tmp_path: Path) -> None:
    plan = _plan(target.url + "/delay/5", "4s", port=_free_port())
    url = f"http://127.0.0.1:{plan.outputs.dashboard.port}/"  # type: ignore[union-attr]
    answers: list[Any] = []

    def steer() -> None:
        _until(lambda: _call(url + "api/status")[1] if _up(url) else {}, lambda s: s.get("seconds", 0) >= 1)
        answers.append(_call(url + "api/load", {"users": 4}, "POST"))

    side = threading.Thread(target=steer, daemon=True)
    side.start()
    res = run(plan)
    side.join(5)
    (code, answer) = answers[0]
    assert code == 202, answer
    t = answer["change"]["t"]
    after = [e for e in res.doc["timeseries"] if e["t"] >= t + 1.5 and not e.get("partial")]
    assert after and all(e["users"] == 4 and e["target_users"] == 4 for e in after), res.doc["timeseries"]
    assert res.doc["meta"]["changes"] == [answer["change"]]
    s = res.doc["summary"]
    assert s["requests"] == s["ok"] == sum(e["requests"] for e in res.doc["timeseries"])


def _up(url: str, query: str = "") -> bool:
    try:
        return _call(url + "api/status" + query)[0] == 200
    except OSError:
        return False


def _plan(url: str, duration: str, port: int, token: str = "") -> Plan:
    flags = build.LoadFlags(workers=1, duration=duration, quiet=True)
    plan = build.build(RequestSpec(url=url), flags, connections=2)
    return replace(plan, outputs=replace(plan.outputs, dashboard=Dashboard("127.0.0.1", port, token)))


def test_a_token_is_asked_of_every_request(target: ServerThread) -> None:
    plan = _plan(target.url + "/delay/5", "20s", port=_free_port(), token="s3cret-token")
    url = f"http://127.0.0.1:{plan.outputs.dashboard.port}/"  # type: ignore[union-attr]
    seen: dict[str, int] = {}

    def probe() -> None:
        _until(lambda: _up(url, "?token=s3cret-token"), bool)
        for name, path, headers in (
            ("none", "api/status", {}),
            ("wrong", "api/status?token=guess", {}),
            ("wrong bearer", "api/status", {"Authorization": "Bearer guess"}),
            ("page without", "", {}),
            ("bearer", "api/status", {"Authorization": "Bearer s3cret-token"}),
            ("query", "api/series?token=s3cret-token", {}),
            ("page", "?token=s3cret-token", {}),
        ):
            seen[name] = _call(url + path, headers=headers)[0]
        seen["stop without"] = _call(url + "api/stop", None, "POST")[0]
        seen["stop"] = _call(url + "api/stop?token=s3cret-token", None, "POST")[0]

    side = threading.Thread(target=probe, daemon=True)
    side.start()
    res = run(plan)
    side.join(5)
    assert seen == {
        "none": 403, "wrong": 403, "wrong bearer": 403, "page without": 403,
        "bearer": 200, "query": 200, "page": 200, "stop without": 403, "stop": 202,
    }  # fmt: skip
    assert res.doc["meta"]["stop_reason"] == "interrupted" and res.exit_code() == 130


def test_a_port_in_use_is_a_warning_and_the_run_goes_on(target: ServerThread) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        plan = _plan(target.url + "/", "1s", port=held.getsockname()[1])
        res = run(plan)
    assert res.exit_code() == 0 and res.summary["requests"] > 0
    (warning,) = [w for w in res.doc["warnings"] if "--dashboard" in w]
    assert "cannot listen" in warning and "went on" in warning


@pytest.mark.slow
def test_a_hunt_shows_its_levels_and_sets_its_own_load(target: ServerThread, tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    args = ["hunt", target.url + "/delay/2", "--slo", "p99<2s", "--start", "1", "--max", "2", "-w", "1", "-q"]
    args += ["--step-duration", "2s", "--warmup", "0s", "--dashboard", str(port)]
    statuses: list[dict[str, Any]] = []
    refused: list[Any] = []
    done = threading.Event()

    def watch() -> None:
        end = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < end:
            try:  # (between levels, one server closes while another starts: a call can meet either)
                code, status = _call(url + "api/status")
                if code == 200:
                    statuses.append(status)
                    if not refused and status.get("phase") == "running":
                        refused.append(_call(url + "api/load", {"users": 5}, "POST"))
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)

    side = threading.Thread(target=watch, daemon=True)
    side.start()
    res = CliRunner().invoke(app, args)
    done.set()
    side.join(5)
    assert res.exit_code == 0, res.output
    hunts = [s["hunt"] for s in statuses if "hunt" in s]
    assert {h["level"] for h in hunts} == {1, 2}
    second = [h for h in hunts if h["level"] == 2]
    assert second and [lv["level"] for lv in second[-1]["levels"]] == [1]  # the first level, finished
    (code, answer), *_ = refused
    assert code == 409 and "hunt sets its own load" in answer["error"]


@pytest.mark.parametrize("command", ["run", "llm", "scenario", "py", "hunt", "soak"])
def test_every_load_command_takes_dashboard(command: str) -> None:
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--dashboard" in res.output


def _raw(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    """(status, JSON answer) of one request with exactly these headers (Host and Origin too)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_the_server_refuses_other_pages_bad_queries_and_bodies(capfd: pytest.CaptureFixture[str]) -> None:
    from squall.collector.dashboard_server import Board, DashboardServer
    from squall.units import PlanError

    board = Board()
    board.series = tuple({"t": float(t)} for t in range(3))

    def check(body: dict[str, Any]) -> dict[str, Any]:
        if isinstance(body.get("users"), bool):
            raise PlanError("users must be a whole number")
        return body

    server = DashboardServer("127.0.0.1", 0, "", board, lambda: b"<html></html>", check)
    p = server.port
    own = {"Host": f"127.0.0.1:{p}"}
    js = {**own, "Content-Type": "application/json"}
    try:
        assert _raw(p, "GET", "/api/series?from=1", own) == (200, [{"t": 1.0}, {"t": 2.0}])
        for bad in ("%C2%B2", "9" * 400, "-1", "1e3"):  # (a superscript two is a digit to str.isdigit)
            code, answer = _raw(p, "GET", f"/api/series?from={bad}", own)
            assert code == 400 and "give the index" in answer["error"], bad
        assert _raw(p, "GET", "/api/status", {"Host": f"localhost:{p}"})[0] == 200
        code, answer = _raw(p, "GET", "/api/status", {"Host": f"evil.example:{p}"})
        assert code == 403 and "Host" in answer["error"]
        origin = {**js, "Origin": "http://evil.example"}
        code, answer = _raw(p, "POST", "/api/stop", origin, b"{}")
        assert code == 403 and "Origin" in answer["error"]
        assert _raw(p, "POST", "/api/stop", {**own, "Content-Type": "text/plain"}, b"{}")[0] == 415
        assert (
            _raw(p, "POST", "/api/load", {**own, "Content-Type": "application/x-www-form-urlencoded"})[0]
            == 415
        )
        code, answer = _raw(p, "POST", "/api/load", {**js, "Origin": f"http://127.0.0.1:{p}"}, b"{users: 3")
        assert (code, answer["error"]) == (400, 'the body is not JSON: send {"users": N} or {"rate": R}')
        code, answer = _raw(p, "POST", "/api/load", js, b'{"users": true}')
        assert code == 400 and answer["error"] == "users must be a whole number"
    finally:
        board.close()
        server.close()
    assert "Traceback" not in capfd.readouterr().err
