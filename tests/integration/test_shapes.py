"""Load shapes and think time end to end: stages of rate and of users, presets, pauses between requests."""

from squall.engine import run
from squall.plan.load import parse_stages, parse_think
from squall.plan.plan import assemble
from squall.plan.specs import RequestSpec
from squall.result.document import Result
from squall.targets.serve import ServerThread


def go(url: str, **kw: object) -> Result:
    kw.setdefault("quiet", True)
    kw.setdefault("workers", 2)
    kw.setdefault("connections", 16)
    return run(assemble(RequestSpec(url), **kw).validate())  # type: ignore[arg-type]


def test_rate_stages_send_exactly_their_area(target: ServerThread, check_result) -> None:  # type: ignore[no-untyped-def]
    # 0 → 200/s over 1 s (100 requests), then 200 → 0/s over 1 s (100 more).
    res = go(target.url + "/", shape=parse_stages(["1s:200/s", "1s:0/s"]))
    check_result(res.doc)
    s = res.summary
    assert (s["requests"], s["ok"], s["unsent"], s["dropped"]) == (200, 200, 0, 0)
    series = res.doc["timeseries"]
    assert [e["target_rps"] for e in series[:2]] == [100.0, 100.0]
    # Counted by the second a response arrived in: one due just before a boundary can land after it.
    assert all(abs(e["requests"] - 100) <= 3 for e in series[:2]), series[:2]
    assert sum(e["requests"] for e in series) == 200
    assert all(e["requests"] == 0 and e["target_rps"] == 0 for e in series[2:])  # the stop's partial second
    meta = res.doc["meta"]
    assert (meta["rate"], meta["model"], meta["duration_s"]) == (200, "open", 2)
    assert meta["shape"] == {
        "kind": "rate",
        "stages": [{"duration_s": 1, "target": 200}, {"duration_s": 1, "target": 0}],
    }


def test_users_stages_ramp_up_and_let_in_flight_work_end(target: ServerThread) -> None:
    # Every request takes 50 ms; users: 0 → 8 over 1 s, held 1 s, down to 2 over 1 s.
    res = go(target.url + "/delay/50", shape=parse_stages(["1s:8", "1s:8", "1s:2"]))
    series = [e for e in res.doc["timeseries"] if not e["partial"]]
    assert [e["target_users"] for e in series] == [8, 8, 2]
    assert series[0]["users"] in (7, 8)  # users are re-counted every 100 ms: the ramp reaches 8 at 1.0 s
    assert series[1]["users"] == 8
    assert series[2]["users"] <= 3  # leaving users finish the request they have in flight first
    assert max(e["inflight"] for e in series) <= 8
    s = res.summary
    assert s["errors"] == 0 and s["interrupted"] == 0
    # Held at 8 users for a second at 50 ms a request: about 160 requests in the middle second.
    assert 120 <= series[1]["requests"] <= 165


def test_think_time_paces_each_user(target: ServerThread) -> None:
    # 4 users, 200 ms pauses, fast answers: about 5 requests per user per second.
    res = go(target.url + "/", connections=4, duration_s=2.0, think=parse_think("200ms"))
    n = res.summary["requests"]
    assert 32 <= n <= 44, n
    res = go(target.url + "/", connections=4, duration_s=1.0, think=parse_think("exp:100ms"))
    assert 24 <= res.summary["requests"] <= 60


def test_llm_runs_take_stages_and_think_time() -> None:
    from squall.plan.specs import LlmSpec
    from squall.targets.mock_llm import MockThread

    with MockThread(ttft_s=0.005, itl_s=0.001, tokens=4) as mock:
        plan = assemble(
            RequestSpec(mock.url + "/v1/chat/completions", "POST"),
            llm=LlmSpec(),
            workers=1,
            quiet=True,
            shape=parse_stages(["500ms:3", "1s:3"]),
            think=parse_think("100ms"),
        )
        res = run(plan.validate())
    series = [e for e in res.doc["timeseries"] if not e["partial"]]
    assert series[0]["target_users"] == 3 and series[0]["users"] == 3
    n = res.summary["requests"]
    # 3 users for about 1.2 s, each answer ~10 ms then a 100 ms pause: about 30 answers.
    assert 20 <= n <= 36, n
    assert res.summary["llm"]["output_tokens"] == 4 * res.summary["ok"]
