"""--dashboard: the live page and its JSON API, served by the collector on a thread while the run goes on."""

from __future__ import annotations

from squall.collector.sinks import Sink, Totals
from squall.plan.plan import Plan


class DashboardSink(Sink):
    """Serves GET / (the page), /api/status, /api/series, /api/events (SSE) and POST /api/stop, /api/load."""

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> DashboardSink | None:
        """With --dashboard."""
        return None
