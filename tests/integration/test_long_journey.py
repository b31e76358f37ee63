"""A journey of 500 steps runs at the cost of its steps: exact counts, and done well within a generous bound
(it took 83 s and 986 MB for one iteration when every step carried four dense histograms)."""

import time
from pathlib import Path

import pytest

from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import RequestSpec
from squall.targets.serve import ServerThread

STEPS = 500


@pytest.mark.slow
def test_a_500_step_journey_runs_a_few_iterations_exactly(target: ServerThread, tmp_path: Path) -> None:
    lines = [f"base_url: {target.url.rstrip('/')}", "scenarios:", "  - name: long", "    steps:"]
    lines += [f"      - {{name: s{i}, request: {{path: /status/200}}}}" for i in range(STEPS)]
    path = tmp_path / "long.yaml"
    path.write_text("\n".join(lines) + "\n")
    sc = load_scenario(path)
    plan = assemble(
        RequestSpec(sc.base_url + "/"), scenario=sc, quiet=True, workers=1, connections=1, requests=3
    )
    began = time.monotonic()
    res = run(plan.validate())
    took = time.monotonic() - began
    s = res.doc["summary"]
    assert (s["requests"], s["ok"], s["errors"]) == (3 * STEPS, 3 * STEPS, 0)
    journey = s["scenarios"]["long"]
    assert (journey["iterations"], journey["completed"], journey["failed"]) == (3, 3, 0)
    assert len(s["steps"]) == STEPS
    assert all((st["requests"], st["ok"]) == (3, 3) for st in s["steps"].values())
    assert took < 60, took
