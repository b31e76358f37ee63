"""The collector driven through fake pipes: encoded Hello/Window/Done/Failed in, one result document out."""

from __future__ import annotations

import random
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from squall.collector.aggregate import Aggregate
from squall.collector.collector import Collector
from squall.collector.result import Outline, build_summary
from squall.collector.sinks import OutFileSink, Sink, Totals
from squall.engine.recorder import Recorder
from squall.plan.plan import Plan, assemble
from squall.plan.specs import RequestSpec
from squall.report.json import read_json
from squall.result.document import SCHEMA, Result
from squall.result.merge import combine, merge
from squall.wire import Done, Failed, Final, Hello, Message, Progress, Window, decode, encode

NS = 1_000_000_000
STATUSES = (200, 200, 200, 201, 404, 429, 500, 503)


class Recording(Sink):
    """A sink that keeps what it was fed."""

    def __init__(self) -> None:
        self.seconds: list[dict[str, Any]] = []
        self.finals: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.ticks = 0

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        self.seconds.append(entry)

    def on_tick(self, totals: Totals, final: bool) -> None:
        self.ticks += 1

    def on_warning(self, text: str) -> None:
        self.warnings.append(text)

    def on_final(self, doc: dict[str, Any]) -> None:
        self.finals.append(doc)


def _plan(workers: int, **kw: Any) -> Plan:
    return assemble(
        RequestSpec("http://127.0.0.1:1/"), workers=workers, connections=workers, duration_s=2.0, **kw
    )


def _record(rec: Recorder, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        status, lat, nin = rng.choice(STATUSES), int(rng.lognormvariate(7, 1)), rng.randrange(100, 5000)
        if rng.random() < 0.1:
            rec.failure("timeout")
        else:
            rec.response(status, 0, lat // 2 * 1000, lat * 1000, lat * 1000 + 7000, nin)


def _windows(worker: int, seconds: int, single: Recorder | None = None, **extra: Any) -> list[Window]:
    """One worker's windows for seconds 1..N; `single` records every sample too, as one recorder would."""
    rec = Recorder(worker, 10, open_model=False)
    rec.parts["step", "login"] = Recorder(worker, 0, open_model=False, table=rec.table)
    out = []
    for seq in range(1, seconds + 1):
        for r in (rec, single) if single is not None else (rec,):
            _record(r, worker * 100 + seq, 300)
        _record(rec.parts["step", "login"], 7 + seq, 20)
        rec.custom["carts"] = worker + seq
        for lag in extra.get("lags_us", ()):
            rec.loop_lag(lag)
        rec.close_window(seq, (seq - 1) * NS, seq * NS, 1)
        out.extend(rec.flush())
    return out


def _drive(plan: Plan, scripts: list[list[Message]], sinks: list[Sink]) -> tuple[dict[str, Any], Collector]:
    """Run a collector on pipes that carry each worker's script, then EOF; return the Final it sends."""
    ends = [Pipe(duplex=False) for _ in scripts]
    sup, sup_peer = Pipe(duplex=True)
    collector = Collector(plan, [r for r, _ in ends], sup_peer, lambda _plan, _totals: sinks)

    def feed(w: Connection, script: list[Message]) -> None:
        for msg in script:
            w.send_bytes(encode(msg))
        w.close()

    feeders = [threading.Thread(target=feed, args=(w, s)) for (_, w), s in zip(ends, scripts, strict=True)]
    for t in feeders:
        t.start()
    collector.run()
    for t in feeders:
        t.join(5)
    final = decode(sup.recv_bytes())
    while isinstance(final, Progress):  # (the totals after each second, for the supervisor)
        final = decode(sup.recv_bytes())
    assert isinstance(final, Final)
    return final.result, collector


def test_the_merged_result_equals_one_recorder_that_saw_every_sample() -> None:
    single = Recorder(0, 10, open_model=False)
    scripts: list[list[Message]] = [
        [Hello(w, 4000 + w), *_windows(w, 2, single), Done(w, 2, "duration")] for w in range(3)
    ]
    sink = Recording()
    doc, _ = _drive(_plan(3), scripts, [sink])

    ref = Aggregate()
    ref.add(single.snapshot(1, 0, NS, 0))
    want = build_summary(ref, None, 2.0, Outline())
    got = doc["summary"]
    for key in (
        "requests",
        "ok",
        "errors",
        "error_kinds",
        "status_codes",
        "bytes_in",
        "latency_ms",
        "ttfb_ms",
    ):
        assert got[key] == want[key], key
    assert got["requests"] == 3 * 2 * 300
    assert got["duration_s"] == 2.0 and got["rps"] == 900.0
    assert doc["schema"] == SCHEMA and doc["valid"] is True and doc["workers_lost"] == {}
    assert doc["meta"]["stop_reason"] == "duration" and doc["meta"]["pids"] == {
        "0": 4000,
        "1": 4001,
        "2": 4002,
    }
    # Typed parts and custom counts come out in the document's unchanged shape.
    assert list(doc["parts"]) == ["step:login"]
    assert doc["parts"]["step:login"]["counters"]["requests"] == 3 * 2 * 20
    assert got["counters"] == {"carts": (0 + 1) + (0 + 2) + (1 + 1) + (1 + 2) + (2 + 1) + (2 + 2)}
    assert doc["counters"]["custom:carts"] == 15
    # The sinks saw both seconds, then the same final document the supervisor got.
    assert [e["t"] for e in sink.seconds] == [1.0, 2.0]
    assert [e["requests"] for e in sink.seconds] == [900, 900]
    assert sink.finals == [doc] and sink.warnings == [] and sink.ticks >= 2


def test_a_lost_worker_makes_the_result_not_valid() -> None:
    scripts: list[list[Message]] = [
        [Hello(0, 4000), *_windows(0, 2), Done(0, 2, "duration")],
        [Hello(1, 4001), *_windows(1, 1)],  # then its pipe closes: the process died
    ]
    sink = Recording()
    doc, _ = _drive(_plan(2), scripts, [sink])
    assert doc["workers_lost"] == {"1": "exited without finishing"}
    assert doc["valid"] is False
    assert sink.warnings == ["worker 1 (pid 4001) was lost: exited without finishing"]
    assert doc["summary"]["requests"] == 2 * 300 + 300  # what it recorded before it died still counts
    assert Result(doc).exit_code() == 3 and Result(doc).usage_error is None
    assert doc["self_check"]["cpu_workers"] == [] and doc["self_check"]["loop_lag_workers"] == []


def test_workers_that_refuse_the_input_give_a_usage_error() -> None:
    why = "mod:fn(...) failed: TypeError: boom"
    scripts: list[list[Message]] = [[Hello(w, 4000 + w), Failed(w, why, usage=True)] for w in range(2)]
    doc, _ = _drive(_plan(2), scripts, [])
    assert doc["usage_error"] == why
    assert doc["workers_lost"] == {"0": why, "1": why}
    # A bug (usage False) in one worker is not a usage error.
    scripts = [
        [Hello(0, 4000), Failed(0, why, usage=True)],
        [Hello(1, 4001), Failed(1, "Traceback\nKeyError: 1")],
    ]
    doc, _ = _drive(_plan(2), scripts, [])
    assert "usage_error" not in doc


def test_a_late_event_loop_is_judged_from_the_window_field() -> None:
    scripts: list[list[Message]] = [
        [Hello(0, 4000), *_windows(0, 3, lags_us=[20_000] * 10), Done(0, 3, "duration")]
    ]
    doc, collector = _drive(_plan(1, loop_lag_limit_ms=5.0), scripts, [])
    assert collector.lag == {0: [20.0, 20.0, 20.0]}
    assert doc["generator_limited"] is True and doc["valid"] is False
    assert doc["self_check"]["loop_lag_workers"] == [0]
    reasons = doc["self_check"]["reasons"]  # what hunt's levels say as limited_why: the warnings, typed
    assert reasons == [w for w in doc["warnings"] if w.startswith("generator-limited: ")]
    assert [r.split(";")[0] for r in reasons] == [
        "generator-limited: worker 0 event loop ran late (timer lateness p99 > 5 ms) for 3 s"
    ]
    assert "loop_lag_p99_us" not in doc["counters"]


def test_the_out_file_is_the_final_document(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    scripts: list[list[Message]] = [[Hello(0, 4000), *_windows(0, 1), Done(0, 1, "duration")]]
    doc, _ = _drive(_plan(1), scripts, [OutFileSink(str(out))])
    assert read_json(str(out)) == doc
    doc, _ = _drive(_plan(1), scripts, [OutFileSink(str(tmp_path / "no" / "r.json"))])
    assert doc["warnings"][-1].startswith(f"could not write -o {tmp_path / 'no' / 'r.json'}: ")
    assert doc["unwritten"] == {"-o": f"{tmp_path / 'no' / 'r.json'}: No such file or directory"}


def test_merge_assembles_with_the_same_build_result() -> None:
    scripts: list[list[Message]] = [
        [Hello(w, 4000 + w), *_windows(w, 2), Done(w, 2, "duration")] for w in range(2)
    ]
    doc, _ = _drive(_plan(2), scripts, [])
    one = combine([doc], ["a.json"])
    assert one["summary"] == doc["summary"]
    assert one["counters"] == doc["counters"] and one["histograms"] == doc["histograms"]
    assert one["parts"] == doc["parts"]
    two = merge([doc, doc], ["a.json", "b.json"])
    assert two["counters"]["requests"] == 2 * doc["counters"]["requests"]
    assert two["counters"]["custom:carts"] == 2 * doc["counters"]["custom:carts"]
    assert two["summary"]["counters"] == {"carts": 2 * doc["summary"]["counters"]["carts"]}
    assert two["parts"]["step:login"]["counters"]["requests"] == 2 * 2 * 2 * 20
