import pytest

from squall.collector.aggregate import Aggregate
from squall.plan.load import Closed
from squall.plan.plan import Plan
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop
from squall.report.live import LiveView


def _entry(**kw: object) -> dict[str, object]:
    return {"rps": 40.0, "p50": 1.0, "p99": 2.0, "errors": 0, "inflight": 3, "worker_cpu": {0: 5.0}, **kw}


def test_the_live_line_says_when_the_run_is_draining(capsys: pytest.CaptureFixture[str]) -> None:
    view = LiveView(Plan(RequestSpec("http://127.0.0.1:1/"), stop=Stop(duration_s=15.0)))
    view.update(_entry(), Aggregate(), 15.0)
    view.update(_entry(), Aggregate(), 16.0)
    view.update(_entry(partial=True), Aggregate(), 16.4)  # a sliver: no line
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("[  15.0s/15s]") and "draining" not in lines[0]
    assert lines[1].startswith("[  16.0s/15s draining]"), lines[1]


def _invalid(**kw: object) -> dict[str, object]:
    """A whole result document that is not valid for the causes given."""
    from squall.collector.aggregate import Aggregate
    from squall.collector.result import Outline, Verdict, build_result, plan_meta

    plan = Plan(
        RequestSpec("http://127.0.0.1:1/"),
        load=Closed(connections=8),
        stop=Stop(duration_s=15.0),
        spread=Spread(workers=2),
    )
    meta = plan_meta(plan, 0.0, 0.0, {0: 10, 1: 11}, [str(kw.pop("stop", "duration"))])
    meta["model"], meta["rate"], meta["arrival"] = kw.pop("model", "closed"), 100.0, "constant"
    lost = kw.pop("lost", {})
    verdict = Verdict(False, bool(kw.pop("limited", False)), lost, [])  # type: ignore[arg-type]
    doc = build_result(meta, Aggregate(), {}, 15.0, Outline(), [], {}, verdict)
    check = {"cpu_workers": [], "loop_lag_workers": [], "cpu_limit_pct": 90.0, "loop_lag_limit_ms": 5.0}
    doc["self_check"] = check | {"span_s": 3, "unsent": 0, "others_cpu_pct": 0.0} | kw
    return doc


CAUSES = {
    "lost": (
        {"lost": {"1": "exited without finishing"}},
        ["worker 1 was lost (exited without finishing)", "What to do:", "more workers"],
    ),
    "rate": (
        {"model": "open", "limited": True, "unsent": 1200},
        ["the rate was not delivered", "never sent 1,200 due requests", "more workers (-w)"],
    ),
    "cpu": (
        {"limited": True, "cpu_workers": [0, 1]},
        [
            "the generator's CPU was the limit: workers 0, 1 stayed at or above 90% CPU for 3 s",
            "fewer connections",
        ],
    ),
    "loop lag": (
        {"limited": True, "loop_lag_workers": [1]},
        ["event loop ran late: worker 1 woke more than 5 ms late (p99) for 3 s", "fewer connections/streams"],
    ),
    "busy box": (
        {"limited": True, "loop_lag_workers": [0], "others_cpu_pct": 63.4},
        ["the box was also busy: other processes used 63% of its CPU", "a quieter box"],
    ),
    "no worker": ({"stop": "no worker started"}, ["no worker process started"]),
    "main died": ({"stop": "supervisor lost"}, ["the main squall process died"]),
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_a_result_that_is_not_valid_says_why_and_what_to_do(
    cause: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from squall.report.console import print_summary

    kw, wanted = CAUSES[cause]
    print_summary(_invalid(**kw), Console(highlight=False, soft_wrap=True, width=300))
    out = capsys.readouterr().out
    assert "result not valid" in out
    why = [line for line in out.splitlines() if line.startswith("  why: ")]
    assert why, out
    for text in wanted:
        assert text in out, (text, out)
    assert all("What to do:" in line for line in why), why


def test_a_quiet_box_is_not_called_busy() -> None:
    from squall.report.console import why_not_valid

    got = why_not_valid(_invalid(limited=True, loop_lag_workers=[0], others_cpu_pct=5.0))  # type: ignore[arg-type]
    assert len(got) == 1 and got[0].startswith("the generator's event loop ran late: worker 0 ")


def test_the_html_report_says_why_too() -> None:
    from squall.report.html import render

    page = render(_invalid(lost={"1": "exited without finishing"}))
    assert "not valid: worker 1 was lost (exited without finishing)" in page
    assert "not valid:" not in render(_invalid() | {"valid": True})


def test_a_dashboard_stop_and_the_recovery_line_read_right() -> None:
    from rich.console import Console

    from squall.report.console import print_summary, recovery_text

    doc = _invalid() | {"valid": True}
    doc["meta"] |= {"stop_reason": "interrupted", "stopped_by": "dashboard", "duration_s": 10}
    console = Console(record=True, width=200)
    print_summary(doc, console)
    text = console.export_text()
    assert "stopped early from the dashboard, after" in text and "Ctrl-C" not in text
    r = {"spike_start_s": 5, "spike_end_s": 10, "baseline_p99_ms": 24.93, "p99_recovered_after_s": 2}
    assert recovery_text(r) == "spike 5s-10s; p99 back within 10% after 2s (baseline 24.93ms)"
