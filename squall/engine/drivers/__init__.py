"""Load models as drivers: closed (each user sends again when answered), user ramp, and open (a schedule).

Every channel runs the same cycle through plain callbacks: the driver picks its next request (closed: right
away, or after the user's think time; open: from the backlog, or it goes idle until the schedule hands it
one), on_response or on_failure records it and asks the driver again. The run ends (`finished`) when no
channel is busy and none may send.

Timers run late under a steady stream of answers: libuv reads up to 1,024 events per epoll_wait and calls it
again, up to 48 times, while each call comes back full, before it runs any timer; from about 3,000 busy
connections a worker that always has answers waiting runs its timers only after 49,152 of them. So the paths
that take the clock for a send also compare it with `due`, and past it call `catch_up`, which does what the
timers would have done by then (the worker's window and the deadline); the timers stay for an idle loop.
"""

from __future__ import annotations

from squall.engine.drivers.base import (
    INTERNAL_PAUSE_S,
    MIN_SLEEP_NS,
    NEVER,
    NS,
    Driver,
    at,
    nothing_due,
    sleep_until,
)
from squall.engine.drivers.closed import RECOUNT_NS, ClosedDriver, UsersDriver
from squall.engine.drivers.open import YIELD_EVERY, OpenDriver
from squall.plan.plan import Plan

__all__ = [
    "DRIVERS",
    "INTERNAL_PAUSE_S",
    "MIN_SLEEP_NS",
    "NEVER",
    "NS",
    "RECOUNT_NS",
    "YIELD_EVERY",
    "ClosedDriver",
    "Driver",
    "OpenDriver",
    "UsersDriver",
    "at",
    "driver_kind",
    "nothing_due",
    "sleep_until",
]

DRIVERS: dict[str, type[Driver]] = {"closed": ClosedDriver, "users": UsersDriver, "open": OpenDriver}


def driver_kind(plan: Plan) -> str:
    """Which load model the plan asks for: open (a rate), users (a users shape) or closed."""
    if plan.open_model:
        return "open"
    return "users" if plan.load.shape is not None and plan.load.shape.kind == "users" else "closed"
