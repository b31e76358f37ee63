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
        ("errors<150%", "is not from 0% to 100%"),
        ("errors<2", "is not from 0% to 100%"),
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


@pytest.mark.parametrize(
    "expr",
    [
        "p99<nan", "p99<infms", "p99<-inf", "p99<NaNs", "ttft_p95<infs", "step.login.p99<nanms",
        "errors<nan%", "errors<inf%", "errors<nan", "errors.timeout<nan", "errors.http_429<inf%",
        "rps>inf", "rps>-inf", "requests>nan", "requests>1e999", "goodput_rps>nan", "ok_rps>inf",
        "target_cpu<nan%", "target_cpu_max<inf%", "target_rss<infMB", "target_rss<nanGB",
    ],
)  # fmt: skip
def test_nan_and_infinities_are_refused_for_every_kind_of_metric(expr: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_threshold(expr)
    message = str(caught.value)
    assert message.startswith(f"--threshold {expr!r}: ") and "\n" not in message


KINDS = {
    "requests": 200,
    "errors": 13,
    "error_kinds": {"http_429": 4, "timeout": 9},
    "ok_rps": 93.5,
    "steps": {"login": {"requests": 50, "errors": 5, "error_kinds": {"http_429": 5}}},
}


@pytest.mark.parametrize(
    ("expr", "ok", "value"),
    [
        ("errors.http_429<1%", False, 2.0),  # 4 of 200 requests
        ("errors.http_429<=2%", True, 2.0),
        ("errors.timeout<10", True, 9.0),  # a bare number: a count
        ("errors.timeout<9", False, 9.0),
        ("errors.connect<=0", True, 0.0),  # a kind that did not occur: 0, not missing
        ("errors.reset<0.5%", True, 0.0),
        ("step.login.errors.http_429<5%", False, 10.0),
        ("step.login.errors.timeout<1", True, 0.0),
        ("ok_rps>90", True, 93.5),
    ],
)
def test_a_bound_on_one_error_kind(expr: str, ok: bool, value: float) -> None:
    [got] = judge((parse_threshold(expr),), KINDS)
    assert got == {"expr": expr, "ok": ok, "value": value}


@pytest.mark.parametrize("expr", ["errors<1%", "errors.timeout<5", "errors.http_429<1%"])
def test_an_error_bound_on_a_run_with_no_request_has_no_data(expr: str) -> None:
    [got] = judge((parse_threshold(expr),), {"requests": 0, "errors": 0, "error_kinds": {}})
    assert got == {"expr": expr, "ok": False, "value": None}


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("errors.nope<1%", r"no error kind 'nope'; the kinds are connect, tls, timeout, .*, other \(and"),
        ("errors.timeout<0.5", r"not a count of timeout errors; give a whole number .* with % "),
        ("errors.timeout<-1", "not a count"),
        ("errors.http_429<150%", "not a percentage"),
        ("errors.<1%", "no error kind ''"),
        ("step.x.target_rss<1GB", "sampled for the whole run, not per step; write target_rss<1GB"),
        ("target_rss<600", r"'600' is not a size with its unit; write e.g. target_rss<600MB or 2GB"),
        ("target_rss<lots", "not a size"),
        ("target_cpu<80", r"not a CPU percentage; write it with %, e.g. target_cpu<80% \(100% is one core\)"),
        ("target_cpu<-5%", "not a CPU percentage"),
        ("target_mem<1GB", "unknown metric"),
    ],
)
def test_bad_kind_and_target_bounds_say_the_fix(expr: str, needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        parse_threshold(expr)


def test_a_py_run_bounds_its_exceptions_by_name() -> None:
    t = parse_threshold("errors.ValueError<=0")
    assert (t.path, t.limit) == (("error_kinds", "ValueError"), 0.0)
    summary = {"requests": 10, "errors": 2, "error_kinds": {"ValueError": 2}}
    assert judge((t,), summary) == [{"expr": "errors.ValueError<=0", "ok": False, "value": 2.0}]


TARGET = {
    "target": {
        "samples": 5,
        "cpu_mean_pct": 42.0,
        "cpu_max_pct": 97.5,
        "rss_max_mb": 612.0,
        "rss_last_mb": 580.0,
    }
}


@pytest.mark.parametrize(
    ("expr", "ok", "value", "limit"),
    [
        ("target_rss<600MB", False, 612.0, 600.0),  # the highest RSS sampled
        ("target_rss_max<1GB", True, 612.0, 1024.0),
        ("target_rss_last<600MB", True, 580.0, 600.0),
        ("target_rss<0.5GiB", False, 612.0, 512.0),
        ("target_rss<700000KB", True, 612.0, 700000 / 1024),
        ("target_cpu<80%", True, 42.0, 80.0),  # the mean over the measured seconds
        ("target_cpu_mean<40%", False, 42.0, 40.0),
        ("target_cpu_max<80%", False, 97.5, 80.0),
        ("target_cpu_max<=150%", True, 97.5, 150.0),  # 100 % is one core
    ],
)
def test_bounds_on_the_target_process(expr: str, ok: bool, value: float, limit: float) -> None:
    t = parse_threshold(expr)
    assert t.on_target and t.limit == limit
    assert judge((t,), TARGET) == [{"expr": expr, "ok": ok, "value": value}]
    assert judge((t,), {"requests": 5}) == [{"expr": expr, "ok": False, "value": None}]  # not sampled


def test_a_target_bound_without_a_target_is_a_usage_error_with_the_fix() -> None:
    from squall.plan.thresholds import check_target

    bounds = (parse_threshold("p99<1s"), parse_threshold("target_rss<600MB"))
    check_target(bounds, sampled=True)
    check_target(bounds[:1], sampled=False)
    with pytest.raises(PlanError, match=r"'target_rss<600MB' judges the target process, .* --target-pid PID"):
        check_target(bounds, sampled=False)


def test_the_error_kinds_are_those_the_reliability_page_lists() -> None:
    import re
    from pathlib import Path

    from squall.plan.thresholds import ERROR_KINDS

    page = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    table = page.split("## Error kinds", 1)[1].split("\n\n", 3)[2]
    documented = set(re.findall(r"`([a-z_0-9]+)`", "\n".join(r.split("|")[1] for r in table.splitlines())))
    assert set(ERROR_KINDS) - {"expect_status", "expect_body", "extract"} == documented


def test_a_percentile_of_nothing_is_no_data() -> None:
    empty = {"requests": 3, "latency_ms": dict.fromkeys(("min", "mean", "p50", "p99", "max"))}
    assert judge((parse_threshold("p99<1s"),), empty) == [{"expr": "p99<1s", "ok": False, "value": None}]


def test_junit_says_no_data() -> None:
    xml = junit_xml([{"expr": "p99<1s", "ok": False, "value": None}])
    assert "p99&lt;1s failed: no data" in xml


def test_a_histogram_of_zeros_is_data_and_null_is_none() -> None:
    # ITL gaps are all 0 µs when a server sends its tokens in one read: that is 0 ms, not "no data".
    zeros = dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"), 0.0)
    t = parse_threshold("itl_p99<50ms")
    assert t.value({"llm": {"itl_ms": zeros}}) == 0.0
    assert t.value({"llm": {"itl_ms": dict.fromkeys(zeros)}}) is None
    assert judge((t,), {"llm": {"itl_ms": zeros}})[0]["ok"] is True
