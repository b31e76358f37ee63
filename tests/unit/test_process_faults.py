"""What keeps a run whole when squall's own processes misbehave: internal errors counted, windows that a
count would stop from shipping, stalls named, the result of a dead collector, unwritten outputs."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import pytest

from squall.collector.collector import Collector, orphan_document
from squall.collector.stalls import Stalls
from squall.engine.recorder import Recorder
from squall.plan.plan import Plan, SelfCheck, assemble
from squall.plan.specs import RequestSpec
from squall.report.invalid import why_not_valid
from squall.report.outputs import OUTPUTS, said_unwritten, write_all
from squall.result.document import Result
from squall.wire import Failed, Progress, Stop, Window, clamp_window, decode, encode

NS = 1_000_000_000


def _plan(workers: int = 2) -> Plan:
    return assemble(
        RequestSpec("http://127.0.0.1:1/"),
        workers=workers,
        connections=workers,
        duration_s=5.0,
        transport="raw",
    )


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


def test_an_internal_error_is_one_request_of_kind_internal_with_the_first_traceback_shipped_once() -> None:
    rec = Recorder(0, 10, open_model=False)
    rec.internal(_raise(OverflowError("first")))
    rec.internal(_raise(KeyError("second")))
    rec.internal(_raise(KeyError("third")), counted=False)  # already counted under another kind
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    assert window.error_kinds == {"internal": 2} and window.counters["requests"] == 2
    assert window.counters["errors"] == 2
    sample = window.notes["error_samples"]["internal"]
    assert sample.startswith("Traceback") and "OverflowError: first" in sample
    rec.close_window(2, NS, 2 * NS, 0)
    (later,) = rec.flush()
    assert later.notes == {}  # the sample goes once


def test_a_response_recorded_with_an_error_is_not_counted_twice() -> None:
    rec = Recorder(0, 10, open_model=False)
    with pytest.raises(IndexError):  # a time before its send: the bucket table has no such index
        rec.response(200, 0, 0, 0, -(2**62), 5)
    rec.internal(_raise(IndexError("bad time")))
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    assert window.counters["requests"] == 1 and window.status_codes == {}
    assert window.counters["bytes_in"] == 0


def test_a_window_with_a_count_past_64_bits_still_ships_clamped() -> None:
    w = Window(0, 1, 0, NS, {"output_tokens": 2**70, "ok": 3}, {200: 3}, {"x": -(2**70)}, {}, 0)
    with pytest.raises(OverflowError):
        encode(w)
    back = decode(encode(clamp_window(w)))
    assert isinstance(back, Window)
    assert back.counters == {"output_tokens": 2**64 - 1, "ok": 3} and back.error_kinds == {"x": -(2**63)}


def test_a_worker_whose_windows_stop_is_stalled_once_until_its_next_window() -> None:
    st = Stalls(3 * NS)
    st.start({0, 1}, 0)
    st.heard_from(0, 2 * NS)
    for t in (0.5, 1.0, 1.5, 2.0, 2.5):  # (the collector turns at least every 0.5 s)
        assert st.watch({0, 1}, int(t * NS)) == []
    assert st.watch({0, 1}, 3 * NS) == [1]  # worker 1: nothing since the start
    assert st.watch({0, 1}, int(3.5 * NS)) == []  # said once
    assert st.watch({0}, 5 * NS) == [0]  # worker 0: nothing since 2 s
    st.heard_from(1, int(7.5 * NS))
    st.end(0, 8 * NS)  # (worker 0 finished)
    assert st.doc({1: 101}, measure_start=0) == [
        {"worker": 1, "pid": 101, "at_s": 0.0, "for_s": 7.5},
        {"worker": 0, "pid": None, "at_s": 2.0, "for_s": 6.0},
    ]


def test_a_watcher_held_up_itself_calls_no_worker_stalled() -> None:
    st = Stalls(3 * NS)
    st.start({0, 1}, 0)
    assert st.watch({0, 1}, 0) == []
    assert st.watch({0, 1}, 4 * NS) == []  # not asked for 4 s (a slow write, a busy box): clocks restart
    assert st.watch({0, 1}, 5 * NS) == [] and st.watch({0, 1}, 6 * NS) == []
    assert st.watch({0, 1}, 7 * NS) == [0, 1]  # 3 s since the restart


def test_a_stall_makes_the_run_invalid_and_says_why() -> None:
    c = Collector(_plan(), [], None, lambda _p, _t: [])
    c.pids = {1: 101}
    c.stalls.start({0, 1}, 0)
    c.stalls.watch({0, 1}, 3 * NS)
    c.stalls.heard_from(1, 5 * NS)
    c.stalls.heard_from(0, 5 * NS)
    doc = c.document()
    assert doc["valid"] is False and doc["generator_limited"] is True
    assert [s["worker"] for s in doc["stalled"]] == [0, 1] and doc["self_check"]["stalled"] == [0, 1]
    assert any("worker 1 stalled: it sent no window for 5.0 s" in r for r in doc["self_check"]["reasons"])
    assert any(why.startswith("worker 1 stalled") for why in why_not_valid(doc))


def test_a_dead_collectors_result_keeps_its_last_totals_and_is_invalid(check_result: Any) -> None:
    plan = _plan()
    rec = Recorder(0, 10, open_model=False)
    for _ in range(5):
        rec.response(200, 0, 0, 1000, 2_000_000, 10)
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    live = Collector(plan, [], None, lambda _p, _t: [])
    live.agg.add(window)
    agg = live.agg
    progress = Progress(
        dict(agg.counters),
        dict(agg.status_codes),
        dict(agg.error_kinds),
        {k: h.encode() for k, h in agg.hists.items()},
        agg.t_first,
        agg.t_last,
    )
    progress = decode(encode(progress))  # type: ignore[assignment]
    doc = orphan_document(plan, {0: 10, 1: 11}, 1.0, 2.0, "killed by signal 9", progress)
    check_result(doc)
    assert doc["valid"] is False and doc["meta"]["stop_reason"] == "collector lost"
    assert doc["summary"]["requests"] == 5 and doc["summary"]["latency_ms"]["max"] > 1.9
    assert set(doc["workers_lost"]) == {"0", "1"} and Result(doc).exit_code() == 3
    assert why_not_valid(doc)[0].startswith("the collector process died")
    bare = orphan_document(plan, {}, 1.0, 2.0, "exit code 1")
    assert bare["summary"]["requests"] == 0 and Result(bare).exit_code() == 3


def test_a_file_that_cannot_be_written_is_an_error_line_not_a_written_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"thresholds": [], "unwritten": {"-o": "/x/r.json: No such file or directory"}}
    assert said_unwritten(doc, "/x/r.json") is True
    assert said_unwritten({}, str(tmp_path / "r.json")) is False
    failed = write_all(doc, {"--junit": tmp_path / "no" / "j.xml", "--html": None})
    assert failed == ["--junit"] and "--junit" in OUTPUTS
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "squall: error: could not write -o /x/r.json: No such file or directory",
        f"result written to {tmp_path / 'r.json'}",
        f"squall: error: could not write --junit {tmp_path / 'no' / 'j.xml'}: No such file or directory",
    ]


def test_a_worker_silent_for_the_stuck_limit_is_stuck_once_and_sooner_when_the_others_have_ended() -> None:
    st = Stalls(3 * NS, stuck_ns=60 * NS, alone_ns=10 * NS)
    st.start({0, 1, 2}, 0)
    st.heard_from(1, 5 * NS)
    assert st.stuck({0, 1, 2}, 59 * NS) == []  # others still run: only the 60 s rule
    assert st.stuck({0, 1, 2}, 60 * NS) == [(0, 60 * NS, False), (2, 60 * NS, False)]
    assert st.stuck({0, 1, 2}, 64 * NS) == []  # each is found once
    assert st.stuck({0, 1, 2}, 65 * NS) == [(1, 60 * NS, False)]
    st = Stalls(3 * NS, stuck_ns=60 * NS, alone_ns=10 * NS)
    st.start({0, 1}, 0)
    st.heard_from(0, 4 * NS)
    assert st.stuck({0, 1}, 13 * NS) == []  # worker 1 still runs: worker 0 may yet send
    assert st.stuck({0}, int(13.9 * NS)) == []  # worker 1 ended; worker 0 silent 9.9 s
    assert st.stuck({0}, 14 * NS) == [(0, 10 * NS, True)]


def test_a_lone_worker_or_a_heard_one_is_not_stuck_by_the_alone_rule() -> None:
    st = Stalls(3 * NS, stuck_ns=60 * NS, alone_ns=10 * NS)
    st.start({0}, 0)  # -w 1: no other worker finished, so only the 60 s rule
    assert st.stuck({0}, 30 * NS) == [] and st.stuck({0}, 60 * NS) == [(0, 60 * NS, False)]
    st = Stalls(3 * NS, stuck_ns=60 * NS, alone_ns=10 * NS)
    st.start({0, 1}, 0)
    for t in range(1, 30):  # windows every second: never stuck, whoever ended
        st.heard_from(0, t * NS)
        assert st.watch({0}, t * NS) == [] and st.stuck({0}, t * NS) == []
    assert Stalls(3 * NS).stuck({0}, 10**6 * NS) == []  # no limits given: nobody


def test_a_watcher_held_up_itself_kills_nobody() -> None:
    st = Stalls(3 * NS, stuck_ns=60 * NS, alone_ns=10 * NS)
    st.start({0, 1}, 0)
    st.watch({0}, 0)
    st.watch({0}, 20 * NS)  # the collector was not scheduled for 20 s: nobody could have been heard
    assert st.stuck({0}, 20 * NS) == []
    assert st.stuck({0}, 30 * NS) == [(0, 10 * NS, True)]


def test_a_stuck_worker_is_handed_to_the_supervisor_to_kill_with_its_reason() -> None:
    mine, sup = mp.Pipe(duplex=True)
    plan = replace(_plan(), self_check=SelfCheck(stuck_s=60.0, stuck_alone_s=10.0))
    c = Collector(plan, [], sup, lambda _p, _t: [])
    c.live = {0, 1}
    c.t0 = 0
    c.stalls.start({0, 1}, perf_counter_ns() - 11 * NS)
    c.done[1] = "requests"
    c.live.discard(1)
    c._kill_stuck()
    msg = decode(mine.recv_bytes())
    assert msg == Failed(0, "stuck: no window for 11 s, the last worker running; killed")
    c._lose(0, c.killed[0])  # (its pipe's EOF, once killed)
    doc = c.document()
    assert doc["workers_lost"] == {"0": "stuck: no window for 11 s, the last worker running; killed"}
    assert doc["meta"]["stop_reason"] == "requests" and Result(doc).exit_code() == 3
    c._kill_stuck()
    assert not mine.poll()  # asked once


def test_a_run_a_signal_stopped_says_so_though_a_worker_had_finished_its_count_before() -> None:
    mine, sup = mp.Pipe(duplex=True)
    c = Collector(_plan(), [], sup, lambda _p, _t: [])
    c.live = {0, 1}
    c.done[1] = "requests"  # worker 1 finished its share
    c.live.discard(1)
    mine.send_bytes(encode(Stop("terminated", 2.0)))
    c._on_supervisor()
    mine.send_bytes(encode(Failed(0, "did not stop within 5 s of the stop; killed")))
    c._on_supervisor()
    c._lose(0, c.killed[0])  # worker 0 never answered the stop: killed
    doc = c.document()
    assert doc["meta"]["stop_reason"] == "terminated"
    assert doc["workers_lost"] == {"0": "did not stop within 5 s of the stop; killed"}


def test_a_stop_after_every_worker_had_its_own_reason_leaves_their_reason() -> None:
    mine, sup = mp.Pipe(duplex=True)
    c = Collector(_plan(), [], sup, lambda _p, _t: [])
    c.live = {0}
    mine.send_bytes(encode(Stop("interrupted", 2.0)))
    c._on_supervisor()
    c.done[0] = "duration"  # it was in its drain: it ended on its deadline, not on the Ctrl-C
    c.live.discard(0)
    assert c.document()["meta"]["stop_reason"] == "duration"


class _Broken:
    """An answer reader whose end raises (a bug in squall's reading of a stream)."""

    retry_after = b""

    def finish(self, now: int) -> str | None:
        raise KeyError("a bug")


def test_an_llm_answer_whose_stream_record_raises_is_one_internal_error() -> None:
    rec = Recorder(0, 10, open_model=False, llm=True)
    rec.answer(200, 0, 0, 1_000, 2_000, 5, _Broken(), False)  # counted ok, then turned into an error
    with pytest.raises(IndexError):  # the response itself cannot be recorded: nothing is counted
        rec.answer(200, 0, 0, 0, -(2**62), 5, _Broken(), False)
    rec.internal(_raise(IndexError("bad time")))  # as the driver counts it
    rec.close_window(1, 0, NS, 0)
    (window,) = rec.flush()
    c = window.counters
    assert (c["requests"], c["ok"], c["errors"]) == (2, 0, 2) and window.error_kinds == {"internal": 2}
