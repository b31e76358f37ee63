"""What keeps a run whole when squall's own processes misbehave: internal errors counted, windows that a
count would stop from shipping, stalls named, the result of a dead collector, unwritten outputs."""

from __future__ import annotations

from pathlib import Path
from time import perf_counter_ns
from typing import Any

import pytest

from squall.collector.collector import Collector, orphan_document
from squall.engine.recorder import Recorder
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec
from squall.report.invalid import why_not_valid
from squall.report.outputs import OUTPUTS, said_unwritten, write_all
from squall.result.document import Result
from squall.wire import Progress, Window, clamp_window, decode, encode

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


def test_a_worker_whose_windows_stop_is_named_once_then_its_stall_is_kept() -> None:
    plan = _plan()
    warned: list[str] = []

    class Warnings:
        def on_warning(self, text: str) -> None:
            warned.append(text)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    c = Collector(plan, [], None, lambda _p, _t: [Warnings()])  # type: ignore[list-item]
    c.live = {0, 1}
    c.pids = {0: 100, 1: 101}
    t0 = perf_counter_ns() - 10 * NS
    c.t0, c.measure_start = t0, t0
    c.heard = {0: t0, 1: t0}
    c.last_turn = t0 + 2 * NS
    c.heard[0] = t0 + 2 * NS  # worker 0 sent a window at 2 s; worker 1 never did after the start
    c._watch_stalls(t0 + int(2.4 * NS))  # (the collector's own loop turns every 0.5 s at most)
    assert c.stalling == {} and warned == []
    c.last_turn = t0 + int(2.9 * NS)
    c._watch_stalls(t0 + 3 * NS)
    assert c.stalling == {1: t0} and warned == [
        "worker 1 (pid 101) stalled: no window for 3 s (suspended, or its event loop is blocked)"
    ]
    c.last_turn = t0 + int(3.4 * NS)
    c._watch_stalls(t0 + int(3.5 * NS))
    assert len(warned) == 1  # said once
    c._unstall(1, t0 + int(7.5 * NS))
    assert c.stalls == [{"worker": 1, "pid": 101, "at_s": 0.0, "for_s": 7.5}]
    doc = c.document()
    assert doc["valid"] is False and doc["generator_limited"] is True
    assert doc["stalled"] == c.stalls and doc["self_check"]["stalled"] == [1]
    assert any("worker 1 stalled" in why for why in why_not_valid(doc))


def test_a_collector_held_up_itself_does_not_call_its_workers_stalled() -> None:
    c = Collector(_plan(), [], None, lambda _p, _t: [])
    c.live = {0, 1}
    t0 = perf_counter_ns() - 10 * NS
    c.t0 = t0
    c.heard = {0: t0, 1: t0}
    c.last_turn = t0  # the collector did not turn for 4 s (a slow checkpoint write, a busy box)
    c._watch_stalls(t0 + 4 * NS)
    assert c.stalling == {}


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
