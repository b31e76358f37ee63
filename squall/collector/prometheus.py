"""A live Prometheus `/metrics` endpoint served by the collector while the run goes on.

The collector renders the text once a second from its cumulative totals (counters, gauges, histograms with
fixed second-based buckets); the server thread only hands out the latest rendering, so it never touches
the collector's state.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hdrh.histogram import HdrHistogram

from squall.collector.served import Served

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HISTOGRAMS = {
    "latency": "Request latency (from the intended send in the open model)",
    "ttft": "Time to first token",
    "itl": "Gap between successive tokens",
}


class MetricsServer(Served):
    """Serves the latest rendering on http://HOST:PORT/metrics from a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self.text = b"# squall: no data yet\n"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = owner.text
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(ThreadingHTTPServer((host, port), Handler), "squall-metrics")


def _histogram(name: str, help_text: str, h: HdrHistogram) -> list[str]:
    out = [f"# HELP squall_{name}_seconds {help_text}.", f"# TYPE squall_{name}_seconds histogram"]
    total = h.get_total_count()
    counts = h.counts
    for le in BUCKETS_S:
        value_us = int(le * 1_000_000)
        if total and value_us >= h.get_min_value():
            idx = min(h.get_counts_array_index(value_us), h.counts_len - 1)
            # Buckets whose values all lie at or below `le` (HDR precision: 0.1 %).
            n = sum(counts[: idx + 1]) if value_us < h.get_max_value() else total
        else:
            n = 0
        out.append(f'squall_{name}_seconds_bucket{{le="{le:g}"}} {n}')
    out.append(f'squall_{name}_seconds_bucket{{le="+Inf"}} {total}')
    out.append(f"squall_{name}_seconds_sum {h.get_mean_value() * total / 1e6 if total else 0.0:.6f}")
    out.append(f"squall_{name}_seconds_count {total}")
    return out


def render(
    counters: dict[str, int],
    status: dict[int, int],
    kinds: dict[str, int],
    hists: dict[str, Any],
    gauges: dict[str, float],
) -> bytes:
    """The Prometheus text exposition of a run's totals so far."""
    lines = []
    for key, help_text in (
        ("requests", "Requests answered or failed"),
        ("ok", "Requests answered with a status below 400"),
        ("errors", "Requests that failed or got a status of 400 or more"),
        ("bytes_in", "Response body bytes"),
        ("dropped", "Sends the schedule asked for while every connection was busy"),
        ("unsent", "Sends squall itself fell too far behind to make"),
    ):
        lines += [f"# HELP squall_{key}_total {help_text}.", f"# TYPE squall_{key}_total counter"]
        lines.append(f"squall_{key}_total {counters.get(key, 0)}")
    lines += [
        "# HELP squall_responses_total Responses by HTTP status.",
        "# TYPE squall_responses_total counter",
    ]
    lines += [f'squall_responses_total{{code="{code}"}} {n}' for code, n in sorted(status.items())]
    lines += [
        "# HELP squall_errors_by_kind_total Errors by kind.",
        "# TYPE squall_errors_by_kind_total counter",
    ]
    lines += [f'squall_errors_by_kind_total{{kind="{k}"}} {n}' for k, n in sorted(kinds.items())]
    for key, value in sorted(gauges.items()):
        lines += [f"# TYPE squall_{key} gauge", f"squall_{key} {value:g}"]
    for name, help_text in HISTOGRAMS.items():
        if name in hists:
            lines += _histogram(name, help_text, hists[name])
    return ("\n".join(lines) + "\n").encode()
