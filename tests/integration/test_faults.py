"""Coordinated omission, a killed worker, Ctrl-C: faults are data and nothing recorded is lost."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from squall.engine import run
from squall.plan.load import Closed, Open
from squall.plan.plan import Outputs, Plan
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop
from squall.report.json import read_json
from squall.targets.serve import ServerThread


class StallServer:
    """Answers at once, except one request arriving after `stall_at` s, which it holds `stall_s` s."""

    def __init__(self, stall_at: float, stall_s: float) -> None:
        self.stall_at, self.stall_s = stall_at, stall_s
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._first: float | None = None
        self._stalled = False

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                now = time.monotonic()
                self._first = self._first or now
                if not self._stalled and now - self._first >= self.stall_at:
                    self._stalled = True
                    await asyncio.sleep(self.stall_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await asyncio.sleep(3600)

    def __enter__(self) -> "StallServer":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_open_model_shows_a_stall_in_latency_not_service() -> None:
    # One connection, 100 req/s for 3 s; the server stalls one request for 1 s at t=1 s. Requests due during
    # the stall wait for the connection: wrk2-style latency (from the intended send) must show it; service
    # time (from the actual send) must not, except for the one stalled request.
    with StallServer(stall_at=1.0, stall_s=1.0) as srv:
        plan = Plan(
            RequestSpec(f"http://127.0.0.1:{srv.port}/"),
            load=Open(rate=100.0, connections=1),
            spread=Spread(workers=1),
            stop=Stop(duration_s=3.0),
            outputs=Outputs(quiet=True),
        ).validate()
        s = run(plan).summary
    assert s["requests"] == 300
    assert s["latency_ms"]["max"] >= 950
    assert s["latency_ms"]["p90"] >= 300  # ~100 requests were due during the stall
    assert s["service_ms"]["p99"] < 100
    assert s["service_ms"]["max"] >= 950  # the stalled request itself
    assert s["schedule_lag_ms"]["p90"] >= 300


def _squall(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "squall", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _children(pid: int, name: str, want: int, timeout: float = 30.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = [p for p in psutil.Process(pid).children() if p.name().startswith(name)]
        if len(procs) >= want:
            return procs
        time.sleep(0.05)
    raise AssertionError(f"no {name} processes appeared")


@pytest.fixture
def target_proc() -> Iterator[ServerThread]:
    with ServerThread() as server:
        yield server


def test_killed_worker_is_reported_and_the_run_finishes(target_proc: ServerThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-w", "2", "-c", "4", "-d", "3s", "-q", "-o", str(out))
    workers = _children(proc.pid, "squall-worker", 2)
    time.sleep(1.2)
    victim = next(p for p in workers if p.name() == "squall-worker1")
    victim.kill()
    assert proc.wait(20) == 3
    doc = read_json(str(out))
    assert doc["valid"] is False
    assert list(doc["workers_lost"]) == ["1"]
    assert doc["summary"]["requests"] > 0
    assert any("worker 1" in w for w in doc["warnings"])


def test_ctrl_c_writes_the_partial_result(target_proc: ServerThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-w", "2", "-c", "4", "-d", "60s", "-q", "-o", str(out))
    _children(proc.pid, "squall-worker", 2)
    time.sleep(1.5)
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    code = proc.wait(15)
    assert time.monotonic() - t < 5
    assert code == 130  # the files are written, and the exit code says the run was cut short
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "interrupted"
    assert doc["summary"]["requests"] > 0
    assert doc["summary"]["requests"] == sum(e["requests"] for e in doc["timeseries"])
    assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


def test_worker_exits_when_the_supervisor_dies_before_start(target_proc: ServerThread) -> None:
    import multiprocessing as mp

    from squall.engine.supervisor import _child
    from squall.engine.worker import worker_main
    from squall.wire import Done, Hello, decode

    ctx = mp.get_context("fork")
    data_r, data_w = ctx.Pipe(duplex=False)
    ctl_parent, ctl_child = ctx.Pipe()
    plan = Plan(
        RequestSpec(target_proc.url + "/"),
        load=Closed(connections=2),
        spread=Spread(workers=1),
        outputs=Outputs(quiet=True),
    ).validate()
    # As the supervisor does: the child closes the pipe ends that are not its own.
    proc = ctx.Process(target=_child, args=(worker_main, [data_r, ctl_parent], plan, 0, data_w, ctl_child))
    proc.start()
    data_w.close()
    ctl_child.close()
    assert ctl_parent.poll(10)
    assert isinstance(decode(ctl_parent.recv_bytes()), Hello)
    ctl_parent.close()  # the supervisor is gone before Start
    proc.join(10)
    assert proc.exitcode == 0
    msgs = [decode(data_r.recv_bytes()) for _ in range(2)]
    assert isinstance(msgs[0], Hello)
    assert msgs[1] == Done(0, -1, "supervisor lost")


def test_sigterm_to_the_supervisor_writes_the_partial_result(target_proc: ServerThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    proc = _squall(
        "run", target_proc.url + "/", "-w", "2", "-c", "4", "-r", "500", "-d", "60s", "-q", "-o", str(out)
    )
    _children(proc.pid, "squall-worker", 2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 143
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "terminated"
    assert doc["summary"]["requests"] >= 250  # about 500 by then; 0 would be the partial result lost
    assert doc["summary"]["errors"] == 0


def test_ctrl_c_while_connections_are_being_opened(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A listener that never accepts: its queue fills and later SYNs go unanswered, so the connections made
    # before t0 hang. Ctrl-C then must stop the run as interrupted, at once, not start it or call it clean.
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        out = tmp_path / "r.json"
        proc = _squall(
            "run", url, "-w", "1", "-c", "200", "-d", "2s", "--timeout", "20s", "-q", "-o", str(out)
        )
        _children(proc.pid, "squall-worker", 1)
        time.sleep(1.0)
        began = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
        stopped_in = time.monotonic() - began
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "interrupted", doc["meta"]
    assert stopped_in < 10, stopped_in


@pytest.mark.parametrize("to_group", [True, False])
def test_ctrl_c_while_the_processes_start(target_proc: ServerThread, tmp_path, to_group: bool) -> None:  # type: ignore[no-untyped-def]
    # Ctrl-C in the first instants, while the supervisor forks: it must stop the run (not be swallowed by a
    # fork in progress, or kill the main process and lose the files).
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-c", "4", "-w", "2", "-d", "20s", "-o", str(out))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not psutil.Process(proc.pid).children():
        time.sleep(0.001)
    began = time.monotonic()
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGINT)
    code = proc.wait(30)
    assert time.monotonic() - began < 10
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err[-2000:]
    assert code == 130, err[-2000:]
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "interrupted"


def test_a_killed_supervisor_leaves_an_invalid_result(target_proc: ServerThread, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    proc = _squall("run", target_proc.url + "/", "-w", "1", "-c", "4", "-d", "30s", "-q", "-o", str(out))
    _children(proc.pid, "squall-worker", 1)
    time.sleep(1.5)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not out.exists():
        time.sleep(0.1)
    time.sleep(0.2)
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "supervisor lost"
    assert doc["valid"] is False and any("main squall process died" in w for w in doc["warnings"])
    assert doc["summary"]["requests"] > 0


def test_ctrl_c_stops_a_py_factory_that_never_returns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "stuck.py").write_text("import time\n\ndef hang():\n    time.sleep(1000)\n")
    out = tmp_path / "r.json"
    argv = [sys.executable, "-m", "squall", "py", "stuck:hang", "-w", "1", "-c", "1", "-n", "3", "-q"]
    proc = subprocess.Popen(
        [*argv, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=tmp_path,
    )
    _children(proc.pid, "squall-worker", 1)
    time.sleep(1.0)
    began = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(30)
    assert time.monotonic() - began < 15  # the drain (2 s) and a grace (3 s), then the worker is killed
    assert code == 3  # a worker had to be killed: the run is not valid
    doc = read_json(str(out))
    assert list(doc["workers_lost"]) == ["0"] and doc["valid"] is False, doc
