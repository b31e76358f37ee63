"""When the next request is due in the open model: pure schedules, no clock, no I/O."""

from __future__ import annotations

import random
from bisect import bisect_left
from fractions import Fraction
from typing import Protocol

NS = 1_000_000_000
NEVER = 1 << 62  # a send time past every run's end (ns; ~146 years)


class Pacer(Protocol):
    """Yields intended send times as ns offsets from the run's t0, in order, forever."""

    def next_send(self) -> int: ...


class ConstantPacer:
    """Evenly spaced sends over all workers: the j-th send of the run is due at ceil(j / rate) seconds.

    Worker `worker` of `workers` takes sends j = worker, worker + workers, ...; so N workers interleave into
    one even schedule instead of sending together. Times are exact integers (the rate is taken as a
    fraction), so a run of D seconds at R/s sends exactly the sends due before D; rounding never drifts.
    """

    def __init__(self, rate: float, worker: int = 0, workers: int = 1) -> None:
        r = Fraction(repr(rate))
        self.num, self.den = r.numerator, r.denominator
        self.j = worker
        self.step = workers

    def next_send(self) -> int:
        t = -((-self.j * NS * self.den) // self.num)  # ceil
        self.j += self.step
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


class GammaPacer:
    """Gamma-distributed gaps with mean 1/rate; burstiness < 1 is burstier than Poisson, > 1 more regular
    (shape = burstiness, as vLLM's benchmark defines it; burstiness 1 is a Poisson process)."""

    def __init__(self, rate: float, burstiness: float, seed: int) -> None:
        self.shape = burstiness
        self.scale = 1.0 / (rate * burstiness)
        self.rng = random.Random(seed)
        self.t = 0.0

    def next_send(self) -> int:
        self.t += self.rng.gammavariate(self.shape, self.scale)
        return int(self.t * NS)


class TracePacer:
    """A trace's own send times: worker `worker` of `workers` takes the trace's sends worker, worker +
    workers, ... (offsets in ns from t0, in order); past its last one, a time no run reaches."""

    __slots__ = ("j", "offsets", "step", "worker")

    def __init__(self, offsets_ns: tuple[int, ...], worker: int = 0, workers: int = 1) -> None:
        self.offsets = offsets_ns
        self.worker = self.j = worker
        self.step = workers

    def next_send(self) -> int:
        j = self.j
        self.j = j + self.step
        return self.offsets[j] if j < len(self.offsets) else NEVER

    def count_between(self, a_ns: int, b_ns: int) -> int:
        """How many of this worker's sends are due from a_ns to b_ns (offsets from t0; a_ns included)."""
        lo, hi = bisect_left(self.offsets, a_ns), bisect_left(self.offsets, b_ns)
        return self._before(hi) - self._before(lo)

    def _before(self, i: int) -> int:
        """How many of this worker's sends come before the trace's send number i."""
        return max(0, -(-(i - self.worker) // self.step))


def in_area(pacer: Pacer, rate: float) -> tuple[Pacer, float]:
    """`pacer`, pacing `rate` requests/s over every worker, as the same sends at rate 1 in area (requests of
    the whole run so far): a pacer that goes on from where this one is (the same seeded draws, so a steered
    run repeats), and the area of the send it gave last. Raises TypeError for a trace's pacer."""
    if isinstance(pacer, ConstantPacer):
        # Send j of the run is due at ceil(j / rate) s: area j.
        out = ConstantPacer(1.0, 0, pacer.step)
        out.j = pacer.j
        return out, float(pacer.j - pacer.step)
    if isinstance(pacer, PoissonPacer):
        # expovariate(r / rate) = expovariate(r) * rate: the same draws, gaps scaled from seconds to area.
        poisson = PoissonPacer(pacer.rate / rate, 0)
        poisson.rng, poisson.t = pacer.rng, pacer.t * rate
        return poisson, poisson.t
    if isinstance(pacer, GammaPacer):
        gamma = GammaPacer(1.0, pacer.shape, 0)
        gamma.scale, gamma.rng, gamma.t = pacer.scale * rate, pacer.rng, pacer.t * rate
        return gamma, gamma.t
    raise TypeError(f"{type(pacer).__name__} cannot be steered")


def make_pacer(
    arrival: str, rate: float, worker: int, workers: int, seed: int, burstiness: float = 1.0
) -> Pacer:
    """The pacer of one worker, given the whole run's rate."""
    if arrival == "poisson":
        return PoissonPacer(rate / workers, seed * 1_000_003 + worker)
    if arrival == "gamma":
        return GammaPacer(rate / workers, burstiness, seed * 1_000_003 + worker)
    return ConstantPacer(rate, worker, workers)
