"""Long results merge, report and compare in linear work and bounded memory (a 30,000-second merge took 40 s
and 5.8 GB when every second built its own histograms); results whose histograms cannot be read are refused
with one line and exit 2."""

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.hist import Hist, decode, new_histogram, percentiles_ms
from squall.report.html import CHART_POINTS, chart_series, render
from squall.result.merge import merge


def _hist(values: list[int]) -> Hist:
    h = Hist()
    for v in values:
        h.record(v)
    return h


def long_doc(seconds: int, start: float, seed: int) -> dict[str, Any]:
    """A result of `seconds` per-second entries, each with its own latency histogram (five kinds in turn)."""
    rng = random.Random(seed)
    kinds = [[int(rng.lognormvariate(7, 1)) for _ in range(rng.randrange(20, 60))] for _ in range(5)]
    blobs = [_hist(values).encode().decode() for values in kinds]
    total = _hist([v for i in range(seconds) for v in kinds[i % 5]])
    series = []
    for i in range(seconds):
        pct = percentiles_ms(decode(blobs[i % 5]))
        n = len(kinds[i % 5])
        series.append(
            {
                "latency_hist": blobs[i % 5],
                "t": float(i + 1),
                "span_s": 1.0,
                "partial": False,
                "rps": float(n),
                "requests": n,
                "ok": n,
                "errors": 0,
                "error_kinds": {},
                "p50": pct[50.0],
                "p99": pct[99.0],
                "inflight": 4,
                "worker_cpu": {"0": 50.0},
            }
        )
    n = sum(e["requests"] for e in series)
    return {
        "schema": "squall/result@1",
        "meta": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
            "started_at_epoch": start,
            "warmup_s": 0,
            "model": "closed",
            "workers": 1,
            "connections": 4,
            "rate": None,
            "host": "h",
        },
        "summary": {"requests": n, "ok": n, "errors": 0, "duration_s": float(seconds)},
        "counters": {"requests": n, "ok": n, "errors": 0},
        "histograms": {"latency": total.encode().decode()},
        "timeseries": series,
        "valid": True,
        "generator_limited": False,
        "workers_lost": {},
        "warnings": [],
    }


def test_a_long_merge_adds_every_second_exactly_with_a_few_histograms_in_all() -> None:
    seconds = 3000
    a, b = long_doc(seconds, 1_700_000_000.0, 1), long_doc(seconds, 1_700_000_000.0, 2)  # two shards
    built = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal built
        if event == "call" and frame.f_code is new_histogram.__code__:
            built += 1

    sys.setprofile(count)
    try:
        m = merge([a, b], ["a.json", "b.json"])
    finally:
        sys.setprofile(None)
    assert built < 20  # a fixed few (totals, two reused seconds), never one per second
    series = m["timeseries"]
    assert len(series) == seconds
    assert m["summary"]["requests"] == a["summary"]["requests"] + b["summary"]["requests"]
    for i in (0, 1, 1234, seconds - 1):  # a merged second is the union of the two inputs' seconds
        union = new_histogram()
        union.add(decode(a["timeseries"][i]["latency_hist"]))
        union.add(decode(b["timeseries"][i]["latency_hist"]))
        pct = percentiles_ms(union)
        e = series[i]
        assert (e["requests"], e["sources"]) == (
            a["timeseries"][i]["requests"] + b["timeseries"][i]["requests"],
            2,
        )
        assert (e["p50"], e["p99"]) == (pct[50.0], pct[99.0])
        assert e["latency_hist"] == union.encode().decode()


def test_a_long_report_charts_a_bounded_number_of_points() -> None:
    doc = long_doc(7000, 1_700_000_000.0, 3)
    points, per_point = chart_series(doc["timeseries"])
    assert (len(points), per_point) == (1750, 4)
    assert len(points) <= CHART_POINTS
    first = doc["timeseries"][:4]
    assert points[0]["t"] == 4.0
    assert points[0]["requests"] == round(sum(e["requests"] for e in first) / 4, 3)
    assert points[0]["p99"] == max(e["p99"] for e in first)
    assert points[0]["worker_cpu"] == {"0": 50.0}
    assert "latency_hist" not in points[0]
    page = render(doc)
    assert "each point is 4 seconds" in page
    short = long_doc(30, 1_700_000_000.0, 4)
    assert chart_series(short["timeseries"]) == (
        [{k: v for k, v in e.items() if k != "latency_hist"} for e in short["timeseries"]],
        1,
    )


BAD = [
    ("not a histogram", "not an HDR histogram"),
    ("", "empty"),
    (5, "not an encoded histogram but a number"),
    (None, "not an encoded histogram but null"),
    (["x"], "not an encoded histogram but a list"),
    ("eHh4eHh4eHh4eHh4eHh4eA==", "not an HDR histogram"),
]


@pytest.mark.parametrize("blob, why", BAD)
@pytest.mark.parametrize("command", ["report", "merge", "compare"])
def test_a_result_whose_histogram_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path, command: str, blob: object, why: str
) -> None:
    good = long_doc(3, 1_700_000_000.0, 5)
    bad = json.loads(json.dumps(good))
    bad["histograms"]["latency"] = blob
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    args = {
        "report": ["report", str(tmp_path / "bad.json"), "--html", str(tmp_path / "r.html")],
        "merge": [
            "merge",
            str(tmp_path / "bad.json"),
            str(tmp_path / "good.json"),
            "-o",
            str(tmp_path / "m.json"),
        ],
        "compare": ["compare", str(tmp_path / "bad.json"), str(tmp_path / "good.json")],
    }[command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    # (read_result names the file and the histogram before any command reads it)
    assert len(lines) == 1 and "bad.json" in lines[0] and "'latency'" in lines[0], res.output
    assert "HDR histogram" in lines[0] or why.split()[-1] in lines[0], res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_cut_histogram_in_a_second_or_a_part_names_where_it_sits(tmp_path: Path) -> None:
    good = long_doc(3, 1_700_000_000.0, 6)
    cut = json.loads(json.dumps(good))
    cut["timeseries"][1]["latency_hist"] = good["timeseries"][1]["latency_hist"][:30]
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    out = str(tmp_path / "m.json")
    res = CliRunner().invoke(
        app, ["merge", str(tmp_path / "cut.json"), str(tmp_path / "good.json"), "-o", out]
    )
    assert res.exit_code == 2, res.output
    assert "timeseries[1].latency_hist: not an HDR histogram, or cut short" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["report", "compare"])
def test_a_result_whose_series_histogram_is_not_hdr_is_one_line_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    good = long_doc(3, 1_700_000_000.0, 5)
    bad = json.loads(json.dumps(good))
    key = next(k for k in bad["timeseries"][1] if k.endswith("_hist"))
    bad["timeseries"][1][key] = "abc"
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    args = {
        "report": ["report", str(tmp_path / "bad.json"), "--html", str(tmp_path / "r.html")],
        "compare": ["compare", str(tmp_path / "good.json"), str(tmp_path / "bad.json")],
    }[command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and f"timeseries[1].{key}" in lines[0], res.output
