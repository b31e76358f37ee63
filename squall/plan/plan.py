"""The plan: everything a run needs, immutable and validated before any process starts.

Plan = workload (request, llm, scenario, py) x load (Closed | Open) x stop x spread x client x outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from squall.plan.load import Closed, Open, check_arrival
from squall.plan.shard import Spread
from squall.plan.specs import LlmSpec, PySpec, RequestSpec
from squall.plan.stop import Stop
from squall.units import MAX_SECONDS, PlanError

if TYPE_CHECKING:
    from squall.plan.scenario.model import Scenario
    from squall.plan.specs import SoakSpec
    from squall.plan.thresholds import Threshold


@dataclass(frozen=True, slots=True)
class Client:
    """How requests go out: the transport by name ("auto": raw, aiohttp for scenarios), each request's
    timeout, whether the server's TLS certificate is checked, the local addresses connections come from
    (round robin; none: the system's choice) and how many connections the run opens per second before it
    starts (None: 2,000/s per worker; see squall.engine.limits)."""

    transport: str = "auto"
    timeout_s: float = 30.0
    tls_verify: bool = True
    source_ips: tuple[str, ...] = ()
    connect_rate: float | None = None

    def validate(self, in_process: bool = False) -> None:
        """Raise PlanError for a transport the engine does not have or a timeout out of range; "py" is the
        name of an `in_process` (py) run's client."""
        from squall.engine.transport import TRANSPORTS

        if (
            self.transport != "auto"
            and self.transport not in TRANSPORTS
            and not (in_process and self.transport == "py")
        ):
            raise PlanError(
                f"--transport {self.transport!r} is not one of {', '.join(['auto', *TRANSPORTS])}"
            )
        if not 0 < self.timeout_s <= MAX_SECONDS:
            raise PlanError("--timeout must be greater than 0 and at most 30 days")
        if self.connect_rate is not None and not 0 < self.connect_rate < float("inf"):
            raise PlanError(f"--connect-rate {self.connect_rate:g}: give connections per second, above 0")
        parse_source_ips(self.source_ips)  # (already parsed: this checks a Plan made in code)


MAX_SOURCE_IPS = 65536


def parse_source_ips(specs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The local addresses of --source-ip values, each a comma list of addresses or A-B ranges
    (127.0.0.2-127.0.0.9), in order, each once; raises PlanError naming the bad one."""
    import ipaddress

    out: dict[str, None] = {}
    for spec in specs:
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                raise PlanError(f"--source-ip {spec!r}: an empty address")
            low_text, dash, high_text = item.partition("-")
            try:
                low = ipaddress.ip_address(low_text.strip())
                high = ipaddress.ip_address(high_text.strip()) if dash else low
            except ValueError:
                raise PlanError(
                    f"--source-ip {item!r} is not an IP address or a range A-B (127.0.0.2-127.0.0.9)"
                ) from None
            if low.version != high.version or int(high) < int(low):
                raise PlanError(f"--source-ip {item!r}: the range must go up, within one address family")
            if int(high) - int(low) + len(out) >= MAX_SOURCE_IPS:
                raise PlanError(f"--source-ip {item!r}: more than {MAX_SOURCE_IPS} addresses")
            for n in range(int(low), int(high) + 1):
                out[str(type(low)(n))] = None
    families = {":" in a for a in out}
    if len(families) > 1:
        raise PlanError("--source-ip mixes IPv4 and IPv6 addresses: a connection needs one family")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """--dashboard: the live page and its API, served by the collector on host:port; `token` (a random
    secret, empty on loopback) must be in every request's URL; `study` is a hunt's finished levels so far
    (JSON), shown beside the level that runs."""

    host: str
    port: int
    token: str = ""
    study: str = ""

    def url(self) -> str:
        """The page's address as printed (with its token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")


@dataclass(frozen=True, slots=True)
class Scrape:
    """--scrape: Prometheus text endpoints the collector reads once a second (never a worker), each read
    bounded by `timeout_s`; `metrics` are globs picking series (none: every series, at most `cap`)."""

    urls: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    timeout_s: float = 0.5
    cap: int = 200


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where the run is shown and written while it runs: the live view (unless `quiet`), the -o file,
    the HdrHistogram interval log, the Prometheus endpoint (host, port)."""

    quiet: bool = False
    out_path: str | None = None
    hdr_log: str | None = None  # append each checkpoint interval's latency histogram (HdrHistogram log)
    prometheus: tuple[str, int] | None = None
    dashboard: Dashboard | None = None


@dataclass(frozen=True, slots=True)
class SelfCheck:
    """A worker is the bottleneck if its CPU stays at or above `cpu_limit_pct`, or its loop's timer
    lateness p99 above `loop_lag_limit_ms`, for `span` consecutive windows. A worker that sends no window
    for `stuck_s` (for `stuck_alone_s` once every other worker has ended) is stuck: killed and lost."""

    cpu_limit_pct: float = 90.0
    loop_lag_limit_ms: float = 5.0
    span: int = 3
    stuck_s: float = 60.0
    stuck_alone_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run needs. Build it, call `validate()`, hand it to `squall.engine.run`."""

    request: RequestSpec
    load: Closed | Open = field(default_factory=Closed)
    stop: Stop = field(default_factory=Stop)
    spread: Spread = field(default_factory=Spread)
    client: Client = field(default_factory=Client)
    outputs: Outputs = field(default_factory=Outputs)
    self_check: SelfCheck = field(default_factory=SelfCheck)
    llm: LlmSpec | None = None
    scenario: Scenario | None = None  # a channel is a user, a send one iteration of a journey
    py: PySpec | None = None  # `squall py` runs a Python workload in-process instead of HTTP
    thresholds: tuple[Threshold, ...] = ()  # judged on the result
    soak: SoakSpec | None = None  # checkpoint the result, judge leaks and drift
    scrape: Scrape | None = None  # the target's own metrics, read by the collector
    target_pid: int | None = None
    seed: int = 0
    window_s: float = 1.0
    record: bool = True  # False only to measure squall's own recording cost (bench/)
    command: str = "run"

    @property
    def open_model(self) -> bool:
        """Whether requests follow a schedule (an Open load) rather than the answers."""
        return isinstance(self.load, Open)

    def validate(self) -> Plan:
        """Check every part; return the plan with its shape applied, its defaults chosen and workers capped
        at connections (and at --max-inflight). Raises PlanError."""
        self.request.validate()
        if self.llm is not None:
            self.llm.validate()
        load = self.load.validate()
        self.spread.validate()
        self.stop.validate()
        self.client.validate(in_process=self.py is not None)
        if self.target_pid is not None and self.target_pid < 1:
            raise PlanError(f"--target-pid {self.target_pid} is not a process id")
        if self.window_s <= 0:
            raise PlanError("window must be greater than 0")
        self._check_thresholds()
        plan = replace(self, load=load, stop=self._stop_of(load))
        for t in plan.thresholds:
            if t.path[:1] == ("schedule_lag_ms",) and not plan.open_model:
                raise PlanError(f"threshold {t.expr!r}: schedule lag is measured in the open model (give -r)")
            if len(t.path) == 2 and t.path[0] in ("errors%", "error_kinds") and plan.py is None:
                from squall.plan.thresholds import ERROR_KINDS

                if t.path[1] not in ERROR_KINDS:  # an exception's name: only a py workload raises one
                    raise PlanError(
                        f"threshold {t.expr!r}: no error kind {t.path[1]!r} outside squall py; the kinds are "
                        f"{', '.join(ERROR_KINDS)}"
                    )
        if plan.py is not None:
            plan = replace(plan, client=replace(plan.client, transport="py"))  # in-process: no HTTP client
        elif plan.client.transport == "auto":
            # raw for one request over and over (run, llm); scenarios keep aiohttp, whose pooled
            # connections, header encoding and cookies their journeys were written against.
            transport = "aiohttp" if plan.scenario is not None else "raw"
            plan = replace(plan, client=replace(plan.client, transport=transport))
        workers = min(plan.spread.workers, plan.load.connections, plan.stop.requests or plan.spread.workers)
        if plan.llm is not None and plan.llm.max_inflight is not None:  # (each worker holds one at least)
            workers = min(workers, plan.llm.max_inflight)
        if workers != plan.spread.workers:
            plan = replace(plan, spread=replace(plan.spread, workers=workers))
        return plan

    def _stop_of(self, load: Closed | Open) -> Stop:
        """A shape sets the duration (its stages less the warmup); neither a duration nor a count: 10 s."""
        stop = self.stop
        if load.shape is not None:
            duration = load.shape.total_s - stop.warmup_s
            if duration <= 0:
                if stop.warmup_s > 0:
                    raise PlanError("--stage: the stages must last longer than --warmup")
                raise PlanError("--stage: the stages must last longer than 0 s")
            return replace(stop, duration_s=duration)
        if stop.duration_s is None and stop.requests is None:
            return replace(stop, duration_s=10.0)
        return stop

    def _check_thresholds(self) -> None:
        """step.NAME bounds need a scenario step of that name, phase.NAME a py run, llm.* LLM calls."""
        llm_steps = self.scenario is not None and any(
            s.llm is not None for j in self.scenario.journeys for s in j.steps
        )
        for t in self.thresholds:
            scope = t.scope
            if scope[:1] == ("steps",):
                if self.scenario is None:
                    raise PlanError(f"threshold {t.expr!r}: step.NAME bounds are for scenario runs")
                if scope[1] not in self.scenario.step_names:
                    names = ", ".join(self.scenario.step_names)
                    raise PlanError(f"threshold {t.expr!r}: no step named {scope[1]!r} (steps: {names})")
            if scope[:1] == ("phases",) and self.py is None:
                raise PlanError(f"threshold {t.expr!r}: phase.NAME bounds are for squall py runs")
            if t.path[:1] == ("llm",) and self.llm is None and not llm_steps:
                raise PlanError(f"threshold {t.expr!r}: an LLM metric, and this run makes no LLM calls")


# Each flat field name (as the options give them) -> (the Plan part, its field) it lands in.
FLAT: dict[str, tuple[str, str]] = {
    "connections": ("load", "connections"),
    "rate": ("load", "rate"),
    "arrival": ("load", "arrival"),
    "burstiness": ("load", "burstiness"),
    "max_backlog": ("load", "max_backlog"),
    "shape": ("load", "shape"),
    "think": ("load", "think"),
    "duration_s": ("stop", "duration_s"),
    "requests": ("stop", "requests"),
    "warmup_s": ("stop", "warmup_s"),
    "drain_s": ("stop", "drain_s"),
    "abort_on_fail": ("stop", "abort_on_fail"),
    "abort_grace_s": ("stop", "abort_grace_s"),
    "workers": ("spread", "workers"),
    "shard": ("spread", "shard"),
    "start_at": ("spread", "start_at"),
    "transport": ("client", "transport"),
    "timeout_s": ("client", "timeout_s"),
    "tls_verify": ("client", "tls_verify"),
    "source_ips": ("client", "source_ips"),
    "connect_rate": ("client", "connect_rate"),
    "quiet": ("outputs", "quiet"),
    "out_path": ("outputs", "out_path"),
    "hdr_log": ("outputs", "hdr_log"),
    "prometheus": ("outputs", "prometheus"),
    "dashboard": ("outputs", "dashboard"),
    "cpu_limit_pct": ("self_check", "cpu_limit_pct"),
    "loop_lag_limit_ms": ("self_check", "loop_lag_limit_ms"),
    "self_check_span": ("self_check", "span"),
    "stuck_s": ("self_check", "stuck_s"),
    "stuck_alone_s": ("self_check", "stuck_alone_s"),
}


def assemble(request: RequestSpec, **fields: Any) -> Plan:
    """The (unvalidated) Plan for flat field names, each put in its part (see FLAT); the rest (llm,
    scenario, py, thresholds, seed, ...) are the Plan's own. A rate, or a rate shape, makes the load Open.
    Raises PlanError for a mix no load takes (users stages with a rate, think with a rate, an arrival
    without one)."""
    parts: dict[str, dict[str, Any]] = {part: {} for part, _ in FLAT.values()}
    own: dict[str, Any] = {}
    for name, value in fields.items():
        if name in FLAT:
            part, key = FLAT[name]
            parts[part][key] = value
        else:
            own[name] = value
    load = parts["load"]
    rate, shape = load.pop("rate", None), load.get("shape")
    if rate is not None or (shape is not None and shape.kind == "rate"):
        if shape is not None and shape.kind == "users":
            raise PlanError("--stage with users (30s:100) is the closed model; it cannot take --rate")
        if load.pop("think", None) is not None:
            raise PlanError("--think paces users in the closed model; with a rate the schedule sets the pace")
        model: Closed | Open = Open(rate=rate if rate is not None else shape.peak, **load)  # type: ignore[union-attr]
    else:
        arrival, burstiness = load.pop("arrival", "constant"), load.pop("burstiness", 1.0)
        load.pop("max_backlog", None)
        check_arrival(arrival, burstiness)
        if arrival != "constant":
            raise PlanError(f"--arrival {arrival} spaces open-model sends: give -r (or a rate --stage)")
        if burstiness != 1.0:
            raise PlanError("--burstiness shapes --arrival gamma; add --arrival gamma or drop it")
        model = Closed(**load)
    return Plan(
        request,
        load=model,
        stop=Stop(**parts["stop"]),
        spread=Spread(**parts["spread"]),
        client=Client(**parts["client"]),
        outputs=Outputs(**parts["outputs"]),
        self_check=SelfCheck(**parts["self_check"]),
        **own,
    )
