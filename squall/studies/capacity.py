"""Capacity arithmetic for `squall plan`: how many users a provider's limits carry, with the sums shown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from squall.units import PlanError


@dataclass(frozen=True, slots=True)
class Demand:
    """What one user asks of the provider, and the limits it must fit in."""

    rpm: float | None  # requests per minute the key allows
    tpm: float | None  # tokens per minute the key allows
    calls_per_action: float  # LLM calls one user action makes
    tokens_per_call: float  # input + output tokens per call
    action_s: float  # how long one action takes (its calls included)
    think_s: float  # the pause between a user's actions
    headroom: float  # the share of each limit to plan for (0.8 = keep 20 % spare)

    def validate(self) -> None:
        if self.rpm is None and self.tpm is None:
            raise PlanError("give at least one limit: --rpm and/or --tpm")
        for name, value in (("--rpm", self.rpm), ("--tpm", self.tpm)):
            if value is not None and not 0 < value < 1e12:
                raise PlanError(f"{name} must be greater than 0 and below 1e12 (got {value:g})")
        if not 0 < self.calls_per_action <= 1e6:
            raise PlanError(f"--calls-per-action must be greater than 0 (got {self.calls_per_action:g})")
        if not 0 <= self.tokens_per_call <= 1e9:
            raise PlanError(f"--tokens-per-call must be 0 or more (got {self.tokens_per_call:g})")
        if self.tpm is not None and self.tokens_per_call == 0:
            raise PlanError("--tpm needs --tokens-per-call (or --input-tokens/--output-tokens) above 0")
        if self.action_s < 0 or self.think_s < 0 or self.action_s + self.think_s <= 0:
            raise PlanError("--action-duration plus --think must be greater than 0")
        if not 0 < self.headroom <= 1:
            raise PlanError(f"--headroom must be in (0, 1] (got {self.headroom:g})")


def _n(v: float) -> str:
    """A figure of the arithmetic: whole with thousands separators from 100 up (11,400, not 1.14e+04)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4g}"


def capacity(d: Demand) -> dict[str, Any]:
    """The most users the limits carry, each step of the arithmetic as a line, and the numbers."""
    d.validate()
    cycle = d.action_s + d.think_s
    actions_per_min = 60.0 / cycle
    calls_per_min = actions_per_min * d.calls_per_action
    tokens_per_min = calls_per_min * d.tokens_per_call
    lines = [
        f"one user: an action every {d.action_s:g} s + {d.think_s:g} s think = {cycle:g} s "
        f"-> {_n(actions_per_min)} actions/min",
        f"  x {d.calls_per_action:g} calls/action = {_n(calls_per_min)} calls/min per user",
    ]
    if d.tokens_per_call:
        lines.append(f"  x {d.tokens_per_call:g} tokens/call = {_n(tokens_per_min)} tokens/min per user")
    bounds: dict[str, float] = {}
    if d.rpm is not None:
        usable = d.rpm * d.headroom
        bounds["rpm"] = usable / calls_per_min
        lines.append(
            f"requests: {d.rpm:,.0f} rpm x {d.headroom:g} headroom = {_n(usable)} usable "
            f"/ {_n(calls_per_min)} per user = {_n(bounds['rpm'])} users"
        )
    if d.tpm is not None:
        usable = d.tpm * d.headroom
        bounds["tpm"] = usable / tokens_per_min
        lines.append(
            f"tokens: {d.tpm:,.0f} tpm x {d.headroom:g} headroom = {usable:,.0f} usable "
            f"/ {_n(tokens_per_min)} per user = {_n(bounds['tpm'])} users"
        )
    limit = min(bounds, key=lambda k: bounds[k])
    users = math.floor(bounds[limit] + 1e-9)
    in_flight = users * d.action_s / cycle  # a user's calls run one after another within its action
    lines.append(f"max sustainable users: {users:,} (bound by {limit}; floor of {_n(bounds[limit])})")
    lines.append(
        f"at that load: {users * calls_per_min:,.1f} calls/min, {users * tokens_per_min:,.0f} tokens/min, "
        f"about {in_flight:,.1f} calls in flight "
        f"(test with: squall llm URL -c {max(1, math.ceil(in_flight))})"
    )
    return {
        "max_users": users,
        "bound_by": limit,
        "users_by_limit": {k: round(v, 4) for k, v in bounds.items()},
        "per_user": {
            "actions_per_min": round(actions_per_min, 6),
            "calls_per_min": round(calls_per_min, 6),
            "tokens_per_min": round(tokens_per_min, 6),
        },
        "headroom": d.headroom,
        "calls_in_flight": round(in_flight, 3),
        "lines": lines,
    }
