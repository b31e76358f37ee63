"""The mock LLM's settings (speed, size, injected faults) and the counters it keeps while it serves."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from squall.targets.mock_metrics import MockMetrics

MAX_SECONDS = 3600.0
MAX_TOKENS = 1_000_000
MAX_RECEIVED = 100_000
MAX_RUNNING = 1_000_000
FAULTS = ("fail_429", "fail_500", "hang", "drop_mid_stream", "bad_chunk", "empty")


@dataclass(frozen=True)
class MockOptions:
    """Where the mock listens, how fast it 'generates', and the fraction of requests that get each fault."""

    host: str = "127.0.0.1"
    port: int = 8000
    ttft_s: float = 0.15
    itl_s: float = 0.02
    tokens: int = 64
    tokens_stddev: float = 0.0
    jitter: float = 0.0
    fail_429: float = 0.0
    fail_500: float = 0.0
    hang: float = 0.0
    drop_mid_stream: float = 0.0
    bad_chunk: float = 0.0
    empty: float = 0.0
    model: str = "squall-mock"
    seed: int = 0
    record_sends: bool = False
    reasoning_tokens: int = 0
    tool_calls: bool = False
    keep_received: int = 100
    max_running: int = 0  # requests generated at once; the rest wait in arrival order (0: no limit)

    def __post_init__(self) -> None:
        if not self.host or not self.model:
            raise ValueError("host and model must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be from 0 to 65535 (0 picks a free port), got {self.port}")
        for name in ("ttft_s", "itl_s"):
            if not 0 <= getattr(self, name) <= MAX_SECONDS:
                flag = "--" + name.removesuffix("_s")
                raise ValueError(f"{flag} must be from 0 to {MAX_SECONDS:g} s, got {getattr(self, name)}")
        if type(self.tokens) is not int or not 1 <= self.tokens <= MAX_TOKENS:
            raise ValueError(f"--tokens must be an integer from 1 to {MAX_TOKENS}, got {self.tokens!r}")
        if not 0 <= self.tokens_stddev <= MAX_TOKENS:
            raise ValueError(
                f"--tokens N:stddev: stddev must be from 0 to {MAX_TOKENS}, got {self.tokens_stddev}"
            )
        if type(self.reasoning_tokens) is not int or not 0 <= self.reasoning_tokens <= MAX_TOKENS:
            raise ValueError(
                f"--reasoning-tokens must be an integer from 0 to {MAX_TOKENS}, got {self.reasoning_tokens!r}"
            )
        if type(self.keep_received) is not int or not 0 <= self.keep_received <= MAX_RECEIVED:
            raise ValueError(
                f"--keep-received must be an integer from 0 to {MAX_RECEIVED}, got {self.keep_received!r}"
            )
        if type(self.max_running) is not int or not 0 <= self.max_running <= MAX_RUNNING:
            raise ValueError(
                f"--max-running must be an integer from 0 (no limit) to {MAX_RUNNING}, "
                f"got {self.max_running!r}"
            )
        for name in ("jitter", *FAULTS):
            if not 0 <= getattr(self, name) <= 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be a fraction from 0 to 1, got {getattr(self, name)}")
        total = sum(getattr(self, name) for name in FAULTS)
        if total > 1 + 1e-9:
            raise ValueError(
                f"the fault fractions ({', '.join('--' + f.replace('_', '-') for f in FAULTS)}) must add "
                f"up to at most 1, got {total:g}"
            )


class MockState:
    """Counters of one mock server, the bodies it received and, with record_sends, when each stream's content
    events were written.

    For completed stream k, `arrivals[k]` is the perf_counter_ns() when its request arrived and `sends[k]` the
    perf_counter_ns() just before each of its content events was written (at most MAX_RECORDS streams).
    `received` holds the parsed JSON bodies of the last `keep_received` generation requests, oldest first.
    `running` counts generations under way (streams and whole replies), `waiting` the requests queued behind
    --max-running, `queue` their start callbacks (a cancelled one stays until it is reached, then is skipped).
    """

    __slots__ = (
        "arrivals", "connections", "events_sent", "faults", "metrics", "queue", "received", "requests",
        "running", "sends", "streams_open", "waiting",
    )  # fmt: skip

    def __init__(self, keep_received: int = 100) -> None:
        self.requests: int = 0
        self.streams_open: int = 0
        self.events_sent: int = 0  # content (token) events
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.arrivals: list[int] = []
        self.sends: list[list[int]] = []
        self.connections: set[Any] = set()
        self.received: deque[Any] = deque(maxlen=keep_received)
        self.metrics = MockMetrics()
        self.running: int = 0
        self.waiting: int = 0
        self.queue: deque[Any] = deque()
