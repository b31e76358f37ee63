"""compare's rows per API key (summary.by_key, with the keys' histograms from `parts`), on made-up results."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from squall.hist import Hist
from squall.report.tables import print_compare
from squall.result.compare import compare


def _blob(values: dict[int, int]) -> str:
    """A histogram of `values` ({µs: count}), encoded as a result keeps it."""
    h = Hist()
    for v, n in values.items():
        for _ in range(n):
            h.record(v)
    return h.encode().decode()


def _key(requests: int, errors: int, limited: int, p99: float, ttft_p99: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "requests": requests,
        "ok": requests - errors,
        "errors": errors,
        "rate_limited": limited,
        "error_kinds": {"http_429": limited} if limited else {},
        "latency_ms": {"p50": 20.0, "p99": p99},
    }
    if ttft_p99 is not None:
        entry["ttft_ms"] = {"p50": 5.0, "p99": ttft_p99}
    return entry


def doc(keys: dict[str, tuple[dict[str, Any], dict[str, str] | None]] | None) -> dict[str, Any]:
    """A result of 3,000 answers of 20 ms; `keys`: {name: (its by_key entry, its part histograms or None)}."""
    out: dict[str, Any] = {
        "meta": {"url": "http://127.0.0.1:1/v1/chat/completions", "model": "closed"},
        "summary": {"requests": 3000, "errors": 0, "rps": 300.0},
        "histograms": {"latency": _blob({20_000: 3000})},
        "timeseries": [],
    }
    if keys is not None:
        out["summary"]["by_key"] = {name: entry for name, (entry, _) in keys.items()}
        out["parts"] = {f"key:{n}": {"histograms": h} for n, (_, h) in keys.items() if h is not None}
    return out


def test_a_key_whose_tail_and_429s_grew_has_rows_of_its_own() -> None:
    # Key aaaaaaaa: 2,000 answers, its slowest 2 % at 30 ms, then at 45 ms (TTFT 10 -> 10 ms).
    # Key bbbbbbbb: 500 answers (too few for a p99), none failed, then 50 failed, 20 of them 429s.
    # cccccccc is only in the baseline, dddddddd only in the current result.
    a = {"latency": _blob({20_000: 1960, 30_000: 40}), "ttft": _blob({10_000: 2000})}
    a2 = {"latency": _blob({20_000: 1960, 45_000: 40}), "ttft": _blob({10_000: 2000})}
    b = {"latency": _blob({20_000: 500}), "ttft": _blob({10_000: 500})}
    b2 = {"latency": _blob({20_000: 450}), "ttft": _blob({10_000: 450})}
    base = doc(
        {
            "aaaaaaaa": (_key(2000, 0, 0, 30.0, 10.0), a),
            "bbbbbbbb": (_key(500, 0, 0, 20.0, 10.0), b),
            "cccccccc": (_key(500, 0, 0, 20.0, 10.0), b),
        }
    )
    cur = doc(
        {
            "aaaaaaaa": (_key(2000, 0, 0, 45.0, 10.0), a2),
            "bbbbbbbb": (_key(500, 50, 20, 20.0, 10.0), b2),
            "dddddddd": (_key(500, 0, 0, 20.0, 10.0), b),
        }
    )
    out = compare(base, cur)
    keyed = [(r["metric"], r["baseline"], r["current"], r["change_pct"], r["verdict"], r["regression"])
             for r in out["rows"] if "key" in r]  # fmt: skip
    assert keyed == [
        ("key aaaaaaaa latency p99 ms", 30.015, 45.023, 50.002, "worse", False),  # shown, never failing
        ("key aaaaaaaa ttft p99 ms", 10.007, 10.007, 0.0, "same", False),
        ("key aaaaaaaa error rate %", 0.0, 0.0, None, "same", False),
        ("key aaaaaaaa 429 share %", 0.0, 0.0, None, "same", False),
        ("key bbbbbbbb latency p99 ms", 20.015, 20.015, 0.0, "too few samples", False),
        ("key bbbbbbbb ttft p99 ms", 10.007, 10.007, 0.0, "too few samples", False),
        ("key bbbbbbbb error rate %", 0.0, 10.0, None, "worse", True),
        ("key bbbbbbbb 429 share %", 0.0, 4.0, None, "worse", True),
    ]
    assert [r["key"] for r in out["rows"] if "key" in r] == ["aaaaaaaa"] * 4 + ["bbbbbbbb"] * 4
    assert out["regression"] is True
    assert out["keys_only"] == {"baseline": ["cccccccc"], "current": ["dddddddd"]}
    # The run's own rows are the ones a compare of the same results without keys gives.
    plain = compare(doc(None), doc(None))
    assert [r for r in out["rows"] if "key" not in r] == plain["rows"]
    console = Console(record=True, width=200)
    print_compare(out, "a.json", "b.json", console)
    text = console.export_text()
    assert "key aaaaaaaa latency p99 ms" in text and "key bbbbbbbb 429 share %" in text
    assert "keys only in the baseline (not compared): cccccccc" in text
    assert "keys only in the current (not compared): dddddddd" in text


def test_results_without_keys_compare_as_before() -> None:
    out = compare(doc(None), doc(None))
    assert "keys_only" not in out and not any("key" in r for r in out["rows"])
    assert [r["metric"] for r in out["rows"]] == [
        "latency p50 ms",
        "latency p90 ms",
        "latency p99 ms",
        "latency p999 ms",
        "req/s",
        "error rate %",
    ]
    assert out["regression"] is False


def test_keys_in_one_result_only_never_fail() -> None:
    entry = _key(500, 500, 500, 20.0, None)  # every request of it a 429
    out = compare(doc(None), doc({"eeeeeeee": (entry, {"latency": _blob({20_000: 500})})}))
    assert out["keys_only"] == {"baseline": [], "current": ["eeeeeeee"]}
    assert out["regression"] is False and not any("key" in r for r in out["rows"])


def test_a_key_without_its_histograms_is_not_judged() -> None:
    # An HTTP run's key (no TTFT); the current result keeps no parts: its p99 is shown, never judged.
    base = doc({"aaaaaaaa": (_key(2000, 0, 0, 30.0, None), {"latency": _blob({20_000: 1960, 30_000: 40})})})
    cur = doc({"aaaaaaaa": (_key(2000, 0, 0, 45.0, None), None)})
    out = compare(base, cur)
    (p99,) = [r for r in out["rows"] if r["metric"] == "key aaaaaaaa latency p99 ms"]
    assert (p99["baseline"], p99["current"], p99["verdict"], p99["regression"]) == (
        30.0,
        45.0,
        "not judged",
        False,
    )
    assert p99["noise"] == "a result keeps no histograms per key (its parts)"
    assert [r["metric"] for r in out["rows"] if "key" in r] == [
        "key aaaaaaaa latency p99 ms",
        "key aaaaaaaa error rate %",
        "key aaaaaaaa 429 share %",
    ]
    assert out["regression"] is False
