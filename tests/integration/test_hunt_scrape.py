"""`squall hunt --scrape`: every level keeps the target's own metrics (mean, max), and the levels' table shows
the server's queue and KV cache."""

from pathlib import Path

from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json
from squall.report.sections import hunt_table
from squall.targets.mock_llm import MockThread

WAITING = 'vllm:num_requests_waiting{model_name="squall-mock"}'
RUNNING = 'vllm:num_requests_running{model_name="squall-mock"}'
KV = 'vllm:kv_cache_usage_perc{model_name="squall-mock"}'


def test_each_level_keeps_its_own_target_metrics(tmp_path: Path) -> None:
    out = tmp_path / "hunt.json"
    # Two requests generated at a time: at 4 users two wait (all but a moment), at 1 none does; throughput
    # doubles from 1 to 4, so the hunt grows past 1 and stops at --max.
    with MockThread(ttft_s=0.02, itl_s=0.005, tokens=5, max_running=2) as mock:
        args = ["hunt", mock.url + "/v1/chat/completions", "--llm", "--slo", "ttft_p50<10s"]
        args += ["--start", "1", "--max", "4", "--growth", "4", "--step-duration", "1s"]
        args += ["--warmup", "0s", "-w", "1", "-q", "--scrape", mock.url + "/metrics", "-o", str(out)]
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = read_json(str(out))
    steps = doc["hunt"]["steps"]
    # (1 then 4; a starved box can make 4 look no faster than 1, and the hunt then tries the levels between)
    by_level = {s["level"]: s for s in steps}
    assert steps[0]["level"] == 1 and 4 in by_level, [s["level"] for s in steps]
    for s in steps:
        assert {WAITING, RUNNING, KV} <= s["target_metrics"].keys()
        assert all(set(v) == {"mean", "max"} for v in s["target_metrics"].values())
        assert s["target_metrics"][RUNNING]["max"] <= 2  # --max-running 2
    one, four = (by_level[n]["target_metrics"][WAITING] for n in (1, 4))
    assert one["max"] == 0 and four["max"] >= 1
    # The result's own target_metrics are one level's (the best's), with every field.
    best = by_level[doc["hunt"]["best"]]["target_metrics"]
    series = doc["target_metrics"]["series"]
    assert {k: {"mean": v["mean"], "max": v["max"]} for k, v in series.items() if k in best} == best
    table = hunt_table(doc["hunt"])
    assert table["head"][-4:] == [
        "server waiting (mean / max)",
        "server running (mean / max)",
        "server KV cache (mean / max)",
        "verdict",
    ]
    assert table["rows"][0][-4] == "0 / 0"
    assert table["note"].endswith(f"{WAITING}, {RUNNING}, {KV}")
