"""`squall soak` end to end: a target process it starts, samples and stops; checkpoints and the HDR log."""

import csv
import shlex
import sys
from pathlib import Path

from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json
from squall.targets.serve import ServerThread

# Grows by about 2 MB every 100 ms for 10 s, then holds (bounded), and is stopped by squall.
LEAKY = (
    "import time\nkeep = []\nfor _ in range(100):\n    keep.append(b'x' * 2_000_000)\n    time.sleep(0.1)\n"
    "time.sleep(60)"
)


def _soak(target: ServerThread, tmp_path: Path, code: str, *extra: str) -> tuple[dict, object]:
    out = tmp_path / "soak.json"
    cmd = shlex.join([sys.executable, "-c", code])
    args = ["soak", target.url + "/", "-d", "4s", "--warmup", "0s", "-c", "2", "-w", "1", "-q", *extra]
    args += ["--checkpoint", "1s", "--target-cmd", cmd, "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return read_json(str(out)), res


def test_a_growing_target_is_flagged_and_the_run_checkpoints(target: ServerThread, tmp_path: Path) -> None:
    doc, res = _soak(target, tmp_path, LEAKY)
    soak = doc["soak"]
    assert soak["leak_suspected"] is True, soak
    assert soak["rss_slope_mb_per_h"] > 10_000  # ~20 MB/s
    assert len(soak["series"]) >= 3 and "checkpoint" not in doc  # the final document replaced the checkpoints
    log = (tmp_path / "soak.hlog").read_text().splitlines()
    intervals = [line for line in log if line[:1].isdigit()]
    assert len(intervals) >= 3 and "#[StartTime:" in "\n".join(log)
    assert "LEAK SUSPECTED" in res.output  # type: ignore[attr-defined]


def test_a_quiet_target_is_not(target: ServerThread, tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    doc, _ = _soak(target, tmp_path, "import time\ntime.sleep(60)", "--csv", str(tmp_path / "s.csv"))
    check_result(doc)
    assert doc["soak"]["leak_suspected"] is False
    assert doc["soak"]["fd_growth"] == 0  # not sampled after squall closed its connections
    assert doc["summary"]["errors"] == 0
    summary = dict(csv.reader((tmp_path / "s.summary.csv").open()))
    assert summary["soak.leak_suspected"] == "False" and "soak.rss_slope_mb_per_h" in summary
    assert len(list(csv.DictReader((tmp_path / "s.soak.csv").open()))) == len(doc["soak"]["series"])


def test_bad_soak_input() -> None:
    for args, needle in (
        (["soak", "http://127.0.0.1:1/", "--target-pid", "1", "--target-cmd", "sleep 1"], "either"),
        (["soak", "http://127.0.0.1:1/", "--target-cmd", "/nonexistent/bin"], "cannot be started"),
        (["soak", "http://127.0.0.1:1/", "--checkpoint", "0s"], "--checkpoint"),
        (["soak", "http://127.0.0.1:1/", "--target-pid", "999999999"], "no such process"),
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and needle in res.output, res.output


def test_squall_keeps_nothing_per_request(target: ServerThread) -> None:
    # A short soak of squall itself: after the first second its worker's RSS must not move with the
    # number of requests. It must send 125k requests after the first sample, where a retention of 8 bytes
    # each would be 1 MB, over at least 4 samples. A busy box sends fewer per second: the run then lasts as
    # long as that box needs for 125k (measured on the run before, at most 60 s), never fewer requests.
    from squall.engine import run
    from squall.plan.load import Closed
    from squall.plan.plan import Outputs, Plan
    from squall.plan.shard import Spread
    from squall.plan.specs import RequestSpec
    from squall.plan.stop import Stop

    duration_s, want = 8.0, 125_000
    for _ in range(3):
        plan = Plan(
            RequestSpec(target.url + "/"),
            load=Closed(connections=32),
            spread=Spread(workers=1),
            stop=Stop(duration_s=duration_s),
            outputs=Outputs(quiet=True),
        )
        res = run(plan.validate())
        series = res.doc["timeseries"]
        rss = [v for e in series[1:] for v in (e.get("worker_rss_mb") or {}).values() if v > 0]
        after_first = res.summary["requests"] - series[0]["requests"]
        if after_first >= want and len(rss) >= 4:
            break
        per_s = max(1.0, after_first / max(1, len(series) - 1))
        duration_s = min(60.0, max(duration_s, 1 + 1.3 * want / per_s))
    assert after_first >= want and len(rss) >= 4, (after_first, rss)
    assert rss[-1] - rss[0] <= 1.0, rss


def test_soak_a_scenario_with_think_time(target: ServerThread, tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    steps = "[{name: p, request: {path: /}}]"
    scenario.write_text(f"base_url: {target.url}\nthink: 10ms\nscenarios:\n  - name: a\n    steps: {steps}\n")
    out = tmp_path / "s.json"
    args = [
        "soak",
        "--scenario",
        str(scenario),
        "-d",
        "2s",
        "--warmup",
        "0s",
        "-c",
        "2",
        "-w",
        "1",
        "-q",
        "-o",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    assert doc["meta"]["think"]["low_s"] == 0.01 and doc["summary"]["steps"]["p"]["requests"] > 0
