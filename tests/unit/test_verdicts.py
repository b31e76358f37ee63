from squall.collector.verdicts import self_check, sustained
from squall.result.document import Result


def test_sustained() -> None:
    assert sustained([95, 96, 97], 90, 3)
    assert not sustained([95, 96, 80, 97, 99], 90, 3)
    assert not sustained([95, None, 96, 97], 90, 3)
    assert sustained([10, 91, 92, 93, 10], 90, 3)
    assert not sustained([], 90, 3)


def test_self_check_reasons() -> None:
    reasons = self_check({0: [50, 60], 1: [95, 95, 95]}, {0: [1.0, 9.0, 9.0, 9.0], 1: [0.1]}, 90, 5, 3)
    assert len(reasons) == 2
    assert "worker 1 CPU" in reasons[0]
    assert "worker 0 event loop" in reasons[1]
    assert self_check({0: [95, 95]}, {0: [1.0]}, 90, 5, 3) == []


def _doc(model: str, limited: bool, lost: dict) -> dict:
    return {
        "meta": {"model": model},
        "generator_limited": limited,
        "workers_lost": lost,
        "valid": not (limited or lost),
    }


def test_exit_codes() -> None:
    assert Result(_doc("closed", False, {})).exit_code() == 0
    assert Result(_doc("closed", True, {})).exit_code() == 0  # measured the generator's ceiling: warn only
    assert Result(_doc("open", True, {})).exit_code() == 3  # asked-for load not delivered
    assert Result(_doc("closed", False, {"1": "killed"})).exit_code() == 3
