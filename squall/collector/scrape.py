"""--scrape: the target's own Prometheus metrics, read by the collector once a second, on a thread."""

from __future__ import annotations

from typing import Any

from squall.plan.plan import Scrape


class Scraper:
    """Reads every --scrape URL once a second on a daemon thread (bounded by the spec's timeout, never on a
    worker, never stalling the collector); the collector takes one sample per measured second."""

    def __init__(self, spec: Scrape, window_s: float = 1.0) -> None:
        self.spec = spec
        self.window_s = window_s

    def start(self) -> None:
        """Begin reading (at the run's start)."""

    def second(self) -> dict[str, float]:
        """The values for the second that just ended: {series: value} (gauges as read, counters as rates
        per second, histograms as `NAME p50` and `NAME p99` from the buckets' deltas); {} before a read."""
        return {}

    def close(self) -> None:
        """Stop reading."""

    def summary(self) -> dict[str, Any]:
        """The result's `target_metrics`: per URL and per series what was read, and the read counts."""
        return {}

    def warnings(self) -> list[str]:
        """The result's warnings about reads that failed, timed out or returned junk (with counts)."""
        return []
