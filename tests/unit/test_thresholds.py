import pytest

from squall.plan.thresholds import judge, parse_threshold
from squall.report.junit import junit_xml
from squall.result.document import Result
from squall.units import PlanError

SUMMARY = {
    "requests": 200,
    "errors": 3,
    "rps": 150.0,
    "latency_ms": {"p50": 10.0, "p95": 80.0, "p99": 250.0, "max": 900.0},
    "service_ms": {"p99": 120.0},
    "llm": {
        "ttft_ms": {"p95": 1500.0},
        "itl_ms": {"p99": 40.0},
        "goodput_rps": 12.0,
        "output_tokens_per_s": 900.0,
    },
}


@pytest.mark.parametrize(
    ("expr", "ok", "value"),
    [
        ("p99<300ms", True, 250.0),
        ("p99<200ms", False, 250.0),
        ("p95<=80ms", True, 80.0),
        ("max<1s", True, 900.0),
        ("service_p99<0.1s", False, 120.0),
        ("errors<1%", False, 1.5),
        ("errors<2%", True, 1.5),
        ("errors<0.02", True, 1.5),
        ("rps>100", True, 150.0),
        ("rps>=151", False, 150.0),
        ("ttft_p95<2s", True, 1500.0),
        ("itl_p99<50ms", True, 40.0),
        ("goodput_rps>10", True, 12.0),
        ("tokens_per_s>1000", False, 900.0),
        ("tpot_p99<1s", False, None),  # the result has no such number: a failure, not a pass
    ],
)
def test_judge(expr: str, ok: bool, value: float | None) -> None:
    [got] = judge((parse_threshold(expr),), SUMMARY)
    assert got == {"expr": expr, "ok": ok, "value": value}


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("p99", "is not METRIC<VALUE"),
        ("p98<1s", "unknown metric"),
        ("foo_p99<1s", "unknown metric"),
        ("p99<fast", "not a duration"),
        ("errors<150%", "percentage"),
        ("errors<2", "percentage"),
        ("rps>many", "not a number"),
    ],
)
def test_bad_thresholds(expr: str, needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        parse_threshold(expr)


def test_exit_code_order() -> None:
    base = {"meta": {"model": "closed"}, "generator_limited": False, "workers_lost": {}, "valid": True}
    failed = [{"expr": "p99<1ms", "ok": False, "value": 5.0}]
    assert Result(base | {"thresholds": [{"expr": "x", "ok": True, "value": 1.0}]}).exit_code() == 0
    assert Result(base | {"thresholds": failed}).exit_code() == 1
    assert Result(base | {"thresholds": failed, "workers_lost": {"0": "killed"}}).exit_code() == 3


def test_junit() -> None:
    xml = junit_xml(
        [{"expr": "p99<1ms", "ok": False, "value": 5.0}, {"expr": "rps>1", "ok": True, "value": 9.0}]
    )
    assert 'tests="2" failures="1"' in xml
    assert '<testcase classname="squall" name="rps&gt;1"/>' in xml
    assert "<failure" in xml and "p99&lt;1ms failed: value 5.0" in xml


@pytest.mark.parametrize("expr", ["p99<300", "ttfb_p95<=2", "step.login.p50<1.5", "ttft_p99<1e3"])
def test_a_time_bound_without_a_unit_is_refused_with_the_fix(expr: str) -> None:
    with pytest.raises(PlanError, match=r"has no unit; a time bound needs one: .*ms or .*s$"):
        parse_threshold(expr)
