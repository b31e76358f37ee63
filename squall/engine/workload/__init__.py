"""What a run sends: request sources (http, llm) for channels, iteration workloads (journey, py), and the
`WORKLOADS` registry that wires a plan's workload onto its transport."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from squall.units import PlanError

if TYPE_CHECKING:
    from squall.engine.recorder import Recorder
    from squall.engine.transport.base import Transport
    from squall.engine.workload.base import IterationWorkload, Sender
    from squall.plan.plan import Plan

__all__ = ["WORKLOADS", "make_sender", "transport_class", "workload_kind"]


class Make(Protocol):
    def __call__(self, plan: Plan, connections: int, worker: int, rec: Recorder) -> Sender: ...


def transport_class(name: str) -> type[Transport]:
    """The transport class registered as `name`; PlanError for a name no transport has."""
    from squall.engine.transport import TRANSPORTS

    make = TRANSPORTS.get(name)
    if make is None:
        raise PlanError(f"--transport {name!r} is not one of {', '.join(TRANSPORTS)}")
    return make()


def _http(plan: Plan, connections: int, worker: int, rec: Recorder) -> Sender:
    from squall.engine.workload.http import HttpSource

    return transport_class(plan.client.transport)(plan, connections, HttpSource(plan.request))  # type: ignore[call-arg,return-value]


def _llm(plan: Plan, connections: int, worker: int, rec: Recorder) -> Sender:
    from squall.engine.workload.llm import llm_sender

    return llm_sender(plan, connections, worker)


def _journey(plan: Plan, connections: int, worker: int, rec: Recorder) -> IterationWorkload:
    from squall.engine.workload.journey import JourneyWorkload

    http = transport_class(plan.client.transport)(plan, connections, None)  # type: ignore[call-arg]
    return JourneyWorkload(plan, worker, rec, http)


def _py(plan: Plan, connections: int, worker: int, rec: Recorder) -> IterationWorkload:
    from squall.engine.workload.py import PyWorkload

    return PyWorkload(plan, connections, worker, rec)


# kind -> what the worker drives for it (the workload's module is imported only when chosen)
WORKLOADS: dict[str, Make] = {"http": _http, "llm": _llm, "journey": _journey, "py": _py}


def workload_kind(plan: Plan) -> str:
    """The kind of workload a plan runs: py, journey (a scenario), llm or http."""
    if plan.py is not None:
        return "py"
    if plan.scenario is not None:
        return "journey"
    return "llm" if plan.llm is not None else "http"


def make_sender(plan: Plan, connections: int, worker: int = 0, rec: Any = None) -> Sender:
    """The plan's workload over the transport it names, sized for this worker's connections; `rec` is the
    worker's recorder (iteration workloads record their parts in it: scenario steps, py phases)."""
    return WORKLOADS[workload_kind(plan)](plan, connections, worker, rec)
