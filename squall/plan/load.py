"""Load shapes: stages (piecewise-linear users or rate over time), presets, and think time.

A shape is pure arithmetic on seconds since the run's t0: the target at a time, the area under it (how many
requests a rate shape asks for between two times), and the time at which a given area is reached, which is
what turns an arrival process at rate 1 into one that follows the shape (a time change, exact for constant
arrivals and a true non-homogeneous Poisson process for Poisson ones).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from typing import ClassVar

from squall.units import PlanError, named, parse_duration

ARRIVALS = ("constant", "poisson", "gamma")
MAX_RATE = 10_000_000.0
MAX_CONNECTIONS = 1_000_000
PROFILES = ("ramp", "step", "spike", "soak")
PROFILE_HELP = (
    "ramp: 0 to the target over 20 % of -d, hold 70 %, down to 0 over 10 %; "
    "step: 5 equal steps up to the target, each held for a fifth of -d (2 s ramps); "
    "spike: 10 % of the target for 40 % of -d, up to 100 % in 2 s, held 20 %, back to 10 % in 2 s; "
    "soak: 0 to the target over 5 % of -d (at most 60 s), then held"
)


@dataclass(frozen=True, slots=True)
class Stage:
    """Move linearly from the previous stage's target (0 at the start) to `target` over `duration_s`."""

    duration_s: float
    target: float


@dataclass(frozen=True, slots=True)
class Shape:
    """Stages of one kind: `users` (closed model, concurrent users) or `rate` (open model, requests/s)."""

    kind: str
    stages: tuple[Stage, ...]

    @property
    def total_s(self) -> float:
        return sum(s.duration_s for s in self.stages)

    @property
    def peak(self) -> float:
        return max(s.target for s in self.stages)

    def _segments(self) -> list[tuple[float, float, float, float]]:
        """(start s, duration s, from, to) per stage."""
        out, t, prev = [], 0.0, 0.0
        for s in self.stages:
            out.append((t, s.duration_s, prev, s.target))
            t += s.duration_s
            prev = s.target
        return out

    def value_at(self, t: float) -> float:
        """The target at `t` seconds (the last target after the end)."""
        for start, d, a, b in self._segments():
            if t < start + d:
                return a + (b - a) * max(0.0, t - start) / d if d > 0 else b
        return self.stages[-1].target

    def area(self, t: float) -> float:
        """The integral of the target from 0 to `t` (requests, for a rate shape)."""
        total = 0.0
        for start, d, a, b in self._segments():
            if t <= start:
                break
            tau = min(t, start + d) - start
            total += a * tau + (b - a) * tau * tau / (2 * d) if d > 0 else 0.0
        return total

    def time_at_area(self, area: float) -> float | None:
        """The first time the area reaches `area`, or None if it never does within the stages."""
        done = 0.0
        for start, d, a, b in self._segments():
            whole = d * (a + b) / 2
            if area <= done + whole and whole > 0:
                c = area - done
                k = (b - a) / (2 * d)  # area(tau) = a*tau + k*tau^2 within the stage
                disc = a * a + 4 * k * c
                # The stable root of k*tau^2 + a*tau - c = 0 (no cancellation when k is tiny or negative).
                tau = 2 * c / (a + math.sqrt(max(disc, 0.0))) if c > 0 else 0.0
                return start + min(max(tau, 0.0), d)
            done += whole
        return None


HOLD_S = 10 * 365 * 86400.0  # a steered value holds past any run's end


def steered(shape: Shape | None, kind: str, base: float, changes: list[tuple[float, float]]) -> Shape | None:
    """The load after changes made while it ran: the plan's `shape` (None: `base` all along) up to the first
    change, then each change's value held from its time (s since t0) until the next one: a change replaces
    the rest of the shape. Without changes, `shape` itself."""
    if not changes:
        return shape
    stages: list[Stage] = [] if shape is None else list(shape.stages)
    if shape is None:
        stages = [Stage(0.0, base), Stage(HOLD_S, base)]
    for at_s, value in sorted(changes):
        kept, t = [], 0.0
        prev = 0.0
        for st in stages:
            if t + st.duration_s <= at_s:
                kept.append(st)
            elif t < at_s:  # cut the stage at the change: its target there, on the same line
                frac = (at_s - t) / st.duration_s
                kept.append(Stage(at_s - t, prev + (st.target - prev) * frac))
            t += st.duration_s
            prev = st.target
        if t < at_s:  # the shape ended before the change: its last target holds until then
            kept.append(Stage(at_s - t, prev))
        stages = [*kept, Stage(0.0, value), Stage(HOLD_S, value)]
    return Shape(kind, tuple(stages))


def steer_base(load: Closed | Open) -> tuple[str, float]:
    """What a change of the run's load steers ("rate" for the open model, "users" for the closed one) and the
    plan's value of it (what a run without a shape holds until the first change)."""
    if isinstance(load, Open):
        return "rate", float(load.rate or 0.0)
    return "users", float(load.connections)


def check_steer(load: Closed | Open, users: int | None, rate: float | None, trace: bool = False) -> None:
    """Refuse a change the run's load model cannot take (users for the closed model, a rate for the open
    one; in range; none for a --trace replay, `trace`); raises PlanError with the reason."""
    if (users is None) == (rate is None):
        raise PlanError('give one of {"users": N} (closed model) or {"rate": R} (open model)')
    if isinstance(load, Open):
        if rate is None:
            raise PlanError("this run is open-model (a rate): change its rate, not its users")
        if trace:
            raise PlanError("a --trace replay keeps the trace's times: its rate cannot be changed")
        if not 0 <= rate <= MAX_RATE:
            raise PlanError(f"rate {rate!r}: give requests/s from 0 to {MAX_RATE:,.0f}")
    else:
        if users is None:
            raise PlanError("this run is closed-model (users): change its users, not a rate")
        if isinstance(users, bool) or not isinstance(users, int) or not 0 <= users <= MAX_CONNECTIONS:
            raise PlanError(f"users {users!r}: give a whole number from 0 to {MAX_CONNECTIONS:,}")


_STAGE = re.compile(r"^\s*([^:]+):\s*([0-9]*\.?[0-9]+)\s*(/s)?\s*$")


def parse_stage(text: str, flag: str = "--stage") -> tuple[Stage, str]:
    """`30s:200` (users) or `30s:200/s` (requests per second) → (Stage, kind); errors name `flag`."""
    m = _STAGE.match(text)
    if not m:
        raise PlanError(f"{named(flag, text)}: expected DURATION:TARGET, e.g. 30s:100 (users) or 30s:200/s")
    duration = parse_duration(m.group(1), f"{flag} duration".strip())
    target = float(m.group(2))
    if not math.isfinite(target):  # 400 digits make an infinite float
        raise PlanError(f"{named(flag, text)}: the target {m.group(2)[:20]!r}... is too large")
    return Stage(duration, target), "rate" if m.group(3) else "users"


def parse_stages(texts: list[str], flag: str = "--stage") -> Shape | None:
    """Every --stage in order, all of one kind; None when there are none."""
    if not texts:
        return None
    parsed = [parse_stage(t, flag) for t in texts]
    kinds = {kind for _, kind in parsed}
    if len(kinds) > 1:
        mixing = "mixing users (30s:100) and rates (30s:100/s) in one run is not possible"
        raise PlanError(f"{flag}: {mixing}" if flag else mixing)
    return Shape(kinds.pop(), tuple(stage for stage, _ in parsed))


def profile(name: str, kind: str, target: float, duration_s: float) -> Shape:
    """A preset shape up to `target` over `duration_s` (see PROFILE_HELP)."""
    d = duration_s
    if name == "ramp":
        stages = [Stage(0.2 * d, target), Stage(0.7 * d, target), Stage(0.1 * d, 0.0)]
    elif name == "step":
        ramp = min(2.0, d / 10)
        stages = []
        for i in range(1, 6):
            level = target * i / 5
            stages += [Stage(ramp, level), Stage(d / 5 - ramp, level)]
    elif name == "spike":
        base, ramp = target / 10, min(2.0, d / 20)
        stages = [
            Stage(ramp, base),
            Stage(0.4 * d - ramp, base),
            Stage(ramp, target),
            Stage(0.2 * d - ramp, target),
            Stage(ramp, base),
            Stage(0.4 * d - ramp, base),
        ]
    elif name == "soak":
        ramp = min(60.0, 0.05 * d)
        stages = [Stage(ramp, target), Stage(d - ramp, target)]
    else:
        raise PlanError(f"--profile {name!r} is not one of {', '.join(PROFILES)}")
    if kind == "users":
        stages = [Stage(s.duration_s, round(s.target)) for s in stages]
    return Shape(kind, tuple(s for s in stages if s.duration_s > 0))


@dataclass(frozen=True, slots=True)
class Think:
    """Pause between one user's requests: uniform on [low_s, high_s] (mean_s their middle), or exponential
    with mean `mean_s`."""

    kind: str  # "uniform" | "exp"
    low_s: float = 0.0
    high_s: float = 0.0
    mean_s: float = 0.0

    def sampler(self, rng: random.Random) -> object:
        """A no-argument callable giving one pause in seconds."""
        if self.kind == "exp":
            rate = 1.0 / self.mean_s
            return lambda: rng.expovariate(rate)
        low, high = self.low_s, self.high_s
        return lambda: rng.uniform(low, high)


def parse_think(text: str, flag: str = "--think") -> Think:
    """`1s-5s` (uniform), `2s` (fixed) or `exp:2s` (exponential with that mean); errors name `flag`."""
    t = text.strip()
    try:
        if t.startswith("exp:"):
            mean = parse_duration(t[4:], flag)
            if mean <= 0:
                raise PlanError(f"{flag} exp: the mean must be greater than 0".strip())
            return Think("exp", mean_s=mean)
        if "-" in t:
            lo_text, hi_text = t.split("-", 1)
            lo, hi = parse_duration(lo_text, flag), parse_duration(hi_text, flag)
        else:
            lo = hi = parse_duration(t, flag)
    except PlanError as e:
        raise PlanError(f"{named(flag, text)}: expected 1s-5s, 2s or exp:2s ({e})") from None
    if not 0 <= lo <= hi:
        raise PlanError(f"{named(flag, text)}: the low end must not exceed the high end")
    return Think("uniform", lo, hi, (lo + hi) / 2)


@dataclass(frozen=True, slots=True)
class Closed:
    """The closed model: `connections` users, each sending its next request once the last one is answered
    (after `think`); a users `shape` moves how many are active over time, up to its peak."""

    connections: int = 64
    think: Think | None = None
    shape: Shape | None = None
    rate: ClassVar[None] = None  # no target rate: the users set the pace

    def validate(self) -> Closed:
        """Check the users; return the load with `connections` at the shape's peak. Raises PlanError."""
        _check_connections(self.connections)
        shape = self.shape
        if shape is None:
            return self
        if shape.kind != "users":
            raise PlanError("--stage with a rate (30s:200/s) is the open model: give it a rate")
        if not 1 <= shape.peak <= MAX_CONNECTIONS:
            raise PlanError(f"--stage: the most users must be from 1 to {MAX_CONNECTIONS:,}")
        return replace(self, connections=int(shape.peak))


@dataclass(frozen=True, slots=True)
class Open:
    """The open model: requests sent at `rate` per second on a schedule (`arrival` spacing, `burstiness` for
    gamma) over `connections`, whatever the answers; a rate `shape` moves the rate over time, up to its peak.
    At most `max_backlog` sends wait for a free connection."""

    rate: float
    arrival: str = "constant"
    burstiness: float = 1.0
    shape: Shape | None = None
    connections: int = 64
    max_backlog: int = 100_000
    think: ClassVar[None] = None  # the schedule sets the pace, not the users

    def validate(self) -> Open:
        """Check the schedule; return the load with `rate` at the shape's peak. Raises PlanError."""
        _check_connections(self.connections)
        shape = self.shape
        if shape is not None:
            if shape.kind != "rate":
                raise PlanError("--stage with users (30s:100) is the closed model; it cannot take --rate")
            if not 0.001 <= shape.peak <= MAX_RATE:
                raise PlanError(f"--stage: the highest rate must be from 0.001 to {MAX_RATE:,.0f}/s")
        if not 0.001 <= self.rate <= MAX_RATE:
            raise PlanError(f"--rate must be from 0.001 to {MAX_RATE:,.0f} requests/s (got {self.rate})")
        check_arrival(self.arrival, self.burstiness)
        if self.burstiness != 1.0 and self.arrival != "gamma":
            raise PlanError("--burstiness shapes --arrival gamma; add --arrival gamma or drop it")
        if self.max_backlog < 0:
            raise PlanError("the backlog must not be negative")
        return self if shape is None else replace(self, rate=shape.peak)


def check_arrival(arrival: str, burstiness: float) -> None:
    """Raise PlanError unless `arrival` is known and `burstiness` in range."""
    if not 0.01 <= burstiness <= 100:
        raise PlanError(f"--burstiness must be from 0.01 to 100 (got {burstiness})")
    if arrival not in ARRIVALS:
        raise PlanError(f"--arrival {arrival!r} is not one of {', '.join(ARRIVALS)}")


def trace_rate(offsets: tuple[float, ...]) -> float:
    """A trace's mean rate (requests/s over its span; one second for a trace with no span): what the
    result's rate and the live view say, while the trace's own offsets time the sends."""
    span = offsets[-1] - offsets[0] if offsets else 0.0
    return min(MAX_RATE, max(0.001, len(offsets) / span if span > 0 else float(len(offsets))))


def _check_connections(connections: int) -> None:
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise PlanError(f"--connections must be from 1 to {MAX_CONNECTIONS:,} (got {connections})")


Load = Closed | Open
