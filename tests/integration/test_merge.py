"""merge (exact), compare (noise-aware verdicts), CSV, and shards that add up."""

import csv
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.hist import Hist, summary_ms
from squall.report.json import read_json
from squall.result.compare import compare
from squall.result.merge import merge
from squall.targets.serve import ServerThread
from squall.units import PlanError


def _hist(values: list[int]) -> Hist:
    h = Hist()
    for v in values:
        h.record(v)
    return h


def _doc(values: list[int], start: float, errors: int = 0, seconds: bool = False) -> dict:
    h = _hist(values)
    n = len(values)
    meta = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
        "started_at_epoch": start,
        "warmup_s": 0,
        "model": "closed",
        "workers": 1,
        "connections": 4,
        "rate": None,
        "host": "h",
    }
    codes = {"200": n - errors, "500": errors}
    kinds = {"http_5xx": errors} if errors else {}
    summary = {"requests": n, "ok": n - errors, "errors": errors, "duration_s": 2.0}
    summary |= {"status_codes": codes, "error_kinds": kinds}
    half = n // 2
    series = [
        {"t": 1.0, "requests": half, "ok": half, "errors": 0, "rps": n / 2, "p50": 1.0, "p99": 2.0},
        {"t": 2.0, "requests": n - half, "ok": n - half, "errors": 0, "rps": n / 2, "p50": 1.0, "p99": 3.0},
    ]
    if seconds:  # each second keeps its histogram, as a run's result does
        series[0]["latency_hist"] = _hist(values[:half]).encode().decode()
        series[1]["latency_hist"] = _hist(values[half:]).encode().decode()
    return {
        "schema": "squall/result@1",
        "meta": meta,
        "summary": summary,
        "counters": {"requests": n, "ok": n - errors, "errors": errors},
        "histograms": {"latency": h.encode().decode()},
        "timeseries": series,
        "valid": True,
        "generator_limited": False,
        "workers_lost": {},
        "warnings": [],
        "thresholds": [{"expr": "p99<1s", "ok": True, "value": 1.0}],
    }


def test_merged_percentiles_equal_one_recorder_of_everything() -> None:
    rng = random.Random(11)
    a = [int(rng.lognormvariate(7, 1.3)) for _ in range(30_000)]
    b = [int(rng.lognormvariate(8, 0.7)) for _ in range(20_000)]
    single = Hist()
    for v in a + b:
        single.record(v)
    t = 1_700_000_000.0
    merged = merge([_doc(a, t), _doc(b, t + 1)], ["a.json", "b.json"])
    assert merged["summary"]["latency_ms"] == summary_ms(single.sync())
    assert merged["summary"]["requests"] == 50_000
    assert merged["meta"]["duration_s"] == 3.0  # t .. t+1+2: the wall-clock union
    # Seconds align on wall clock: a's 2nd second and b's 1st are the same second.
    assert [(e["t"], e["sources"]) for e in merged["timeseries"]] == [(1.0, 1), (2.0, 2), (3.0, 1)]
    assert merged["timeseries"][1]["requests"] == 15_000 + 10_000
    assert merged["thresholds"][0]["expr"] == "p99<1s"
    # These inputs kept no per-second histograms: the merged seconds' p50/p99 are marked approximate.
    assert any("3 merged seconds have p50/p99 taken as the highest" in w for w in merged["warnings"])
    assert "parts" not in merged  # its inputs kept none: a merge of this merge must not take {} as parts
    other = _doc(b, t + 1)
    other["meta"]["url"] = "http://127.0.0.1:9/elsewhere"
    assert any("differ in target" in w for w in merge([_doc(a, t), other], ["a", "b"])["warnings"])
    with pytest.raises(PlanError, match="at least two"):
        merge([_doc(a, t)], ["a"])
    with pytest.raises(PlanError, match="not a squall result"):
        merge([_doc(a, t), {"schema": "x"}], ["a", "b"])


def test_merged_seconds_have_the_percentiles_of_their_union() -> None:
    rng = random.Random(3)
    a = [int(rng.lognormvariate(7, 1.3)) for _ in range(4_000)]
    b = [int(rng.lognormvariate(9, 0.5)) for _ in range(6_000)]
    t = 1_700_000_000.0
    merged = merge([_doc(a, t, seconds=True), _doc(b, t + 1, seconds=True)], ["a.json", "b.json"])
    assert not any("highest" in w for w in merged["warnings"])
    # The second both cover holds a's second half and b's first half.
    union = summary_ms(_hist(a[2_000:] + b[:3_000]).sync())
    middle = merged["timeseries"][1]
    assert (middle["p50"], middle["p99"]) == (union["p50"], union["p99"])
    alone = summary_ms(_hist(b[3_000:]).sync())
    assert (merged["timeseries"][2]["p50"], merged["timeseries"][2]["p99"]) == (alone["p50"], alone["p99"])
    # A merged result merges again exactly.
    again = merge([merged, _doc(a, t, seconds=True)], ["m.json", "a.json"])
    first = summary_ms(_hist(a[:2_000] + a[:2_000]).sync())
    assert (again["timeseries"][0]["p50"], again["timeseries"][0]["p99"]) == (first["p50"], first["p99"])


def test_compare_uses_the_histograms_for_noise() -> None:
    rng = random.Random(5)
    base = [int(rng.lognormvariate(7, 0.5)) for _ in range(20_000)]
    same = [int(rng.lognormvariate(7, 0.5)) for _ in range(20_000)]
    slow = [int(v * 1.5) for v in same]
    t = 1_700_000_000.0
    out = compare(_doc(base, t), _doc(same, t), max_regression_pct=10)
    lat = {r["metric"]: r for r in out["rows"] if r["metric"].startswith("latency")}
    assert all(r["verdict"] == "same" for r in lat.values()), lat
    assert not out["regression"]
    out = compare(_doc(base, t), _doc(slow, t), max_regression_pct=10)
    p50 = next(r for r in out["rows"] if r["metric"] == "latency p50 ms")
    assert (p50["verdict"], p50["regression"]) == ("worse", True) and 45 < p50["change_pct"] < 55
    assert out["regression"]
    out = compare(_doc(slow, t), _doc(base, t))
    assert next(r for r in out["rows"] if r["metric"] == "latency p50 ms")["verdict"] == "better"
    errs = compare(_doc(base, t), _doc(base, t, errors=400))
    assert next(r for r in errs["rows"] if r["metric"] == "error rate %")["verdict"] == "worse"


def test_shards_add_up_and_merge(target: ServerThread, tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    url = target.url + "/"
    start = time.time() + 1.5
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}.json"
        args = ["run", url, "-n", "301", "-c", "5", "-w", "1", "-q", "-o", str(out), "--shard", f"{i}/2"]
        res = CliRunner().invoke(app, [*args, "--start-at", str(start)])
        assert res.exit_code == 0, res.output
        outs.append(out)
    docs = [read_json(str(p)) for p in outs]
    assert [d["summary"]["requests"] for d in docs] == [151, 150]
    assert [d["meta"]["connections"] for d in docs] == [3, 2]
    assert [d["meta"]["shard"] for d in docs] == [[0, 2], [1, 2]]
    assert start - 0.05 <= docs[0]["meta"]["started_at_epoch"] <= start + 0.5
    merged, page, table = tmp_path / "m.json", tmp_path / "m.html", tmp_path / "m.csv"
    res = CliRunner().invoke(
        app, ["merge", *map(str, outs), "-o", str(merged), "--html", str(page), "--csv", str(table)]
    )
    assert res.exit_code == 0, res.output
    m = read_json(str(merged))
    for doc in (*docs, m):
        check_result(doc)
    assert m["summary"]["requests"] == 301 and m["meta"]["connections"] == 5
    rows = list(csv.DictReader(table.open()))
    assert sum(int(r["requests"]) for r in rows) == 301
    summary = dict(csv.reader((tmp_path / "m.summary.csv").open()))
    assert summary["requests"] == "301" and "latency_ms.p99" in summary
    # A merged result is a compare input like any other (shard against merge would judge the box's noise).
    res = CliRunner().invoke(app, ["compare", str(merged), str(merged), "--max-regression", "0%"])
    assert res.exit_code == 0, res.output
    assert "latency p99 ms" in res.output and "worse" not in res.output


def test_bad_shards_and_compare_input(tmp_path: Path) -> None:
    for args, needle in (
        (["run", "http://127.0.0.1:1/", "--shard", "2/2"], "--shard"),
        (["run", "http://127.0.0.1:1/", "--shard", "x"], "I/N"),
        (["run", "http://127.0.0.1:1/", "-c", "2", "--shard", "0/3"], "cannot be split"),
        (["run", "http://127.0.0.1:1/", "--start-at", "5"], "--start-at"),
        (["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")], "cannot be read"),
    ):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and needle in res.output, (args, res.output)


def test_shards_of_a_rate_shape_send_its_area_between_them(target: ServerThread, tmp_path: Path) -> None:
    import subprocess
    import sys

    start = time.time() + 3
    procs, outs = [], []
    for i in range(2):
        out = tmp_path / f"s{i}.json"
        args = [
            sys.executable,
            "-m",
            "squall",
            "run",
            target.url + "/",
            "--stage",
            "1s:200/s",
            "--stage",
            "1s:0/s",
        ]
        args += ["-c", "8", "-w", "1", "-q", "--shard", f"{i}/2", "--start-at", str(start), "-o", str(out)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        outs.append(out)
    # 3 is a generator-limited open-model run (a busy box can make the loop late); the split must hold anyway.
    assert all(p.wait(timeout=60) in (0, 3) for p in procs)
    assert not any(read_json(str(o))["workers_lost"] for o in outs)
    counts = [read_json(str(o))["summary"]["requests"] for o in outs]
    assert counts == [100, 100]  # the whole shape's area (200) between them
