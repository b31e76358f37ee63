"""Transports (bytes on the wire) and `make_transport`, which wires a plan's workload onto one of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squall.engine.transport.base import (
    Answer,
    AnswerCut,
    Channel,
    Interrupted,
    Owner,
    RequestSource,
    TaskChannel,
    Transport,
)
from squall.plan.plan import Plan

__all__ = [
    "TRANSPORTS",
    "Answer",
    "AnswerCut",
    "Channel",
    "Interrupted",
    "Owner",
    "RequestSource",
    "TaskChannel",
    "Transport",
    "make_transport",
]


def _raw() -> type:
    from squall.engine.transport.raw import RawTransport

    return RawTransport


def _aiohttp() -> type:
    from squall.engine.transport.aiohttp import AiohttpTransport

    return AiohttpTransport


# name -> the transport's class (imported when chosen: a worker loads only the client it uses)
TRANSPORTS: dict[str, Callable[[], type]] = {"raw": _raw, "aiohttp": _aiohttp}


def make_transport(plan: Plan, connections: int, worker: int = 0, rec: Any = None) -> Any:
    """The plan's workload over the transport it names, sized for this worker's connections; `rec` records
    the iteration workloads' parts (scenario steps, py phases)."""
    if plan.py is not None:
        from squall.engine.workload.py import PyWorkload

        return PyWorkload(plan, connections, worker, rec)
    cls = TRANSPORTS[plan.client.transport if plan.client.transport in TRANSPORTS else "raw"]()
    if plan.scenario is not None:
        from squall.engine.workload.journey import JourneyWorkload

        return JourneyWorkload(plan, worker, rec, cls(plan, connections, None))
    source: RequestSource
    if plan.llm is not None:
        from squall.engine.workload.llm import LlmSource

        source = LlmSource(plan, worker)
    else:
        from squall.engine.workload.http import HttpSource

        source = HttpSource(plan.request)
    return cls(plan, connections, source)
