"""Steering a run while it goes (the dashboard's POST /api/load): users and rate changes reach every worker,
are recorded in meta.changes, and the counts stay exact across them."""

from __future__ import annotations

from typing import Any

from squall.collector.sinks import Sink, Totals
from squall.engine import run
from squall.plan.load import parse_stages, profile
from squall.plan.plan import Plan, assemble
from squall.plan.specs import PySpec, RequestSpec
from squall.result.document import Result
from squall.targets.serve import ServerThread


class Steerer(Sink):
    """Changes the load once each given measured second has ended ({second: {"users": N} or {"rate": R}}),
    and keeps what each change answered (the change as recorded, or the refusal's message)."""

    def __init__(self, at: dict[int, dict[str, Any]]) -> None:
        self.at = at
        self.answers: list[Any] = []

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        change = self.at.get(round(entry["t"]))
        if change is not None:
            totals.steer(**change, by="test")


def steered_run(plan: Plan, at: dict[int, dict[str, Any]]) -> Result:
    """Run `plan` with a Steerer besides no other sink (the run is quiet)."""
    return run(plan.validate(), sinks=lambda p, totals: [Steerer(at)])


def go(url: str, at: dict[int, dict[str, Any]], **kw: Any) -> Result:
    kw.setdefault("quiet", True)
    kw.setdefault("workers", 2)
    kw.setdefault("duration_s", 4.0)
    return steered_run(assemble(RequestSpec(url), **kw), at)


def check_counts(res: Result) -> list[dict[str, Any]]:
    """requests == ok + errors (+ interrupted) and the series sums to the summary; the full seconds."""
    s, series = res.summary, res.doc["timeseries"]
    assert s["requests"] == s["ok"] + s["errors"] + s["interrupted"]
    assert sum(e["requests"] for e in series) == s["requests"]
    assert sum(e["ok"] for e in series) == s["ok"]
    return [e for e in series if not e["partial"]]


def test_closed_users_up_then_down(target: ServerThread) -> None:
    res = go(target.url + "/delay/20", {1: {"users": 6}, 2: {"users": 1}}, connections=2)
    full = check_counts(res)
    assert [e["target_users"] for e in full] == [2, 6, 1, 1]
    assert [e["users"] for e in full] == [2, 6, 1, 1]
    # 20 ms answers: ~50 requests a second per user (less on a busy box, in proportion)
    n = [e["requests"] for e in full]
    assert n[0] <= 105 and n[1] <= 305 and n[3] <= 52 and n[1] > 2 * n[0] and n[0] > 1.5 * n[3], n
    changes = res.doc["meta"]["changes"]
    assert [{k: c[k] for k in ("users", "by")} for c in changes] == [
        {"users": 6, "by": "test"},
        {"users": 1, "by": "test"},
    ]
    assert 1.0 <= changes[0]["t"] < 1.5 and 2.0 <= changes[1]["t"] < 2.5
    assert res.summary["errors"] == 0 and res.summary["interrupted"] == 0


def test_open_rate_up_keeps_the_schedule(target: ServerThread) -> None:
    res = go(target.url + "/", {2: {"rate": 200.0}}, rate=50.0, connections=32)
    full = check_counts(res)
    s = res.summary
    # (a stalled box can leave a send without a free connection, or unsent at the end: counted, never lost)
    missed = s["unsent"] + s["dropped"]
    assert s["errors"] == 0 and missed <= 5, s
    assert [e["target_rps"] for e in full[:2]] == [50.0, 50.0] and full[3]["target_rps"] == 200.0
    seen = [(e["t"], e["requests"], e["target_rps"]) for e in full]
    assert all(abs(n - want) <= 3 + missed for t, n, want in seen if t != 3), seen
    # The second of the change: 50/s until it, 200/s after; the whole run sends what the shape asked for.
    assert 50 < full[2]["target_rps"] < 200
    t = res.doc["meta"]["changes"][0]["t"]
    want = 2 * 50 + (t - 2) * 50 + (4 - t) * 200
    assert abs(s["requests"] + missed - want) <= 3, (s["requests"], missed, want)


def test_open_rate_zero_pauses_and_a_later_change_resumes(target: ServerThread) -> None:
    res = go(target.url + "/", {1: {"rate": 0.0}, 2: {"rate": 100.0}}, rate=100.0, connections=32)
    full = check_counts(res)
    missed = res.summary["unsent"] + res.summary["dropped"]
    assert missed <= 5, res.summary
    assert [e["target_rps"] for e in full][3:] == [100.0]
    # 0/s from ~1.0 s to ~2.0 s: the second of the pause holds the few sends due before it.
    assert full[1]["target_rps"] < 20 and full[1]["requests"] <= full[1]["target_rps"] + 3, full
    assert abs(full[3]["requests"] - 100) <= 3 + missed, full
    changes = res.doc["meta"]["changes"]
    want = 100 * (changes[0]["t"] + 4 - changes[1]["t"])
    assert abs(res.summary["requests"] + missed - want) <= 3, (res.summary["requests"], missed, want)


def test_a_rate_shape_is_replaced_by_the_change(target: ServerThread) -> None:
    shape = profile("spike", "rate", 200.0, 4.0)  # 20/s, up to 200/s from 1.6 s
    res = go(target.url + "/", {1: {"rate": 40.0}}, rate=200.0, shape=shape, connections=32)
    full = check_counts(res)
    missed = res.summary["unsent"] + res.summary["dropped"]
    assert missed <= 5, res.summary
    assert [e["target_rps"] for e in full[2:]] == [40.0, 40.0]
    assert all(abs(e["requests"] - 40) <= 3 + missed for e in full[2:]), full
    assert res.doc["meta"]["changes"][0]["rate"] == 40.0


def test_a_users_stage_shape_steered_mid_shape(target: ServerThread) -> None:
    shape = parse_stages(["4s:8"])  # a ramp from 0 to 8 users: held at 3 from the change on
    res = go(target.url + "/delay/20", {2: {"users": 3}}, shape=shape, connections=8)
    full = check_counts(res)
    assert [e["target_users"] for e in full] == [2, 4, 3, 3]
    assert [e["users"] for e in full][2:] == [3, 3]


def test_a_count_still_ends_a_steered_run_exactly(target: ServerThread) -> None:
    res = go(target.url + "/delay/10", {1: {"users": 8}}, connections=2, duration_s=None, requests=600)
    check_counts(res)
    assert res.summary["requests"] == 600 and res.doc["timeseries"][1]["users"] == 8


def test_a_py_workload_is_steered(tmp_path: Any) -> None:
    (tmp_path / "steer_wl.py").write_text(
        "import asyncio\n\nasync def run():\n    await asyncio.sleep(0.02)\n\ndef make():\n    return run\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        plan = assemble(
            RequestSpec("http://127.0.0.1:1/"),
            py=PySpec("steer_wl:make"),
            connections=2,
            workers=1,
            duration_s=3.0,
            quiet=True,
        )
        res = steered_run(plan, {1: {"users": 5}})
    finally:
        sys.path.remove(str(tmp_path))
    full = check_counts(res)
    assert [e["users"] for e in full] == [2, 5, 5]
    assert full[2]["requests"] <= 255 and full[2]["requests"] > 2 * full[0]["requests"], full


class Stopper(Sink):
    """Asks the run to stop, as the dashboard's stop button does, once measured second 1 has ended."""

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        if round(entry["t"]) == 1:
            totals.stop_run("interrupted", by="dashboard")  # type: ignore[call-arg]


def test_a_stop_by_the_dashboard_is_named_in_meta(target: ServerThread) -> None:
    plan = assemble(RequestSpec(target.url + "/"), quiet=True, workers=1, connections=2, duration_s=30.0)
    res = run(plan.validate(), sinks=lambda p, totals: [Stopper()])
    assert res.exit_code() == 130 and res.doc["meta"]["stop_reason"] == "interrupted"
    assert res.doc["meta"]["stopped_by"] == "dashboard" and res.summary["requests"] > 0


def test_aiohttp_users_added_past_c_are_not_queued_on_the_pool(target: ServerThread) -> None:
    res = go(target.url + "/delay/20", {1: {"users": 8}}, connections=2, workers=1, duration_s=3.0,
             transport="aiohttp")  # fmt: skip
    full = check_counts(res)
    assert [e["users"] for e in full] == [2, 8, 8]
    # 20 ms answers: ~50 requests a second per user; 8 users held to 2 connections would stay at ~100.
    assert full[2]["requests"] > 2.5 * full[0]["requests"], full
