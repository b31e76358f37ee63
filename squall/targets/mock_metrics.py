"""The mock LLM's own metrics, counted cheaply as it serves and rendered as vLLM-style Prometheus text."""

from __future__ import annotations

from bisect import bisect_left

# vLLM's bucket bounds (seconds) for its TTFT and end-to-end latency histograms.
TTFT_BOUNDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BOUNDS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)  # fmt: skip
KV_STREAMS = 256  # running streams that fill the mock's pretend KV cache when it has no --max-running
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Counts per bucket (not cumulative; one bisect per observation) and the sum, in seconds."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, seconds: float) -> None:
        """Count one value (a value on a bound falls in that bound's bucket, as Prometheus' `le`)."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """Values observed so far."""
        return sum(self.counts)


class MockMetrics:
    """What the mock counts for GET /metrics: requests finished, tokens, the running and waiting gauges'
    sources live in MockState; TTFT and end-to-end latency as histograms."""

    __slots__ = ("e2e", "generation_tokens", "prompt_tokens", "success", "ttft")

    def __init__(self) -> None:
        self.success = 0  # requests answered in full (a stream that wrote its tail, a whole reply)
        self.prompt_tokens = 0  # counted when a request's generation starts
        self.generation_tokens = 0  # tokens written, counted when a request's generation ends
        self.ttft = Histogram(TTFT_BOUNDS)
        self.e2e = Histogram(E2E_BOUNDS)


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _bound(b: float) -> str:
    return repr(float(b))


def render(metrics: MockMetrics, model: str, running: int, waiting: int, max_running: int) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of one mock, every series labelled model_name."""
    escaped = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    label = f'model_name="{escaped}"'
    kv = min(1.0, running / (max_running or KV_STREAMS))
    out: list[str] = []

    def one(name: str, kind: str, help_text: str, value: float) -> None:
        out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))
        out.append(f"{name}{{{label}}} {_num(value)}")

    def histogram(name: str, help_text: str, h: Histogram) -> None:
        out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} histogram"))
        running_total = 0
        for bound, n in zip(h.bounds, h.counts, strict=False):
            running_total += n
            out.append(f'{name}_bucket{{{label},le="{_bound(bound)}"}} {running_total}')
        running_total += h.counts[-1]
        out.append(f'{name}_bucket{{{label},le="+Inf"}} {running_total}')
        out.append(f"{name}_sum{{{label}}} {_num(h.total)}")
        out.append(f"{name}_count{{{label}}} {running_total}")

    one("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", running)
    one("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", waiting)
    one("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.", kv)
    one("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", kv)
    one("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", metrics.prompt_tokens)
    one(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        metrics.generation_tokens,
    )
    one("vllm:request_success_total", "counter", "Count of successfully processed requests.", metrics.success)
    histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token.", metrics.ttft)
    histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency.", metrics.e2e)
    return ("\n".join(out) + "\n").encode()
