"""Per-key parts: the key's short name, the recorder's key parts, and summary.by_key from them."""

import hashlib
from pathlib import Path
from types import SimpleNamespace

from squall.collector.aggregate import Aggregate, keys_summary
from squall.engine.llm.apis import APIS
from squall.engine.llm.history import KeyReader, SessionReader, TurnReader, key_part
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import make_counter
from squall.engine.recorder import Recorder
from squall.engine.workload.journey import KEY_PARTS, JourneyWorkload
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import RequestSpec
from squall.wire import decode, encode

MS = 1_000_000


def test_a_key_is_named_by_a_stable_short_hash() -> None:
    assert key_part("sk-abc") == hashlib.sha256(b"sk-abc").hexdigest()[:8]
    assert key_part("Bearer sk-abc") == key_part("bearer  sk-abc") == key_part("sk-abc")  # (as llm sends K)
    assert len(key_part("x")) == 8 and key_part("a") != key_part("b")


def reading() -> Reading:
    return Reading(APIS["chat"], True, make_counter(), None, None)


def test_answers_and_failures_go_to_their_keys_part_and_not_without_a_key() -> None:
    rec = Recorder(0, llm=True, open_model=False)
    for _ in range(3):
        rec.answer(429, 0, 0, 5 * MS, 6 * MS, 10, KeyReader(reading(), 4, "aaaa0000"), False)
    rec.failure("timeout", KeyReader(reading(), 4, "bbbb1111"))
    rec.failure("connect", KeyReader(reading(), 4, None))  # (one key: no part)
    rec.answer(500, 0, 0, 5 * MS, 6 * MS, 10, AnswerReader(reading(), 4), False)
    rec.close_window(1, 0, 1_000_000_000, 0)
    window = decode(encode(rec.flush()[-1]))
    assert window.counters["requests"] == 6
    assert set(window.parts) == {"key"} and set(window.parts["key"]) == {"aaaa0000", "bbbb1111"}
    parts = {}
    for name, part in window.parts["key"].items():
        parts["key", name] = agg = Aggregate(seconds=False)
        agg.add(part)
    got = keys_summary(parts, llm=True)
    assert got["aaaa0000"] | {"latency_ms": None, "ttft_ms": None} == {
        "requests": 3,
        "ok": 0,
        "errors": 3,
        "rate_limited": 3,
        "error_kinds": {"http_429": 3},
        "latency_ms": None,
        "ttft_ms": None,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    assert got["aaaa0000"]["latency_ms"]["p50"] is not None  # a 429 is an answer: it has a latency
    assert (got["bbbb1111"]["requests"], got["bbbb1111"]["error_kinds"]) == (1, {"timeout": 1})
    assert got["bbbb1111"]["latency_ms"] == {"p50": None, "p99": None}
    assert "ttft_ms" not in keys_summary(parts, llm=False)["aaaa0000"]


def test_key_parts_merge_like_one_recorder() -> None:
    whole, halves = (
        Recorder(0, llm=True, open_model=False),
        [Recorder(w, llm=True, open_model=False) for w in (0, 1)],
    )
    for i in range(10):
        for r in (whole, halves[i % 2]):
            r.answer(
                200 if i % 3 else 429,
                0,
                0,
                i * MS,
                (i + 1) * MS,
                10,
                KeyReader(reading(), 4, "cccc2222"),
                False,
            )
    aggs = []
    for r in (whole, *halves):
        r.close_window(1, 0, 1_000_000_000, 0)
        agg = Aggregate(seconds=False)
        agg.add(r.flush()[-1].parts["key"]["cccc2222"])
        aggs.append(agg)
    aggs[1].merge(aggs[2])
    one, merged = keys_summary({("key", "x"): aggs[0]}, True), keys_summary({("key", "x"): aggs[1]}, True)
    assert one == merged and one["x"]["requests"] == 10 and one["x"]["rate_limited"] == 4


def test_only_readers_with_a_key_or_a_turn_are_counted_in_parts() -> None:
    assert not SessionReader(reading(), 4, None).parted and not KeyReader(reading(), 4, None).parted
    assert SessionReader(reading(), 4, None, "dddd3333").parted and TurnReader(reading(), 4, 2).parted
    rec = Recorder(0, llm=True, open_model=False)
    rec.answer(200, 0, 0, 5 * MS, 6 * MS, 10, SessionReader(reading(), 4, None), False)
    rec.failure("timeout", SessionReader(reading(), 4, None))
    rec.answer(200, 0, 0, 5 * MS, 6 * MS, 10, TurnReader(reading(), 4, 2), False)
    assert set(rec.parts) == {("turn", "2")}


def test_a_worker_keeps_256_keys_apart_and_stores_no_later_one(tmp_path: Path) -> None:
    (tmp_path / "keys.csv").write_text("key\nsk-a\n")
    (tmp_path / "s.yaml").write_text(
        "base_url: http://127.0.0.1:1\ndata: {csv: keys.csv, per: iteration}\nscenarios:\n  - name: one\n"
        "    steps:\n      - name: ask\n"
        '        request: {path: /, headers: {Authorization: "Bearer {{key}}"}}\n'
    )
    sc = load_scenario(tmp_path / "s.yaml")
    rec = Recorder(0, llm=False, open_model=False)
    w = JourneyWorkload(
        assemble(RequestSpec(sc.base_url), scenario=sc, workers=1), 0, rec, SimpleNamespace(name="raw")
    )  # type: ignore[arg-type]
    step = sc.journeys[0].steps[0]
    got = [w.key_recorder(step, {"key": f"sk-{i}"}) for i in range(KEY_PARTS + 44)]
    assert len(w.key_names) == KEY_PARTS and len({id(r) for r in got}) == KEY_PARTS + 1
    assert got[-1] is got[KEY_PARTS] is rec.parts["key", "other"] and rec.notes == {"keys_pooled": KEY_PARTS}
