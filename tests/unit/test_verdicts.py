from squall.collector.verdicts import box_delayed, self_check, sustained
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


def test_others_cpu_is_what_neither_squall_nor_the_target_used() -> None:
    from squall.collector.verdicts import others_cpu_pct

    series = [
        # 2 cores: squall used 100 % of one core + 20 % (= 60 % of the box), the host 80 %: others 20 %.
        {"host_cpu": 80.0, "worker_cpu": {0: 100.0, 1: None}, "collector_cpu": 20.0},
        # the target's 40 % of one core is not "other": 90 - (60 + 40) / 2 = 40.
        {"host_cpu": 90.0, "worker_cpu": {0: 60.0}, "collector_cpu": 0.0, "target": {"cpu": 40.0}},
        {"host_cpu": 10.0, "worker_cpu": {0: 100.0}},  # never below 0
        {"t": 4.0},  # not sampled: left out
    ]
    assert others_cpu_pct(series, cpus=2) == round((20.0 + 40.0 + 0.0) / 3, 1)
    assert others_cpu_pct([], cpus=2) is None


def test_a_busy_box_excuses_the_loop_lag_of_an_idle_worker() -> None:
    cpu = {0: [5.0, 6.0, 4.0], 1: [95.0, 96.0, 97.0]}
    # worker 0 waited for a core while others held the box; worker 1 made its own loop late
    assert box_delayed(cpu, [0, 1], others_pct=45.0) == [0]
    assert box_delayed(cpu, [0, 1], others_pct=5.0) == []  # a quiet box: the lag was squall's own
    assert box_delayed(cpu, [0, 1], others_pct=None) == []  # not sampled: nothing is excused
    assert box_delayed({0: [None, None]}, [0], others_pct=45.0) == []  # no CPU seen: nothing is excused
    lag = {0: [9.0, 9.0, 9.0], 1: [9.0, 9.0, 9.0]}
    assert self_check(cpu, lag, 90.0, 5.0, 3, excused=[0]) == [
        "worker 1 CPU stayed at or above 90% for 3 s",
        "worker 1 event loop ran late (timer lateness p99 > 5 ms) for 3 s",
    ]
