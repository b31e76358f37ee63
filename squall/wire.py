"""Messages between processes: a closed set of tagged msgpack arrays with a protocol version."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 5
# The kinds of a Window's sub-windows: a scenario's steps and journeys, a py workload's timed phases.
PART_KINDS = ("step", "journey", "phase", "turn", "key")
# turn: an LLM conversation's turn ("1".."63", "64+"); key: an API key, by its short hash (never the key)


class WireError(ValueError):
    """A message that is not one of ours: unknown tag, wrong shape or version."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Worker → supervisor and collector: ready to start."""

    worker: int
    pid: int
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Window:
    """Worker → collector: one window's deltas. Times are ns since the run's t0."""

    worker: int
    seq: int
    t_start: int
    t_end: int
    counters: dict[str, int]
    status_codes: dict[int, int]
    error_kinds: dict[str, int]
    histograms: dict[str, bytes]
    inflight: int
    users: int = 0  # closed model: users taking part at the window's end (a gauge, like inflight)
    parts: dict[str, dict[str, Window]] = field(
        default_factory=dict
    )  # {kind: {name: Window}}, kind in PART_KINDS
    notes: dict[str, Any] = field(default_factory=dict)  # py runs: error samples, tracemalloc growth
    loop_lag_p99_us: int | None = None  # the worker's event-loop lateness p99 this window (not a sum)
    custom: dict[str, int] = field(default_factory=dict)  # py runs: squall.sdk.count() totals


@dataclass(frozen=True, slots=True)
class Done:
    """Worker → collector: no more windows; `reason` says why it stopped."""

    worker: int
    last_seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Worker → collector or supervisor: the worker is exiting; `usage`: its input was refused (no bug).
    Supervisor → collector: the supervisor is killing that worker (stuck), `error` says why.
    Collector → supervisor: that worker is stuck (no window for long): kill it; `error` says why."""

    worker: int
    error: str
    usage: bool = False


@dataclass(frozen=True, slots=True)
class Start:
    """Supervisor → workers and collector: the shared start time (perf_counter_ns clock)."""

    t0: int
    pids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stop:
    """Supervisor → workers: stop sending, let in-flight requests finish for up to drain_s.
    Supervisor → collector: the run is stopping early for `reason` (its stop_reason).
    Collector → supervisor: stop the run as Ctrl-C would (the dashboard's stop), for `reason`."""

    reason: str
    drain_s: float


@dataclass(frozen=True, slots=True)
class Steer:
    """Collector → supervisor → workers: from `t` (ns since t0) on, the load is `users` (closed model) or
    `rate` (open model, requests/s over every worker); the rest of a --stage/--profile shape is replaced.
    `by` says who asked (the dashboard)."""

    t: int
    users: int | None
    rate: float | None
    by: str = "dashboard"


@dataclass(frozen=True, slots=True)
class Final:
    """Collector → supervisor: the finished result document."""

    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Abort:
    """Collector → supervisor: a threshold stayed broken for its grace period; stop the run."""

    reason: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Collector → supervisor, once a second: the totals so far, what the supervisor writes should the
    collector die (histograms encoded; t_first, t_last: the measured span, ns since t0)."""

    counters: dict[str, int]
    status_codes: dict[int, int]
    error_kinds: dict[str, int]
    histograms: dict[str, bytes]
    t_first: int | None
    t_last: int


Message = Hello | Window | Done | Failed | Start | Stop | Final | Abort | Progress | Steer
_TAGS: dict[type, int] = {
    Hello: 1,
    Window: 2,
    Done: 3,
    Failed: 4,
    Start: 5,
    Stop: 6,
    Final: 7,
    Abort: 8,
    Progress: 9,
    Steer: 10,
}
_TYPES: dict[int, type] = {tag: cls for cls, tag in _TAGS.items()}


INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what msgpack carries


def _clamp(counts: dict[Any, Any]) -> dict[Any, Any]:
    return {k: min(max(v, INT_MIN), INT_MAX) if isinstance(v, int) else v for k, v in counts.items()}


def clamp_window(w: Window) -> Window:
    """The window with every count inside msgpack's integer range (a bug or a hostile value upstream must
    not keep a worker's numbers from being shipped)."""
    return Window(
        w.worker,
        w.seq,
        w.t_start,
        w.t_end,
        _clamp(w.counters),
        _clamp(w.status_codes),
        _clamp(w.error_kinds),
        w.histograms,
        min(max(w.inflight, INT_MIN), INT_MAX),
        min(max(w.users, INT_MIN), INT_MAX),
        {kind: {name: clamp_window(part) for name, part in named.items()} for kind, named in w.parts.items()},
        w.notes,
        w.loop_lag_p99_us,
        _clamp(w.custom),
    )


def encode(msg: Message) -> bytes:
    """Pack a message as `[tag, *fields]`."""
    return msgpack.packb([_TAGS[type(msg)], *astuple(msg)], use_bin_type=True)


def decode(data: bytes) -> Message:
    """Unpack a message; raise WireError for anything outside the closed set."""
    try:
        arr = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise WireError(f"undecodable message: {e}") from None
    if not isinstance(arr, list) or not arr:
        raise WireError("message is not a tagged array")
    cls = _TYPES.get(arr[0])
    if cls is None:
        raise WireError(f"unknown message tag {arr[0]!r}")
    try:
        msg = cls(*arr[1:])
        if isinstance(msg, Window) and msg.parts:
            for kind, named in msg.parts.items():
                if kind not in PART_KINDS or not isinstance(named, dict):
                    raise WireError(f"malformed Window: unknown part kind {kind!r}")
                for name, part in named.items():
                    named[name] = Window(*part)
    except TypeError as e:
        raise WireError(f"malformed {cls.__name__}: {e}") from None
    if isinstance(msg, Hello) and msg.version != PROTOCOL_VERSION:
        raise WireError(
            f"protocol version {msg.version} from worker {msg.worker}, expected {PROTOCOL_VERSION}"
        )
    return msg
