"""When one worker's open-model sends are due: pacer x rate shape x shard phase, with no clock inside."""

from __future__ import annotations

from squall.engine.pacer import NS, Pacer, TracePacer, in_area, make_pacer
from squall.plan.load import Shape
from squall.plan.plan import Plan

NEVER = 1 << 62  # a due time past every run's end (perf_counter ns; ~146 years)


class Schedule:
    """Intended send times in perf_counter ns, in order; `next_due()` is None once the schedule is over.

    Without a shape the pacer runs at the worker's rate from t0 (+ a shard's phase). A rate shape paces at
    rate 1 in "area" (requests the shape asks for so far), then maps each area to the time the shape reaches
    it: constant arrivals stay exact, Poisson ones become a true non-homogeneous Poisson process.
    """

    __slots__ = (
        "area",
        "area_offset",
        "held",
        "origin",
        "pacer",
        "rate",
        "shape",
        "step",
        "t0",
        "until",
        "workers",
    )

    def __init__(
        self,
        pacer: Pacer,
        t0: int,
        end: int | None = None,
        *,
        rate: float = 0.0,
        workers: int = 1,
        shape: Shape | None = None,
        area_offset: float = 0.0,
        phase_ns: int = 0,
    ) -> None:
        self.pacer = pacer
        self.t0 = t0
        self.rate = rate  # this worker's requests/s without a shape
        self.workers = workers  # the shape's area is shared by this many workers
        self.shape = shape
        self.area_offset = area_offset
        self.area = 0.0  # (a shape's) the area of the last due given
        self.held: float | None = None  # an area to give before the pacer's next (see steer)
        # The next due time is origin + step(), and the schedule is over once it reaches `until`. Without a
        # shape, step is the pacer's own next_send: a hot loop pays no call over the pacer's (see next_due).
        self.until = NEVER if end is None else end
        if shape is None:
            self.step = pacer.next_send
            self.origin = t0 + phase_ns
        else:
            self.step = self._shaped
            self.origin = 0

    def next_due(self) -> int | None:
        """The next send's due time, or None: at or past `end`, or beyond the shape's last stage."""
        due = self.origin + self.step()
        return None if due >= self.until else due

    def _shaped(self) -> int:
        """The next send's due time under the shape (NEVER beyond its last stage)."""
        area = self.held
        if area is None:
            area = self.pacer.next_send() / NS + self.area_offset
        else:
            self.held = None
        self.area = area
        at = self.shape.time_at_area(area)  # type: ignore[union-attr]
        return NEVER if at is None else self.t0 + round(at * NS)

    def steer(self, shape: Shape, rate: float, again: bool) -> Schedule:
        """This schedule going on under `shape` (a rate shape that agrees with its own so far; `rate`: its
        requests/s over every worker when it has no shape): the same pacer, counted in area, so no send is
        lost or doubled and seeded arrivals repeat; `again`: the last due given was not sent, and is due
        again at the time the new shape reaches its area."""
        if isinstance(self.pacer, TracePacer):
            raise TypeError("a trace's schedule cannot be steered")
        if self.shape is None:
            pacer, last = in_area(self.pacer, rate)
            # A shard's phase is a fraction of a send at the old rate: the same fraction in area.
            offset = (self.origin - self.t0) / NS * rate
            out = Schedule(pacer, self.t0, workers=self.workers, shape=shape, area_offset=offset)
            last += offset
        else:
            offset = self.area_offset
            out = Schedule(self.pacer, self.t0, workers=self.workers, shape=shape, area_offset=offset)
            last = self.area
        out.until = self.until
        if again:
            out.held = last
        return out

    def due_between(self, a_ns: int, b_ns: int) -> float:
        """How many sends this schedule holds between two times (its share of the shape's area)."""
        if isinstance(self.pacer, TracePacer):
            return self.pacer.count_between(a_ns - self.t0, b_ns - self.t0)
        if self.shape is None:
            return (b_ns - a_ns) / NS * self.rate
        area = self.shape.area
        return (area((b_ns - self.t0) / NS) - area((a_ns - self.t0) / NS)) / self.workers


def make_schedule(plan: Plan, index: int, t0: int, end: int | None) -> Schedule:
    """Worker `index`'s schedule of the plan's rate (or rate shape, or trace) from t0, ending at `end`."""
    assert plan.load.rate is not None
    if plan.llm is not None and plan.llm.trace_offsets:
        return trace_schedule(plan.llm.trace_offsets, index, plan.spread.workers, t0, end)
    shape = plan.load.shape if plan.load.shape is not None and plan.load.shape.kind == "rate" else None
    pacer = make_pacer(
        plan.load.arrival,
        1.0 if shape is not None else plan.load.rate,
        index,
        plan.spread.workers,
        plan.seed,
        plan.load.burstiness,
    )
    area_offset, phase_ns = 0.0, 0
    if plan.spread.shard is not None and plan.load.arrival == "constant":
        i, n = plan.spread.shard
        if shape is not None:
            # Shard i of n follows 1/n of the shape: starting its sends i/n of a send later in area makes
            # the shards' sends interleave into the whole shape's even sequence.
            area_offset = i / n
        else:
            # Shard i of n runs its own schedule shifted by i sends of the whole run's rate, so the boxes'
            # sends interleave into one even schedule instead of landing together (with --start-at).
            phase_ns = round(i * NS / (n * plan.load.rate))
    return Schedule(
        pacer,
        t0,
        end,
        rate=plan.load.rate / plan.spread.workers,
        workers=plan.spread.workers,
        shape=shape,
        area_offset=area_offset,
        phase_ns=phase_ns,
    )


def trace_schedule(
    offsets: tuple[float, ...], index: int, workers: int, t0: int, end: int | None
) -> Schedule:
    """Worker `index` of `workers`' share of a trace's sends (offsets in s from t0): sends index, index +
    workers, ... (the request count stop gives it exactly that many, and LlmSource their own prompts)."""
    pacer = TracePacer(tuple(round(s * NS) for s in offsets), index, workers)
    return Schedule(pacer, t0, end, rate=len(offsets) / max(offsets[-1], 1.0) / workers, workers=workers)
