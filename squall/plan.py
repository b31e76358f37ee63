"""The plan: everything a run needs, immutable and validated before any process starts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

ARRIVALS = ("constant", "poisson", "gamma")
TRANSPORTS = ("auto", "raw", "aiohttp")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|ms|s|m|h)?\s*$")
_UNIT_S = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_SECONDS = 30 * 24 * 3600.0
MAX_COUNT = 2**62
MAX_RATE = 10_000_000.0
MAX_CONNECTIONS = 1_000_000
MAX_WORKERS = 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class PlanError(ValueError):
    """Bad input: the message names the problem and the fix."""


def named(what: str, text: object) -> str:
    """`--think '2x'` in an error message, or just `'2x'` where the caller names the place itself ('')."""
    return f"{what} {text!r}" if what else repr(text)


def parse_duration(text: str, what: str = "duration") -> float:
    """Parse `10s`, `2m`, `1h`, `250ms` or a bare number of seconds into seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise PlanError(f"{named(what, text)} is not a duration; use e.g. 500ms, 10s, 2m or 1h")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds > MAX_SECONDS:
        raise PlanError(f"{named(what, text)} is longer than 30 days")
    return seconds


_FRAMING = frozenset(("content-length", "transfer-encoding"))  # a wrong one breaks every request


def parse_header(text: str) -> tuple[str, str]:
    """Parse one `Name: value` header."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or not _TOKEN.match(name):
        raise PlanError(f"header {text!r} is malformed; use 'Name: value'")
    value = value.strip()
    if name.lower() in _FRAMING:
        raise PlanError(f"header {name!r} is set by squall from the body; drop it")
    if "\r" in value or "\n" in value:
        raise PlanError(f"header {name!r} contains a line break")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise PlanError(
            f"header {name!r} has characters HTTP/1.1 cannot carry; percent-encode them"
        ) from None
    return name, value


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to send, over and over."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def target(self) -> str:
        """The request-target: path plus query."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def validate(self) -> None:
        """Raise PlanError unless the URL, method and headers can be sent."""
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError as e:
            raise PlanError(f"URL {self.url!r} is not valid: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise PlanError(f"URL {self.url!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise PlanError(f"URL {self.url!r} has no host")
        if parts.username is not None or parts.password is not None:
            # (the URL would be printed and stored in the result, and the credentials never sent)
            shown = self.url.replace(parts.netloc, parts.netloc.rpartition("@")[2])
            raise PlanError(
                f"URL {shown!r} holds credentials (user:password@); send them with -H 'Authorization: ...'"
            )
        if not self.url.isascii() or any(c.isspace() or ord(c) < 32 for c in self.url):
            raise PlanError(f"URL {self.url!r} must be ASCII without spaces; percent-encode the rest")
        if port == 0:
            raise PlanError(f"URL {self.url!r} has port 0")
        if not _TOKEN.match(self.method):
            raise PlanError(f"method {self.method!r} is not a valid HTTP method")


APIS = ("chat", "completions", "dify", "sse")
GOODPUT_METRICS = ("ttft", "tpot", "e2e", "itl")
_BOUND = re.compile(r"^\s*(ttft|tpot|e2e|itl)\s*<\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: a string (completions, dify, sse) or chat messages, with an optional max_tokens."""

    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class LlmSpec:
    """What makes a run an LLM run: the API flavour, the prompts, keys and how to read the stream."""

    api: str = "chat"
    stream: bool = True
    model: str = "default"
    max_tokens: int | None = None
    temperature: float | None = None
    body_json: tuple[tuple[str, object], ...] = ()
    prompts: tuple[Prompt, ...] = (Prompt("Hello"),)
    api_keys: tuple[str, ...] = ()
    text_path: str = "choices.0.delta.content"
    done_marker: str = "[DONE]"
    goodput: tuple[tuple[str, float], ...] = ()

    def validate(self) -> None:
        """Raise PlanError for an unknown API, no prompts or a bad bound."""
        if self.api not in APIS:
            raise PlanError(f"--api {self.api!r} is not one of {', '.join(APIS)}")
        if not self.prompts:
            raise PlanError("no prompts: the prompts file is empty")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise PlanError(f"--max-tokens must be at least 1 (got {self.max_tokens})")
        for key in self.api_keys:
            if not key or any(c in key for c in "\r\n") or not key.isascii():
                raise PlanError("an API key is empty or has characters a header cannot carry")


def parse_goodput(text: str) -> tuple[str, float]:
    """Parse a goodput bound such as `ttft<500ms` into (metric, seconds)."""
    m = _BOUND.match(text)
    if not m:
        raise PlanError(f"--goodput {text!r} is not a bound; use e.g. 'ttft<500ms', 'tpot<50ms' or 'e2e<10s'")
    return m.group(1), parse_duration(m.group(2), "--goodput")


def api_from_path(url: str) -> str:
    """Guess the API flavour from the endpoint path."""
    path = urlsplit(url).path
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith("/chat-messages"):
        return "dify"
    return "sse"


@dataclass(frozen=True, slots=True)
class PySpec:
    """`squall py MODULE:FACTORY`: the factory and the keyword arguments it is called with."""

    target: str
    params: tuple[tuple[str, Any], ...] = ()
    tracemalloc: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run needs. Build it, call `validate()`, hand it to `squall.engine.run`."""

    request: RequestSpec
    connections: int = 64
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    duration_s: float | None = None
    requests: int | None = None
    rate: float | None = None
    arrival: str = "constant"
    burstiness: float = 1.0
    timeout_s: float = 30.0
    tls_verify: bool = True
    warmup_s: float = 0.0
    drain_s: float = 2.0
    transport: str = "auto"
    quiet: bool = False
    record: bool = True  # False only to measure squall's own recording cost (bench/)
    out_path: str | None = None
    target_pid: int | None = None
    seed: int = 0
    max_backlog: int = 100_000
    window_s: float = 1.0
    command: str = "run"
    llm: LlmSpec | None = None
    thresholds: tuple[Any, ...] = ()  # squall.thresholds.Threshold, judged on the result
    abort_on_fail: bool = False
    abort_grace_s: float = 5.0
    shape: Any = None  # squall.shape.Shape: stages of users (closed model) or of rate (open model)
    think: Any = None  # squall.shape.Think: pause between one user's requests (closed model)
    scenario: Any = None  # squall.scenario.Scenario: a channel is a user, a send one iteration of a journey
    soak: Any = None  # squall.soak.SoakSpec: checkpoint the result, judge leaks and drift
    hdr_log: str | None = None  # append each checkpoint interval's latency histogram (HdrHistogram log)
    shard: tuple[int, int] | None = None  # (index, count): this box's share of connections, rate, requests
    start_at: float | None = None  # wall-clock epoch seconds at which every shard starts its load
    prometheus: tuple[str, int] | None = None  # (host, port) of the collector's live /metrics endpoint
    py: Any = None  # PySpec: `squall py` runs a Python workload in-process instead of HTTP
    # Self-check: a worker is the bottleneck if its CPU stays at or above cpu_limit_pct, or its loop's
    # timer lateness p99 stays above loop_lag_limit_ms, for self_check_span consecutive windows.
    cpu_limit_pct: float = 90.0
    loop_lag_limit_ms: float = 5.0
    self_check_span: int = 3

    @property
    def open_model(self) -> bool:
        return self.rate is not None

    def validate(self) -> Plan:
        """Check every field; return the plan with workers capped at connections. Raises PlanError."""
        self.request.validate()
        if self.llm is not None:
            self.llm.validate()
            if self.transport == "aiohttp":
                raise PlanError("squall llm streams over the raw transport; --transport aiohttp is for `run`")
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise PlanError(f"--connections must be from 1 to {MAX_CONNECTIONS:,} (got {self.connections})")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise PlanError(f"--workers must be from 1 to {MAX_WORKERS} (got {self.workers})")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_SECONDS:
            raise PlanError("--duration must be greater than 0 and at most 30 days")
        if self.requests is not None and not 1 <= self.requests <= MAX_COUNT:
            raise PlanError(f"--requests must be from 1 to {MAX_COUNT} (got {self.requests})")
        if self.rate is not None and not 0.001 <= self.rate <= MAX_RATE:
            raise PlanError(f"--rate must be from 0.001 to {MAX_RATE:,.0f} requests/s (got {self.rate})")
        if not 0.01 <= self.burstiness <= 100:
            raise PlanError(f"--burstiness must be from 0.01 to 100 (got {self.burstiness})")
        if self.arrival not in ARRIVALS:
            raise PlanError(f"--arrival {self.arrival!r} is not one of {', '.join(ARRIVALS)}")
        if self.transport not in TRANSPORTS and not (self.transport == "py" and self.py is not None):
            raise PlanError(f"--transport {self.transport!r} is not one of {', '.join(TRANSPORTS)}")
        if not 0 < self.timeout_s <= MAX_SECONDS:
            raise PlanError("--timeout must be greater than 0 and at most 30 days")
        if not 0 <= self.warmup_s <= MAX_SECONDS:
            raise PlanError("--warmup must be from 0 to 30 days")
        if self.drain_s < 0:
            raise PlanError("drain time must not be negative")
        if self.target_pid is not None and self.target_pid < 1:
            raise PlanError(f"--target-pid {self.target_pid} is not a process id")
        if self.window_s <= 0:
            raise PlanError("window must be greater than 0")
        for t in self.thresholds:  # step.NAME.metric bounds must name a step of the scenario
            scope = getattr(t, "scope", ())
            if scope[:1] == ("steps",):
                if self.scenario is None:
                    raise PlanError(f"threshold {t.expr!r}: step.NAME bounds are for scenario runs")
                if scope[1] not in self.scenario.step_names:
                    names = ", ".join(self.scenario.step_names)
                    raise PlanError(f"threshold {t.expr!r}: no step named {scope[1]!r} (steps: {names})")
            if scope[:1] == ("phases",) and self.py is None:
                raise PlanError(f"threshold {t.expr!r}: phase.NAME bounds are for squall py runs")
            llm_steps = self.scenario is not None and any(
                s.llm is not None for j in self.scenario.journeys for s in j.steps
            )
            if getattr(t, "path", ("",))[0] == "llm" and self.llm is None and not llm_steps:
                raise PlanError(f"threshold {t.expr!r}: an LLM metric, and this run makes no LLM calls")
        plan = self._with_shape()
        for t in plan.thresholds:
            if getattr(t, "path", ("",))[0] == "schedule_lag_ms" and not plan.open_model:
                raise PlanError(f"threshold {t.expr!r}: schedule lag is measured in the open model (give -r)")
        if plan.arrival != "constant" and not plan.open_model:
            raise PlanError(f"--arrival {plan.arrival} spaces open-model sends: give -r (or a rate --stage)")
        if plan.burstiness != 1.0 and plan.arrival != "gamma":
            raise PlanError("--burstiness shapes --arrival gamma; add --arrival gamma or drop it")
        if plan.think is not None and plan.open_model:
            raise PlanError("--think paces users in the closed model; with a rate the schedule sets the pace")
        if plan.duration_s is None and plan.requests is None:
            plan = replace(plan, duration_s=10.0)
        if plan.py is not None:
            plan = replace(plan, transport="py")  # in-process: no HTTP client at all
        elif plan.transport == "auto":
            # raw does everything `run` asks today; aiohttp stays for what only it does (proxies, cookies...).
            plan = replace(plan, transport="raw")
        if plan.workers > plan.connections:
            plan = replace(plan, workers=plan.connections)
        if plan.requests is not None and plan.workers > plan.requests:
            plan = replace(plan, workers=plan.requests)
        return plan

    def _with_shape(self) -> Plan:
        """A shape sets the duration (its stages less --warmup) and the peak: connections or rate."""
        shape = self.shape
        if shape is None:
            return self
        if shape.kind == "rate":
            if not 0.001 <= shape.peak <= MAX_RATE:
                raise PlanError(f"--stage: the highest rate must be from 0.001 to {MAX_RATE:,.0f}/s")
            plan = replace(self, rate=shape.peak)
        else:
            if self.rate is not None:
                raise PlanError("--stage with users (30s:100) is the closed model; it cannot take --rate")
            if not 1 <= shape.peak <= MAX_CONNECTIONS:
                raise PlanError(f"--stage: the most users must be from 1 to {MAX_CONNECTIONS:,}")
            plan = replace(self, connections=int(shape.peak))
        duration = shape.total_s - self.warmup_s
        if duration <= 0:
            if self.warmup_s > 0:
                raise PlanError("--stage: the stages must last longer than --warmup")
            raise PlanError("--stage: the stages must last longer than 0 s")
        return replace(plan, duration_s=duration)

    def share(self, total: int, worker: int) -> int:
        """Worker `worker`'s even share of `total` (connections or requests)."""
        return total // self.workers + (1 if worker < total % self.workers else 0)

    def share_offset(self, total: int, worker: int) -> int:
        """How many of `total` the workers before `worker` take (where its share starts)."""
        return sum(self.share(total, w) for w in range(worker))

    def worker_rate(self) -> float | None:
        """Each worker's share of the target rate."""
        return None if self.rate is None else self.rate / self.workers
