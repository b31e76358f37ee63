"""A hunt level's `target_metrics`: its own --scrape series as {series: {mean, max}}; none without."""

from __future__ import annotations

from typing import Any

from squall.report.sections import hunt_table
from squall.result.document import Result
from squall.studies.hunt import step_summary, target_means


def _doc(target_metrics: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": {"rps": 10.0, "requests": 100, "errors": 0, "latency_ms": {"p50": 5.0, "p99": 9.0}},
        "thresholds": [],
        "timeseries": [],
        "generator_limited": False,
        "workers_lost": {},
        "meta": {"stop_reason": "duration", "duration_s": 1.0},
    }
    if target_metrics is not None:
        doc["target_metrics"] = target_metrics
    return doc


SCRAPED = {
    "urls": {"http://127.0.0.1:1/metrics": {"reads": 3, "failed": 0, "errors": {}}},
    "series": {
        "vllm:num_requests_waiting": {
            "kind": "gauge",
            "url": "u",
            "mean": 2.3333333,
            "max": 4.0,
            "last": 1.0,
        },
        "vllm:gpu_cache_usage_perc": {"kind": "gauge", "url": "u", "mean": 0.5, "max": 0.75, "last": 0.5},
        "vllm:prompt_tokens_total": {"kind": "counter", "url": "u", "mean": None, "max": None, "last": None},
    },
    "left_out": 0,
}


def test_a_level_keeps_mean_and_max_of_each_series() -> None:
    assert target_means(_doc(SCRAPED)) == {
        "vllm:num_requests_waiting": {"mean": 2.3333333, "max": 4.0},
        "vllm:gpu_cache_usage_perc": {"mean": 0.5, "max": 0.75},
        "vllm:prompt_tokens_total": {"mean": None, "max": None},
    }
    step = step_summary(4, Result(_doc(SCRAPED)))
    assert step["target_metrics"] == target_means(_doc(SCRAPED))


def test_a_level_without_scrape_has_none() -> None:
    assert target_means(_doc(None)) is None
    assert "target_metrics" not in step_summary(4, Result(_doc(None)))


def test_the_levels_table_shows_only_the_queue_and_cache_series_scraped() -> None:
    steps = [step_summary(level, Result(_doc(SCRAPED if level == 2 else None))) for level in (1, 2)]
    table = hunt_table({"steps": steps})
    # No running series was read; the older vLLM name of the KV cache stands in for the newer.
    assert table["head"][-3:] == ["server waiting (mean / max)", "server KV cache (mean / max)", "verdict"]
    assert [r[-3:-1] for r in table["rows"]] == [["—", "—"], ["2.33 / 4", "0.5 / 0.75"]]
    assert table["note"].endswith("vllm:num_requests_waiting, vllm:gpu_cache_usage_perc")
    plain = hunt_table({"steps": [step_summary(1, Result(_doc(None)))]})
    assert "server" not in " ".join(plain["head"]) and plain["note"] == ""
