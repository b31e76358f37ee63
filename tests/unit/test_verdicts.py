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


def test_busy_box_and_generator_limit_warnings_say_which_in_plain_words() -> None:
    from squall.collector.verdicts import busy_box_warning, host_busy, limit_warning, name_processes

    assert (host_busy(None), host_busy(19.9), host_busy(20.0)) == (False, False, True)
    top = [{"name": "python3", "pid": 123, "cpu_pct": 95.4}, {"name": "node", "pid": 9, "cpu_pct": 40.0}]
    assert name_processes(top) == "python3 (pid 123) 95 %, node (pid 9) 40 %"
    assert busy_box_warning(93.2, top, [0], 5.0, 3) == (
        "timings unreliable: the box was busy, not squall: other processes used 93% of all its cores (the "
        "busiest, in % of one core: python3 (pid 123) 95 %, node (pid 9) 40 %), and squall's event loop "
        "waited for a core (worker 0: "
        "timer lateness p99 over 5 ms for 3 s or more while its own CPU stayed under 50%). squall was not "
        "the limit, so the run stays valid, but its latencies include that wait: run on a quieter box for "
        "clean numbers"
    )
    assert busy_box_warning(40.0, [], [0, 1], 5.0, 3).startswith(
        "timings unreliable: the box was busy, not squall: other processes used 40% of all its cores, and "
        "squall's event loop waited for a core (workers 0, 1: "
    )
    assert limit_warning("worker 1 CPU stayed at or above 90% for 3 s", in_process=False) == (
        "generator-limited: worker 1 CPU stayed at or above 90% for 3 s; squall was the limit, so the "
        "numbers describe squall's ceiling, not the target's, and its timings are unreliable (they include "
        "squall's own delay)"
    )
    assert "this process's ceiling" in limit_warning("worker 0 event loop ran late", in_process=True)


def test_the_sampler_takes_in_a_worker_heard_from_after_the_start() -> None:
    import os

    from squall.collector.sampler import Sampler

    pids: dict[int, int] = {}
    sampler = Sampler(pids, None)  # the run started before any worker's hello was read (a busy box)
    assert sampler.sample()["worker_cpu"] == {}
    pids[0] = os.getpid()
    first = sampler.sample()
    assert first["worker_cpu"] == {0: None} and first["worker_rss_mb"][0] > 0  # CPU from the next sample on
    second = sampler.sample()
    assert isinstance(second["worker_cpu"][0], float)


def test_the_sampler_names_the_other_processes_that_used_the_cpu() -> None:
    import os
    import subprocess
    import sys
    import time

    from squall.collector.sampler import Sampler

    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 5: pass"
    burner, worker = (subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2))
    try:
        sampler = Sampler({0: worker.pid}, None)
        time.sleep(0.5)
        top = sampler.top_others(n=10_000)
    finally:
        for p in (burner, worker):
            p.kill()
            p.wait()
    mine = [p for p in top if p["pid"] == burner.pid]
    assert len(mine) == 1 and mine[0]["cpu_pct"] >= 1.0, top
    assert mine[0]["name"].startswith("python"), mine
    assert all(p["pid"] not in (worker.pid, os.getpid()) for p in top)  # squall's own are never "others"
    assert top == sorted(top, key=lambda p: -p["cpu_pct"])
