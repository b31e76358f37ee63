import pytest

from squall.collector.aggregate import Aggregate
from squall.plan.plan import Plan
from squall.plan.specs import RequestSpec
from squall.report.console import LiveView


def _entry(**kw: object) -> dict[str, object]:
    return {"rps": 40.0, "p50": 1.0, "p99": 2.0, "errors": 0, "inflight": 3, "worker_cpu": {0: 5.0}, **kw}


def test_the_live_line_says_when_the_run_is_draining(capsys: pytest.CaptureFixture[str]) -> None:
    view = LiveView(Plan(RequestSpec("http://127.0.0.1:1/"), duration_s=15.0))
    view.update(_entry(), Aggregate(), 15.0)
    view.update(_entry(), Aggregate(), 16.0)
    view.update(_entry(partial=True), Aggregate(), 16.4)  # a sliver: no line
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("[  15.0s/15s]") and "draining" not in lines[0]
    assert lines[1].startswith("[  16.0s/15s draining]"), lines[1]
