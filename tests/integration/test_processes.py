"""squall's own processes misbehaving: a suspended or stuck worker, a dead collector, outputs that cannot be
written. Each run ends on time, says what happened, and exits with the documented code; no traceback."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from squall.report.json import read_json
from squall.targets.serve import ServerThread

ROOT = Path(__file__).resolve().parents[2]


def _squall(*args: str, path: Path = ROOT) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "squall", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )


def _child(pid: int, name: str, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.Process(pid).children():
            try:
                if p.name() == name:
                    return p
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no {name} process appeared")


def _sending(worker: psutil.Process, timeout: float = 30.0) -> psutil.Process:
    """`worker` once it has sent for a while: it keeps connections open (made before its Hello), and the
    run starts 50 ms after every Hello; 0.5 s more and its load is under way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.status == psutil.CONN_ESTABLISHED for c in worker.net_connections("tcp")):
            time.sleep(0.5)
            return worker
        time.sleep(0.05)
    raise AssertionError(f"worker {worker.pid} made no connection")


def _finish(proc: subprocess.Popen[str], within: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"squall did not end within {within} s") from None
    assert "Traceback" not in err, err
    return proc.returncode, err


@pytest.fixture
def target_proc() -> Iterator[ServerThread]:
    with ServerThread() as server:
        yield server


def test_a_suspended_worker_is_named_stalled_and_the_run_invalid(
    target_proc: ServerThread, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-w", "2", "-r", "400", "-d", "6s", "-o", str(out))
    worker = _sending(_child(proc.pid, "squall-worker1"))
    worker.suspend()
    time.sleep(4.0)
    worker.resume()
    code, err = _finish(proc, 30)
    assert code == 3  # an open-model run whose generator failed it
    doc = read_json(str(out))
    assert doc["valid"] is False and not doc["workers_lost"]
    (stall,) = doc["stalled"]
    assert stall["worker"] == 1 and stall["pid"] == worker.pid
    assert 3.0 <= stall["for_s"] <= 8.0 and -1.0 <= stall["at_s"] <= 4.0
    assert any("worker 1 stalled" in r for r in doc["self_check"]["reasons"])
    assert doc["self_check"]["stalled"] == [1]
    assert "worker 1 (pid" in err and "stalled" in err  # said while the run went on


def test_a_stuck_worker_is_killed_after_the_deadline_and_lost(
    target_proc: ServerThread, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    start = time.monotonic()
    proc = _squall("run", target_proc.url + "/", "-w", "2", "-c", "2", "-d", "2s", "-q", "-o", str(out))
    # (once the run has started: a worker stuck before it is waited for, as a slow start)
    worker = _sending(_child(proc.pid, "squall-worker0"))
    worker.suspend()  # never resumed: only the kill ends it
    code, _ = _finish(proc, 30)
    # The deadline (2 s), the drain (2 s) and the grace (3 s), plus start-up: not forever.
    assert time.monotonic() - start < 20
    assert code == 3
    doc = read_json(str(out))
    assert doc["valid"] is False
    assert list(doc["workers_lost"]) == ["0"] and "killed" in doc["workers_lost"]["0"]
    assert doc["summary"]["requests"] > 0  # what worker 1 sent
    assert [s["worker"] for s in doc.get("stalled", [])] in ([0], [])


def test_a_dead_collector_leaves_an_invalid_result_and_exit_3(
    target_proc: ServerThread, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-w", "2", "-c", "2", "-d", "30s", "-q", "-o", str(out))
    _sending(_child(proc.pid, "squall-worker1"))
    collector = _child(proc.pid, "squall-collect")
    time.sleep(2.0)  # (its totals go to the supervisor after each second)
    start = time.monotonic()
    collector.kill()
    code, err = _finish(proc, 20)
    assert time.monotonic() - start < 10
    assert code == 3
    doc = read_json(str(out))
    assert doc["valid"] is False and doc["meta"]["stop_reason"] == "collector lost"
    assert set(doc["workers_lost"]) == {"0", "1"}
    assert any("collector process died" in w for w in doc["warnings"])
    # What the collector had sent the supervisor (its totals, once a second) is kept.
    assert doc["summary"]["requests"] > 0 and doc["summary"]["latency_ms"]["max"] > 0
    assert "result written to" in err


def test_an_output_directory_removed_mid_run_is_an_error(target_proc: ServerThread, tmp_path: Path) -> None:
    where = tmp_path / "gone"
    where.mkdir()
    out, html = where / "r.json", where / "r.html"
    args = ["-c", "2", "-d", "2s", "-q", "-o", str(out), "--html", str(html)]
    proc = _squall("run", target_proc.url + "/", *args)
    _child(proc.pid, "squall-worker0")
    shutil.rmtree(where)
    code, err = _finish(proc, 30)
    assert code == 3
    assert "result written" not in err and "report written" not in err
    assert f"could not write -o {out}" in err and f"could not write --html {html}" in err


@pytest.mark.parametrize(
    "option, path",
    [
        ("-o", "/proc/version"),
        ("--html", "/proc/version"),
        ("--csv", "{tmp}/no/such/dir/s.csv"),
        ("-o", "{tmp}"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, option: str, path: str
) -> None:
    proc = _squall("run", "http://127.0.0.1:1/", "-n", "1", "-q", option, path.format(tmp=tmp_path))
    code, err = _finish(proc, 30)
    assert code == 2
    assert err.startswith("squall: error: ") and err.count("\n") == 1, err


BLOCKING = """
import asyncio
import time


def workload():
    blocked = []

    async def call(user):
        if user.iteration == 20 and not blocked:  # once, a few iterations in
            blocked.append(1)
            time.sleep(4)  # blocks the worker's event loop: no window can go meanwhile
        await asyncio.sleep(0.01)

    return call
"""


def test_a_py_workload_that_blocks_the_loop_is_named_stalled(tmp_path: Path) -> None:
    (tmp_path / "blocking.py").write_text(BLOCKING)
    out = tmp_path / "r.json"
    args = ["-w", "1", "-c", "1", "-d", "2s", "-q", "-o", str(out)]
    proc = _squall("py", "blocking:workload", *args, path=tmp_path)
    code, _ = _finish(proc, 30)
    doc = read_json(str(out))
    assert code == 0  # closed model: the generator's limit is a warning and valid: false, as a CPU limit is
    assert doc["valid"] is False and not doc["workers_lost"]
    (stall,) = doc["stalled"]
    assert stall["worker"] == 0 and stall["for_s"] >= 3.0


def test_a_soak_killed_before_its_first_interval_leaves_its_early_checkpoint(
    target_proc: ServerThread, tmp_path: Path
) -> None:
    out = tmp_path / "soak.json"
    args = ["-d", "60s", "--warmup", "1s", "--checkpoint", "60s", "-c", "2", "-w", "1", "-q", "-o", str(out)]
    proc = _squall("soak", target_proc.url + "/", *args)
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # everything, at once: what is on disk is all there is
    proc.communicate()
    doc = read_json(str(out))
    assert doc["checkpoint"]["final"] is False and doc["checkpoint"]["at_s"] <= 8.0
    assert doc["summary"]["requests"] > 0
