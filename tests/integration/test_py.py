"""`squall py`: an SDK driven in-process, with phases, counters, exceptions by type, a matrix, tracemalloc."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _from_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # MODULE is found from where squall runs, as with python -m


def test_the_example_sdk_under_load(tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "py.json"
    args = ["py", "examples.agent_sdk:workload", "-c", "6", "-w", "1", "-n", "120", "-q", "-o", str(out)]
    args += ["--param", "latency_ms=2", "--param", "timeouts=0.05", "--param", "empty=0.05"]
    res = CliRunner().invoke(app, [*args, "--param", "malformed=0.05"])
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    check_result(doc)
    s = doc["summary"]
    assert s["requests"] == 120
    assert s["ok"] + s["errors"] == 120 and s["errors"] > 0
    # The mock model's own TimeoutError keeps its name: "timeout" is only squall's --timeout expiring.
    assert set(s["error_kinds"]) <= {"TimeoutError", "EmptyReply", "MalformedReply"} and s["error_kinds"]
    assert set(doc["error_samples"]) == set(s["error_kinds"])
    assert "Traceback" in doc["error_samples"][next(iter(doc["error_samples"]))]
    phases = s["phases"]
    assert set(phases) == {"formulation", "offer", "agreement"}
    assert phases["formulation"]["latency_ms"]["p50"] >= 2  # the mock model's latency
    assert phases["formulation"]["requests"] >= phases["agreement"]["requests"]
    assert s["counters"]["llm_calls"] >= 120 and s["counters"]["agreements"] == s["ok"]
    # A phase whose block raised counts the error, not its time (the example's formulation step can raise).
    raised = sum(ph["errors"] for ph in phases.values())
    assert raised == s["errors"], (phases, s["error_kinds"])
    timed = {name: ph["ok"] for name, ph in phases.items()}
    assert timed == {name: ph["requests"] - ph["errors"] for name, ph in phases.items()}
    assert (doc["meta"]["url"], doc["meta"]["method"]) == ("py:examples.agent_sdk:workload", "CALL")
    assert doc["meta"]["py"] == {
        "target": "examples.agent_sdk:workload",
        "params": {"latency_ms": 2, "timeouts": 0.05, "empty": 0.05, "malformed": 0.05},
    }


def test_a_parameter_matrix_is_one_table(tmp_path: Path) -> None:
    out = tmp_path / "matrix.json"
    args = ["py", "examples.agent_sdk:workload", "-w", "1", "-n", "30", "--param", "agents=2,8"]
    res = CliRunner().invoke(
        app, [*args, "--param", "concurrency=1,4", "--param", "latency_ms=1", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    assert doc["schema"] == "squall/matrix@1"
    assert [c["params"] for c in doc["cells"]] == [
        {"agents": a, "concurrency": c, "latency_ms": 1} for a in (2, 8) for c in (1, 4)
    ]
    assert all(c["summary"]["requests"] == 30 for c in doc["cells"])
    assert "squall py matrix" in res.output


def test_tracemalloc_reports_growth(tmp_path: Path) -> None:
    mod = tmp_path / "leaky_sdk.py"
    mod.write_text(
        "import asyncio\nKEEP = []\n\nasync def iteration(user):\n    KEEP.append(bytearray(10_000))\n"
        "    await asyncio.sleep(0.001)\n\ndef workload():\n    return iteration\n"
    )
    out = tmp_path / "t.json"
    os.chdir(tmp_path)
    res = CliRunner().invoke(
        app,
        ["py", "leaky_sdk:workload", "-c", "4", "-w", "1", "-d", "5s", "--tracemalloc", "-q", "-o", str(out)],
    )
    assert res.exit_code == 0, res.output
    top = read_json(str(out))["tracemalloc"]["0"]["top_growth"][0]
    # Each iteration keeps a 10,000-byte bytearray (two blocks: the object and its buffer): the top site is
    # that line, grown by about 5,000 bytes a block.
    assert "leaky_sdk.py" in top["site"] and top["count_diff"] >= 20
    assert top["size_diff_kb"] * 1024 >= 4_500 * top["count_diff"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["py", "nope"], "MODULE:FACTORY"),
        (["py", "no_such_module_xyz:f"], "cannot import"),
        (["py", "examples.agent_sdk:nothing"], "no callable"),
        (["py", "examples.agent_sdk:workload", "--param", "x"], "name=v1"),
        (["py", "examples.agent_sdk:workload", "--param", "concurrency=0"], "concurrency"),
        (
            ["py", "examples.agent_sdk:workload", "--param", "agentz=5,6"],
            "--param agentz: examples.agent_sdk",
        ),
        (
            ["py", "examples.agent_sdk:workload", "--param", "agents=1,2", "--csv", "x.csv"],
            "a --param matrix",
        ),
        (["py", "examples.agent_sdk:workload", "--threshold", "phase.offer"], "METRIC<VALUE"),
        (["run", "http://127.0.0.1:1/", "--threshold", "phase.offer.p99<1s"], "for squall py runs"),
        (["soak", "--py", "examples.agent_sdk:workload", "--param", "agents=1,2"], "one value per name"),
        (["hunt", "http://127.0.0.1:1/", "--slo", "p99<1s", "--tracemalloc"], "for a Python workload"),
    ],
)
def test_bad_py_input(args: list[str], needle: str) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and needle in res.output, res.output


def test_hunt_and_soak_take_a_python_workload(tmp_path: Path) -> None:
    # (a p50: 20 answers judge it; a p99 needs 1,000, more than a 1-s level of this workload makes)
    args = ["hunt", "--py", "examples.agent_sdk:workload", "--slo", "p50<2s", "--start", "1", "--max", "2"]
    res = CliRunner().invoke(app, [*args, "--step-duration", "1s", "--warmup", "200ms", "-w", "1"])
    assert res.exit_code == 0, res.output
    assert "best: 2 users" in res.output
    out = tmp_path / "soak.json"
    args = ["soak", "--py", "examples.agent_sdk:workload", "-d", "4s", "--warmup", "0s", "-c", "2", "-w", "1"]
    res = CliRunner().invoke(app, [*args, "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    assert doc["meta"]["py"]["target"] == "examples.agent_sdk:workload" and "phases" in doc["summary"]
    # No target process: the verdict is on the workers' RSS, where the in-process workload's memory lives.
    assert doc["soak"]["subject"] == "workers" and isinstance(doc["soak"]["leak_suspected"], bool)
    assert doc["meta"]["transport"] == "py"


ODD = """\
import asyncio, sys
import squall

class Workload:
    def __init__(self, slow_s):
        self.slow_s, self.setups = slow_s, 0

    def setup(self):
        self.setups += 1

    async def __call__(self, user):
        kind = user.iteration % 5
        squall.count("calls")
        with squall.timer("step"):
            if kind == 1:
                raise asyncio.CancelledError()  # raised by the workload, not a cancellation by squall
            if kind == 2:
                sys.exit(3)
            if kind == 3:
                raise TimeoutError("the SDK's own timeout")
            if kind == 4:
                await asyncio.sleep(self.slow_s)  # squall's --timeout ends it
        assert self.setups == 1

def workload(slow_s=1.0):
    return Workload(slow_s)
"""


def test_whatever_the_workload_raises_is_counted_by_type(tmp_path: Path) -> None:
    (tmp_path / "odd_sdk.py").write_text(ODD)
    os.chdir(tmp_path)
    out = tmp_path / "odd.json"
    args = ["py", "odd_sdk:workload", "-c", "1", "-w", "1", "-n", "50", "--timeout", "100ms", "-q"]
    res = CliRunner().invoke(app, [*args, "--threshold", "phase.step.p50<1h", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    s = doc["summary"]
    # One user, iterations 1..50, five kinds in turn: ten of each, exactly.
    assert s["error_kinds"] == {"CancelledError": 10, "SystemExit": 10, "TimeoutError": 10, "timeout": 10}
    assert (s["requests"], s["ok"], s["interrupted"]) == (50, 10, 0)
    step = s["phases"]["step"]
    assert step["error_kinds"] == {"CancelledError": 10, "SystemExit": 10, "TimeoutError": 10}
    assert step["requests"] == 40  # a block cut by --timeout never ends, so it is not timed
    assert s["counters"] == {"calls": 50}
    assert doc["thresholds"] == [
        {"expr": "phase.step.p50<1h", "ok": True, "value": step["latency_ms"]["p50"]}
    ]


def test_warmup_iterations_leave_phases_and_counters_out(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    args = ["py", "examples.agent_sdk:workload", "-c", "4", "-w", "1", "-d", "1s", "--warmup", "1s", "-q"]
    res = CliRunner().invoke(app, [*args, "--param", "latency_ms=1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    s = read_json(str(out))["summary"]
    assert s["warmup_requests"] > 0
    assert s["counters"]["agreements"] == s["ok"]  # warmup agreements would make it larger
    assert s["phases"]["agreement"]["requests"] <= s["requests"]


OWN = """\
import asyncio
import squall

async def words():
    for w in ("a", "b", "c", "d"):
        with squall.timer("word"):
            yield w

async def iteration(user):
    try:
        async with asyncio.timeout(0.005):  # the workload's own timeout, around a timed call
            with squall.timer("llm"):
                await asyncio.sleep(1)
    except TimeoutError:
        pass
    stream = words()
    async for w in stream:
        if w == "b":
            break  # leaves the generator early: its open phase ends without an error
    await stream.aclose()

def workload():
    return iteration
"""


def test_the_workloads_own_cancellations_are_counted(tmp_path: Path) -> None:
    (tmp_path / "own_sdk.py").write_text(OWN)
    os.chdir(tmp_path)
    out = tmp_path / "own.json"
    args = ["py", "own_sdk:workload", "-c", "1", "-w", "1", "-n", "5", "-q", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    s = read_json(str(out))["summary"]
    assert (s["requests"], s["ok"]) == (5, 5)
    llm, word = s["phases"]["llm"], s["phases"]["word"]
    assert (llm["requests"], llm["error_kinds"]) == (5, {"CancelledError": 5})  # cut by its own timeout
    assert llm["latency_ms"]["p50"] is None  # a block that raised: an error with no time, as a failed request
    assert (word["requests"], word["errors"]) == (10, 0)  # "a" done, "b" left early: both timed, no error
