"""`squall hunt` end to end: real runs per level against a loopback target."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json
from squall.targets.serve import ServerThread


def test_hunt_finds_the_highest_passing_level(target: ServerThread, tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    # Every answer takes 100 ms, so N users make about 10 N req/s: 'rps<25' holds for 1 and 2 users, breaks
    # at 4 (about 40/s), and the bisection tries 3 (about 30/s: to pass, each request would need 20 ms more).
    out = tmp_path / "hunt.json"
    args = ["hunt", target.url + "/delay/100", "--slo", "rps<25", "--start", "1", "--step-duration", "1s"]
    args += ["--warmup", "300ms", "-w", "1", "-o", str(out), "--csv", str(tmp_path / "h.csv")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    check_result(read_json(str(out)))
    hunt = read_json(str(out))["hunt"]
    assert [s["level"] for s in hunt["steps"]] == [1, 2, 4, 3]
    assert (hunt["best"], hunt["first_failing"], hunt["failed_slo"]) == (2, 3, ["rps<25"])
    assert all(s["errors"] == 0 for s in hunt["steps"])
    assert "best: 2 users" in res.output
    # The CSV has every level, in level order, and the verdict with the summary.
    steps = list(csv.DictReader((tmp_path / "h.hunt.csv").open()))
    assert [float(s["level"]) for s in steps] == [1, 2, 3, 4]
    summary = dict(csv.reader((tmp_path / "h.summary.csv").open()))
    assert (float(summary["hunt.best"]), float(summary["hunt.first_failing"])) == (2, 3)


def test_hunt_needs_an_slo() -> None:
    res = CliRunner().invoke(app, ["hunt", "http://127.0.0.1:1/"])
    assert res.exit_code == 2 and "--slo" in res.output


def test_hunt_over_llm_streams_and_scenarios(target: ServerThread, tmp_path: Path) -> None:
    from squall.targets.mock_llm import MockThread

    common = ["--start", "1", "--max", "2", "--step-duration", "1s", "--warmup", "200ms", "-w", "1"]
    with MockThread(ttft_s=0.01, itl_s=0.002, tokens=5) as mock:
        out = tmp_path / "llm.json"
        args = [
            "hunt",
            mock.url + "/v1/chat/completions",
            "--llm",
            "--slo",
            "ttft_p50<1s",  # a median needs 20 answers a level; a p99 would need 1,000
            *common,
            "-o",
            str(out),
        ]
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    assert (doc["hunt"]["best"], doc["hunt"]["stop_reason"]) == (2, "max")
    assert doc["summary"]["llm"]["output_tokens"] > 0
    scenario = tmp_path / "s.yaml"
    steps = "[{name: ping, request: {path: /delay/20}}]"  # latency-bound: 2 users do twice what 1 does
    scenario.write_text(f"base_url: {target.url}\nscenarios:\n  - name: a\n    steps: {steps}\n")
    res = CliRunner().invoke(app, ["hunt", "--scenario", str(scenario), "--slo", "step.ping.p50<1s", *common])
    assert res.exit_code == 0, res.output
    assert "best: 2 users" in res.output


def test_hunt_levels_it_cannot_run_are_usage_errors() -> None:
    for extra in (["--mode", "rate", "--start", "0.0001"], ["--max", "2000000"], ["--slo", "ttft_p95<1s"]):
        res = CliRunner().invoke(app, ["hunt", "http://127.0.0.1:1/", "--slo", "p99<1s", *extra])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output


def test_an_interrupted_hunt_keeps_the_levels_it_ran(target: ServerThread, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "h.json"
    argv = [sys.executable, "-m", "squall", "hunt", target.url + "/delay/5", "--slo", "p50<1s"]
    argv += ["--start", "1", "--max", "64", "--step-duration", "1s", "--warmup", "0s", "-w", "1"]
    proc = subprocess.Popen(
        [*argv, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not out.exists():  # written once the first level has run
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 130
    doc = read_json(str(out))
    hunt = doc["hunt"]
    assert hunt["stop_reason"] == "interrupted"
    assert hunt["steps"][0]["level"] == 1 and hunt["steps"][0]["ok"]
    assert hunt["best"] is not None and hunt["best"] < 64
    assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]


def test_a_hunt_whose_output_directory_goes_away_says_so(target: ServerThread, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys
    import time

    where = tmp_path / "gone"
    where.mkdir()
    out = where / "h.json"
    argv = [sys.executable, "-m", "squall", "hunt", target.url + "/delay/5", "--slo", "p50<1s"]
    argv += [
        "--start",
        "1",
        "--max",
        "4",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "-w",
        "1",
        "-o",
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not out.exists():  # written once the first level has run
        time.sleep(0.05)
    shutil.rmtree(where)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, err
    assert b"could not write -o" in err and b"result written" not in err and b"Traceback" not in err


def test_hunt_takes_threshold_as_the_other_commands_spell_slo(target: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    args = ["hunt", target.url + "/", "--threshold", "p99<1s", "--start", "1", "--max", "1"]
    res = CliRunner().invoke(
        app, [*args, "--step-duration", "1s", "--warmup", "0s", "-w", "1", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert read_json(str(out))["hunt"]["best"] == 1


def test_a_hunt_whose_levels_get_no_answer_says_so(closed_port: int, tmp_path: Path) -> None:
    out = tmp_path / "h.json"
    args = ["hunt", f"http://127.0.0.1:{closed_port}/", "--threshold", "p99<300ms", "--start", "1"]
    args += ["--max", "2", "--step-duration", "1s", "--warmup", "0s", "-w", "1", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert res.exit_code == 1, res.output
    steps = read_json(str(out))["hunt"]["steps"]
    assert steps and all(st["p99_ms"] is None and st["errors"] == st["requests"] for st in steps)
    assert "p99 —" in res.output
