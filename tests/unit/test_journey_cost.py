"""A scenario's cost per step does not grow with the number of steps: calls, allocations and histograms are
counted (never timed), for one iteration, for a window of many steps and for the collector's merge of it."""

import contextlib
import sys
import tracemalloc
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from squall.collector.aggregate import Aggregate
from squall.engine.recorder import Recorder
from squall.engine.transport.base import Answer, Channel
from squall.engine.workload.journey import JourneyWorkload
from squall.hist import index_table
from squall.plan.plan import Plan
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import RequestSpec
from squall.wire import decode, encode

TABLE = index_table(1 << 14)


class Headers(dict):  # type: ignore[type-arg]
    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class InstantTransport:
    """Answers every request at once with a small JSON body (no loop, no socket)."""

    name = "fake"

    def __init__(self) -> None:
        self.requests = 0

    async def request(self, req: Any, reader: Any) -> Answer:
        self.requests += 1
        now = perf_counter_ns()
        return Answer(200, now, now, 20, Headers({"x-id": "7"}), b'{"id": 7, "ok": true}')

    def classify(self, exc: BaseException) -> str:
        return "other"


class Owner:
    def __init__(self) -> None:
        self.responses = 0
        self.failures = 0

    def on_response(self, ch: Channel, status: int, first_ns: int, done_ns: int, nbytes: int) -> None:
        self.responses += 1

    def on_failure(self, ch: Channel, exc: BaseException) -> None:
        self.failures += 1


def scenario(tmp_path: Path, steps: int) -> Plan:
    """A journey of `steps` steps, each with a template, a JSON body, an extract and an expect."""
    lines = ["base_url: http://127.0.0.1:1", "scenarios:", "  - name: long", "    steps:"]
    for i in range(steps):
        var = "{{id}}" if i else "{{user}}"
        lines.append(
            f"      - {{name: s{i}, request: {{method: POST, path: '/items/{var}', json: {{n: '{var}'}}}},"
            f" extract: {{id: '$.id'}}, expect: {{status: 200, body: ok}}}}"
        )
    path = tmp_path / f"s{steps}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return Plan(RequestSpec("http://127.0.0.1:1/"), scenario=load_scenario(path))


def workload(tmp_path: Path, steps: int) -> tuple[JourneyWorkload, InstantTransport]:
    http = InstantTransport()
    rec = Recorder(0, open_model=False, table=TABLE)
    return JourneyWorkload(scenario(tmp_path, steps), 0, rec, http), http


def calls_for_one_iteration(tmp_path: Path, steps: int) -> int:
    """Python and C calls made by one whole iteration of a journey of `steps` steps."""
    t, http = workload(tmp_path, steps)
    owner = Owner()
    ch = t.channel(owner)
    ch.start = 1  # measured (measure_start is 0)
    counted = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal counted
        if event in ("call", "c_call"):
            counted += 1

    coro = ch.go()  # type: ignore[attr-defined]
    sys.setprofile(count)
    try:
        coro.send(None)  # runs to the end: the transport never suspends
    except StopIteration:
        pass
    finally:
        sys.setprofile(None)
    assert (http.requests, owner.responses, owner.failures) == (steps, 1, 0)
    assert t.rec.status[200] == steps and t.parts["journey", "long"].status[200] == 1
    return counted


def test_the_calls_an_iteration_makes_grow_linearly_with_its_steps(tmp_path: Path) -> None:
    calls_for_one_iteration(tmp_path, 5)  # (the first requests fill caches: yarl's, the JSON path's)
    calls = {n: calls_for_one_iteration(tmp_path, n) for n in (10, 20, 200, 210)}
    per_step_short = (calls[20] - calls[10]) / 10
    per_step_long = (calls[210] - calls[200]) / 10
    # The 201st step costs what the 11th does (give or take a cache's bookkeeping: a few calls).
    assert abs(per_step_long - per_step_short) <= 0.05 * per_step_short, calls
    assert abs(calls[200] - calls[10] - 190 * per_step_short) <= 0.05 * calls[200], calls


def test_a_step_recorder_holds_its_counts_sparsely(tmp_path: Path) -> None:
    scenario(tmp_path, 1)  # (load the modules outside the measured part)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        t, _ = workload(tmp_path, 300)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(t.parts) == 301
    assert used / 300 < 40_000, used  # a dense recorder of 4 histograms was 1.5 MB a step


def window_of(tmp_path: Path, steps: int) -> tuple[bytes, int]:
    """One iteration's window (encoded for the wire) and the calls closing and encoding it took."""
    t, _ = workload(tmp_path, steps)
    ch = t.channel(Owner())
    ch.start = 1
    coro = ch.go()  # type: ignore[attr-defined]
    with contextlib.suppress(StopIteration):  # runs to the end: the transport never suspends
        coro.send(None)
    counted = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal counted
        if event in ("call", "c_call"):
            counted += 1

    sys.setprofile(count)
    try:
        t.rec.close_window(0, 0, 1_000_000_000, 0)
        window = t.rec.flush()[-1]
    finally:
        sys.setprofile(None)
    return encode(window), counted


def test_a_window_of_many_steps_costs_the_same_per_step(tmp_path: Path) -> None:
    window_of(tmp_path, 5)
    sizes = {n: window_of(tmp_path, n) for n in (10, 20, 200, 210)}
    calls = {n: c for n, (_, c) in sizes.items()}
    short, long = calls[20] - calls[10], calls[210] - calls[200]
    assert abs(long - short) <= 0.05 * short, calls
    blob, _ = sizes[200]
    window = decode(blob)
    assert set(window.parts["step"]) == {f"s{i}" for i in range(200)}
    assert all(w.counters["requests"] == 1 for w in window.parts["step"].values())


def test_the_collector_builds_one_total_per_histogram_not_one_per_window(tmp_path: Path) -> None:
    from squall.hist import new_histogram

    blob, _ = window_of(tmp_path, 50)
    window = decode(blob)
    made = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal made
        if event == "call" and frame.f_code is new_histogram.__code__:
            made += 1

    parts: dict[tuple[str, str], Aggregate] = {}
    sys.setprofile(count)
    try:
        for _ in range(20):  # twenty seconds of the same step windows
            for kind, named in window.parts.items():
                for name, w in named.items():
                    parts.setdefault((kind, name), Aggregate(seconds=False)).add(w)
    finally:
        sys.setprofile(None)
    histograms = sum(len(w.histograms) for named in window.parts.values() for w in named.values())
    assert made == histograms  # once each, where every window used to build (and drop) one more
    assert all(p.counters["requests"] == 20 for (kind, _), p in parts.items() if kind == "step")
