"""The hunt's search, against a model target: exact levels visited, verdicts, knee and exit codes."""

from dataclasses import replace
from typing import Any

import pytest

from squall.plan.plan import Plan
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.thresholds import parse_threshold
from squall.result.document import Result
from squall.studies.hunt import Hunter, HuntSpec, exit_code, knee, limited_why
from squall.units import PlanError


def model(
    rps_of: Any, p99_of: Any, limited_at: float | None = None, interrupt_at: float | None = None
) -> Any:
    """A stand-in for the engine: a Result computed from the plan's level."""

    def run(plan: Plan) -> Result:
        level = plan.load.rate if plan.load.rate is not None else plan.load.connections
        p99, rps = p99_of(level), rps_of(level)
        summary = {
            "rps": rps,
            "requests": int(rps * plan.stop.duration_s * 100),
            "errors": 0,
            "latency_ms": {"p50": p99 / 2, "p99": p99},
        }
        thresholds = [
            {"expr": t.expr, "ok": t.holds(v), "value": v}
            for t in plan.thresholds
            if (v := t.value(summary)) is not None
        ]
        doc = {
            "summary": summary,
            "thresholds": thresholds,
            "timeseries": [{"worker_cpu": {"0": 50.0}}],
            "generator_limited": limited_at is not None and level >= limited_at,
            "workers_lost": {},
            "meta": {
                "stop_reason": "interrupted" if interrupt_at == level else "duration",
                "duration_s": plan.stop.duration_s,
            },
        }
        return Result(doc)

    return run


def hunter(run: Any, *slos: str, **spec: Any) -> Hunter:
    base = Plan(
        RequestSpec("http://127.0.0.1:1/"),
        spread=Spread(workers=1),
        thresholds=tuple(parse_threshold(s) for s in slos),
    )
    return Hunter(base.validate(), HuntSpec(**({"step_s": 1.0} | spec)), run)


def test_grows_then_bisects_to_the_resolution() -> None:
    # Latency grows past 100 users: p99 = 10 ms up to 100, then 10 ms * level / 100. The SLO holds to 150.
    h = hunter(model(lambda n: min(n, 100) * 10, lambda n: 10.0 * max(1, n / 100)), "p99<15ms")
    out = h.hunt()
    assert [s["level"] for s in out["steps"]] == [8, 16, 32, 64, 128, 256, 192, 160, 144, 152, 148]
    assert (out["best"], out["first_failing"], out["failed_slo"]) == (148, 152, ["p99<15ms"])
    assert out["stop_reason"] == "slo" and exit_code(out) == 0
    doc = h.document(out)
    assert doc["hunt"] is out and doc["summary"]["latency_ms"]["p99"] == pytest.approx(14.8)


def test_throughput_that_stops_rising_ends_the_growth() -> None:
    out = hunter(model(lambda n: min(n, 32) * 10, lambda n: 5.0), "errors<1%").hunt()
    assert [s["level"] for s in out["steps"]][:4] == [8, 16, 32, 64]
    assert (out["best"], out["first_failing"], out["stop_reason"]) == (32, 33, "plateau")
    assert out["failed_slo"] == []
    assert out["knee"] == 32


def test_the_generator_running_out_stops_the_hunt() -> None:
    out = hunter(model(lambda n: n * 10, lambda n: 5.0, limited_at=64), "p99<1s").hunt()
    assert [s["level"] for s in out["steps"]] == [8, 16, 32, 64]
    assert (out["best"], out["box_limited"], out["stop_reason"]) == (32, True, "generator")
    assert exit_code(out) == 0
    out = hunter(model(lambda n: n, lambda n: 5.0, limited_at=1), "p99<1s").hunt()
    assert (out["best"], exit_code(out)) == (None, 3)


def test_nothing_passing_and_reaching_max() -> None:
    out = hunter(model(lambda n: n, lambda n: 500.0), "p99<100ms").hunt()
    assert (out["best"], out["first_failing"], exit_code(out)) == (None, 8, 1)
    out = hunter(model(lambda n: n * 10.0, lambda n: 1.0), "p99<100ms", max=40).hunt()
    assert [s["level"] for s in out["steps"]] == [8, 16, 32, 40]
    assert (out["best"], out["stop_reason"]) == (40, "max")


def test_rate_mode_and_interruption() -> None:
    out = hunter(
        model(lambda r: r, lambda r: 2.0 if r <= 300 else 80.0), "p99<10ms", mode="rate", start=100
    ).hunt()
    assert out["best"] is not None and 285 <= out["best"] <= 300 and out["first_failing"] > 300
    out = hunter(model(lambda n: n, lambda n: 1.0, interrupt_at=32), "p99<1s").hunt()
    assert (out["stop_reason"], out["best"]) == ("interrupted", 16)


def test_bad_specs() -> None:
    run = model(lambda n: n, lambda n: 1.0)
    for spec, needle in (
        ({"mode": "users"}, "--mode"),
        ({"start": 0}, "--start"),
        ({"growth": 1.0}, "--growth"),
        ({"start": 2.5}, "whole numbers"),
    ):
        with pytest.raises(PlanError, match=needle):
            hunter(run, "p99<1s", **spec)
    with pytest.raises(PlanError, match="--slo"):
        hunter(run)


def test_knee_of_a_saturating_curve() -> None:
    steps = [
        {"level": n, "rps": min(n, 50) * 10.0, "limited": False, "interrupted": False}
        for n in (10, 20, 40, 80, 160)
    ]
    assert knee(steps) == 40
    # Throughput in step with load (the review's 2, 4, 8, 16 users): no knee yet.
    straight = [
        {"level": x, "rps": y, "limited": False, "interrupted": False}
        for x, y in ((2, 15.5), (4, 34), (8, 64), (16, 136))
    ]
    assert knee(straight) is None


def test_limited_why_reads_the_self_check_not_the_warnings() -> None:
    reasons = ["generator-limited: worker 1 CPU stayed at or above 90% for 3 s; the numbers describe ..."]
    doc = {
        "generator_limited": True,
        "warnings": ["generator-limited: this text is not read", "another warning"],
        "self_check": {"reasons": reasons, "cpu_workers": [1], "loop_lag_workers": [], "unsent": 0},
    }
    assert limited_why(doc) == reasons
    assert limited_why({**doc, "generator_limited": False}) == []


def test_levels_are_closed_users_or_an_open_rate_over_the_base_connections() -> None:
    from squall.plan.load import Closed, Open, parse_think
    from squall.plan.plan import assemble

    base = assemble(
        RequestSpec("http://127.0.0.1:1/"),
        workers=1,
        connections=256,
        requests=5,
        abort_on_fail=True,
        out_path="x.json",
        thresholds=(parse_threshold("p99<1s"),),
    )
    users = Hunter(base, HuntSpec(step_s=4.0, warmup_s=1.0), model(lambda n: n, lambda n: 1.0))._plan(16)
    assert (users.load, users.stop.duration_s, users.stop.warmup_s, users.stop.requests) == (
        Closed(connections=16),
        4.0,
        1.0,
        None,
    )
    assert (users.stop.abort_on_fail, users.outputs.out_path, users.outputs.quiet) == (False, None, True)
    rate = Hunter(base, HuntSpec(mode="rate"), model(lambda n: n, lambda n: 1.0))._plan(12.5)
    assert rate.load == Open(rate=12.5, connections=256)
    thinking = replace(base, load=Closed(connections=256, think=parse_think("1s")))
    with pytest.raises(PlanError, match="--think paces users"):
        Hunter(thinking, HuntSpec(mode="rate"), model(lambda n: n, lambda n: 1.0))._plan(10)


def test_the_first_level_is_8_or_the_max_when_that_is_lower() -> None:
    from squall.cli.studies import HuntFlags

    assert HuntFlags(slo=("p99<1s",), max_level=4).spec().start == 4
    assert HuntFlags(slo=("p99<1s",)).spec().start == 8
    assert HuntFlags(slo=("p99<1s",), start=2, max_level=4).spec().start == 2


def test_wilson_interval_and_the_samples_each_slo_needs() -> None:
    from squall.studies.judge import samples_needed, wilson

    lo, hi = wilson(10, 1000)
    assert (round(lo, 3), round(hi, 3)) == (
        0.544,
        1.831,
    )  # as statsmodels' proportion_confint(method='wilson')
    assert wilson(0, 0) == (0.0, 100.0) and wilson(0, 100)[0] == 0.0
    need = {e: samples_needed(parse_threshold(e), 20) for e in ("errors<2%", "errors<1%", "p99<1s", "p50<1s")}
    assert need == {"errors<2%": 381, "errors<1%": 765, "p99<1s": 1000, "p50<1s": 20}
    assert samples_needed(parse_threshold("p999<1s"), 20) == 10_000
    assert samples_needed(parse_threshold("rps>5"), 20) == 20


def errors_model(rate_of: Any, per_s: int = 1000) -> Any:
    """A stand-in run: `per_s` answers a second, a share `rate_of(level)` of them errors."""

    def run(plan: Plan) -> Result:
        level = plan.load.connections
        n = int(per_s * plan.stop.duration_s)
        errors = round(n * rate_of(level))
        summary = {
            "rps": float(level),
            "requests": n,
            "errors": errors,
            "latency_ms": {"p50": 1.0, "p99": 2.0},
        }
        return Result(
            {
                "summary": summary,
                "thresholds": [],
                "timeseries": [],
                "generator_limited": False,
                "workers_lost": {},
                "meta": {"stop_reason": "duration", "duration_s": plan.stop.duration_s},
            }
        )

    return run


def test_error_rates_near_the_limit_run_longer_then_say_undecided() -> None:
    # 1.8 % against errors<2%: 1,000 answers leave the interval across 2 %; the level runs again for at
    # most 4 steps (4,000 answers), still straddles, and is reported undecided, neither good nor bad.
    seen: list[float] = []

    def run(plan: Plan) -> Result:
        seen.append(plan.stop.duration_s)
        return errors_model(lambda n: 0.018)(plan)

    out = hunter(run, "errors<2%", start=2, max=4).hunt()
    assert seen == [1.0, 4.0, 1.0, 4.0]
    assert [s["verdict"] for s in out["steps"]] == ["undecided", "undecided"]
    assert [s["extended"] for s in out["steps"]] == [True, True]
    assert (out["best"], out["first_failing"], out["unjudged"]) == (None, None, [2, 4])
    assert exit_code(out) == 1


def test_a_rate_judged_on_more_answers_gets_its_verdict() -> None:
    # 1.3 % and 2.8 % against errors<2%: undecided on 1,000 answers, decided once the level ran longer.
    for rate, verdict in ((0.013, "ok"), (0.028, "fail")):
        seen: list[float] = []

        def run(plan: Plan, rate: float = rate, seen: list[float] = seen) -> Result:
            seen.append(plan.stop.duration_s)
            return errors_model(lambda n: rate)(plan)

        out = hunter(run, "errors<2%", start=2, max=2).hunt()
        (step,) = out["steps"]
        assert (step["verdict"], step["extended"]) == (verdict, True)
        assert seen[0] == 1.0 and 1.0 < seen[1] <= 4.0
        assert step["requests"] == int(1000 * seen[1]) and step["samples_needed"] == 381
        lo, hi = step["errors_bound_pct"]
        assert (hi < 2.0) if verdict == "ok" else (lo > 2.0)
        assert out["unjudged"] == []


def test_a_level_with_too_few_answers_runs_longer_then_is_not_judged() -> None:
    # 100 answers a second; p99 needs 1,000: 1 s gives 100, then at most 4 s gives 400: too few.
    seen: list[float] = []

    def run(plan: Plan) -> Result:
        seen.append(plan.stop.duration_s)
        return errors_model(lambda n: 0.0, per_s=100)(plan)

    out = hunter(run, "p99<1s", start=2, max=2).hunt()
    (step,) = out["steps"]
    assert seen == [1.0, 4.0]
    assert (step["verdict"], step["samples"], step["samples_needed"], step["ok"]) == (
        "too_few",
        400,
        1000,
        False,
    )
    assert (out["best"], out["first_failing"], out["unjudged"]) == (None, None, [2])


def test_the_table_says_which_levels_were_not_judged() -> None:
    from rich.console import Console

    from squall.report.tables import print_hunt

    out = hunter(errors_model(lambda n: 0.018), "errors<2%", start=2, max=4).hunt()
    console = Console(record=True, width=200)
    print_hunt(out, console)
    text = console.export_text()
    assert "undecided: errors<2% (95% CI 1.43-2.26%): not judged" in text
    assert "4,000+" in text and "not judged (too few answers, or an error rate whose 95% interval" in text
    assert "2, 4 users; counted neither as passing nor as failing" in text
    assert "no level could be judged (see below)" in text
