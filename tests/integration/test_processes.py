"""squall's own processes misbehaving: a suspended or stuck worker, a dead collector, outputs that cannot be
written. Each run ends on time, says what happened, and exits with the documented code; no traceback."""

import os
import re
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
    assert code == 3  # a stall leaves a gap in what was measured, in either model (a CPU limit: exit 0)
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


def _silent(why: str, tail: str) -> int:
    """N of a stuck worker's "stuck: no window for N s...; killed" (the seconds it was silent)."""
    match = re.fullmatch(r"stuck: no window for (\d+) s" + re.escape(tail), why)
    assert match is not None, why
    return int(match[1])


STUCK = """
import asyncio
import time


def workload():
    async def call(user):
        if user.id < 2:  # worker 0's users with -c 4 -w 2: its event loop blocks for good
            time.sleep(3600)
        await asyncio.sleep(0.01)

    return call
"""


def _stuck_py(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "stuck.py").write_text(STUCK)
    return _squall("py", "stuck:workload", "-c", "4", "-w", "2", *args, path=tmp_path)


def test_a_stuck_worker_in_a_run_without_a_deadline_is_killed_once_the_others_have_finished(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.json"
    start = time.monotonic()
    proc = _stuck_py(tmp_path, "-n", "200", "-q", "-o", str(out))
    code, _ = _finish(proc, 60)
    # 10 s of silence while it alone runs (worker 1's share takes ~0.5 s), plus start-up: not forever.
    assert time.monotonic() - start < 40
    assert code == 3
    doc = read_json(str(out))
    assert doc["valid"] is False and doc["meta"]["stop_reason"] == "requests"
    (why,) = doc["workers_lost"].values()
    assert list(doc["workers_lost"]) == ["0"] and _silent(why, ", the last worker running; killed") >= 10
    assert doc["summary"]["requests"] == 100 and doc["summary"]["ok"] == 100  # worker 1's share, whole
    assert [s["worker"] for s in doc["stalled"]] == [0]


def test_a_run_sigterm_stopped_says_terminated_though_a_stuck_worker_had_to_be_killed(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.json"
    proc = _stuck_py(tmp_path, "-n", "200", "-q", "-o", str(out))
    _child(proc.pid, "squall-worker1")
    time.sleep(3.0)  # worker 1 has finished its share (~0.5 s); worker 0 is blocked
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, _ = _finish(proc, 40)
    assert time.monotonic() - start < 25  # drain 2 s + grace 3 s, at most the 10 s rule: not forever
    assert code == 3  # a lost worker outranks the signal's 143
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "terminated"
    assert list(doc["workers_lost"]) == ["0"] and doc["workers_lost"]["0"].endswith("; killed")
    assert doc["summary"]["requests"] == 100


RUN_WITH_STUCK_LIMIT = """
import sys
from dataclasses import replace

from squall.engine import run
from squall.plan.plan import SelfCheck, assemble
from squall.plan.specs import PySpec, RequestSpec

plan = assemble(
    RequestSpec("http://127.0.0.1/"),
    py=PySpec("stuck:workload"),
    workers=2,
    connections=4,
    duration_s=8.0,
    quiet=True,
    out_path=sys.argv[1],
)
plan = replace(plan, self_check=SelfCheck(stuck_s=4.0))  # (60 s by default: too long for a test)
plan.validate()
sys.exit(run(plan).exit_code())
"""


def test_a_worker_silent_for_the_stuck_limit_is_killed_while_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "stuck.py").write_text(STUCK)
    (tmp_path / "limited.py").write_text(RUN_WITH_STUCK_LIMIT)
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "limited.py"), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    code, _ = _finish(proc, 60)
    assert code == 3
    doc = read_json(str(out))
    assert list(doc["workers_lost"]) == ["0"]
    assert 4 <= _silent(doc["workers_lost"]["0"], "; killed") < 8  # not the deadline's kill
    assert doc["meta"]["stop_reason"] == "duration"
    assert doc["summary"]["requests"] > 0 and doc["summary"]["errors"] == 0  # worker 1 ran its 8 s


def test_a_suspended_worker_in_a_counted_run_is_killed_once_the_others_have_finished(
    target_proc: ServerThread, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    url = target_proc.url + "/delay/40"  # one connection each: worker 1's 100 take ~4 s
    proc = _squall("run", url, "-w", "2", "-c", "2", "-n", "200", "-q", "-o", str(out))
    worker = _sending(_child(proc.pid, "squall-worker0"))
    worker.suspend()  # never resumed: only the kill ends it
    code, _ = _finish(proc, 60)
    assert code == 3
    doc = read_json(str(out))
    assert list(doc["workers_lost"]) == ["0"]
    assert _silent(doc["workers_lost"]["0"], ", the last worker running; killed") >= 10
    assert doc["meta"]["stop_reason"] == "requests"
    assert 100 <= doc["summary"]["requests"] < 200  # worker 1's share, and what worker 0 had sent
