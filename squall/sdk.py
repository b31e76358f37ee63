"""What a `squall py` workload calls from inside an iteration: named phase timings and counters.

    import squall.sdk as squall

    async def negotiate(user):
        with squall.timer("formulation"):
            offer = await agent.formulate()
        squall.record("offer", seconds)      # a timing measured some other way
        squall.count("llm_calls", 3)

Outside a `squall py` run these calls do nothing, so instrumented code runs unchanged anywhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import perf_counter_ns
from typing import Any, Protocol


class Sink(Protocol):
    """Where one iteration's phases and counters go (the worker's py workload)."""

    def phase(self, name: str, ns: int, error: str | None = None) -> None: ...

    def count(self, name: str, n: int) -> None: ...

    def cancelled(self) -> bool:
        """Whether squall itself is cancelling this iteration (its --timeout, or the run ending)."""
        ...


# The sink of the iteration running in this task (each iteration is its own asyncio task, so its own context).
current: ContextVar[Sink | None] = ContextVar("squall_sink", default=None)


@contextmanager
def timer(name: str) -> Iterator[None]:
    """Time the block as phase `name`; when it raises, the time counts and so does an error of its type.

    A block squall cancels (its --timeout, the run ending) is not timed: it never ended. One the caller
    leaves early (GeneratorExit, an async generator closed) is timed without an error.
    """
    start = perf_counter_ns()
    try:
        yield
    except GeneratorExit:
        sink = current.get()
        if sink is not None:
            sink.phase(name, perf_counter_ns() - start)
        raise
    except BaseException as e:
        sink = current.get()
        if sink is not None and not (isinstance(e, asyncio.CancelledError) and sink.cancelled()):
            sink.phase(name, perf_counter_ns() - start, type(e).__name__)
        raise
    sink = current.get()
    if sink is not None:
        sink.phase(name, perf_counter_ns() - start)


def record(name: str, seconds: float) -> None:
    """Record one duration for phase `name`."""
    sink = current.get()
    if sink is not None:
        sink.phase(name, int(seconds * 1e9))


def count(name: str, n: int = 1) -> None:
    """Add `n` to counter `name` (summed over the run, in `summary.counters`)."""
    sink = current.get()
    if sink is not None:
        sink.count(name, n)


class User:
    """One virtual user: its id (unique across workers) and a dict it keeps between iterations."""

    __slots__ = ("id", "iteration", "state")

    def __init__(self, uid: int) -> None:
        self.id = uid
        self.iteration = 0
        self.state: dict[str, Any] = {}
