"""When the next request is due in the open model: pure schedules, no clock, no I/O."""

from __future__ import annotations

import random
from typing import Protocol

NS = 1_000_000_000


class Pacer(Protocol):
    """Yields intended send times as ns offsets from the run's t0, in order, forever."""

    def next_send(self) -> int: ...


class ConstantPacer:
    """Evenly spaced sends: the k-th is due at (k + phase) / rate seconds.

    `phase` in [0, 1) shifts this worker's schedule so N workers interleave instead of sending together.
    Offsets are computed from k, not accumulated, so rounding never drifts.
    """

    def __init__(self, rate: float, phase: float = 0.0) -> None:
        self.interval_ns = NS / rate
        self.phase = phase
        self.k = 0

    def next_send(self) -> int:
        t = int((self.k + self.phase) * self.interval_ns)
        self.k += 1
        return t


class PoissonPacer:
    """Exponentially distributed gaps with mean 1/rate (a Poisson process), seeded so runs repeat."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.t = 0.0

    def next_send(self) -> int:
        self.t += self.rng.expovariate(self.rate)
        return int(self.t * NS)


def make_pacer(arrival: str, rate: float, worker: int, workers: int, seed: int) -> Pacer:
    """The pacer for one worker's share of the rate."""
    if arrival == "poisson":
        return PoissonPacer(rate, seed * 1_000_003 + worker)
    return ConstantPacer(rate, phase=worker / workers)
