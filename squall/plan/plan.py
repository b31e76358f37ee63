"""The plan: everything a run needs, immutable and validated before any process starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from squall.plan.specs import LlmSpec, PySpec, RequestSpec
from squall.units import MAX_SECONDS, PlanError

if TYPE_CHECKING:
    from squall.plan.load import Shape, Think
    from squall.plan.scenario.model import Scenario
    from squall.plan.specs import SoakSpec
    from squall.plan.thresholds import Threshold

ARRIVALS = ("constant", "poisson", "gamma")
TRANSPORTS = ("auto", "raw", "aiohttp")
MAX_COUNT = 2**62
MAX_RATE = 10_000_000.0
MAX_CONNECTIONS = 1_000_000
MAX_WORKERS = 1024


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
    thresholds: tuple[Threshold, ...] = ()  # judged on the result
    abort_on_fail: bool = False
    abort_grace_s: float = 5.0
    shape: Shape | None = None  # stages of users (closed model) or of rate (open model)
    think: Think | None = None  # pause between one user's requests (closed model)
    scenario: Scenario | None = None  # a channel is a user, a send one iteration of a journey
    soak: SoakSpec | None = None  # checkpoint the result, judge leaks and drift
    hdr_log: str | None = None  # append each checkpoint interval's latency histogram (HdrHistogram log)
    shard: tuple[int, int] | None = None  # (index, count): this box's share of connections, rate, requests
    start_at: float | None = None  # wall-clock epoch seconds at which every shard starts its load
    prometheus: tuple[str, int] | None = None  # (host, port) of the collector's live /metrics endpoint
    py: PySpec | None = None  # `squall py` runs a Python workload in-process instead of HTTP
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
            scope = t.scope
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
            if t.path[:1] == ("llm",) and self.llm is None and not llm_steps:
                raise PlanError(f"threshold {t.expr!r}: an LLM metric, and this run makes no LLM calls")
        plan = self._with_shape()
        for t in plan.thresholds:
            if t.path[:1] == ("schedule_lag_ms",) and not plan.open_model:
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
            # raw for one request over and over (run, llm); scenarios keep aiohttp, whose pooled
            # connections, header encoding and cookies their journeys were written against.
            plan = replace(plan, transport="aiohttp" if plan.scenario is not None else "raw")
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
