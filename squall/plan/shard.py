"""Sharding in one place: this box's share of -c, -r, -n and of the stages, for `--shard I/N`."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from squall.plan.load import Shape, Stage
from squall.units import PlanError

MAX_SHARDS = 10_000
MAX_WORKERS = 1024


@dataclass(frozen=True, slots=True)
class Spread:
    """Where the load runs: `workers` processes on this box, `shard` (index, count) of the boxes, all of
    them starting at `start_at` (wall-clock epoch seconds) when given."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    shard: tuple[int, int] | None = None
    start_at: float | None = None

    def validate(self) -> None:
        """Raise PlanError for a worker count or shard out of range."""
        if not 1 <= self.workers <= MAX_WORKERS:
            raise PlanError(f"--workers must be from 1 to {MAX_WORKERS} (got {self.workers})")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1] <= MAX_SHARDS:
            raise PlanError(f"--shard {self.shard[0]}/{self.shard[1]}: I must be from 0 to N-1")

    def share(self, total: int, worker: int) -> int:
        """Worker `worker`'s even share of `total` (connections or requests)."""
        return share(total, worker, self.workers)

    def share_offset(self, total: int, worker: int) -> int:
        """How many of `total` the workers before `worker` take (where its share starts)."""
        return sum(self.share(total, w) for w in range(worker))

    def user_ids(self, users: int, worker: int) -> Iterator[int]:
        """Worker `worker`'s user numbers: its share of `users` first, then (users added past `users`, by the
        dashboard) numbers after every worker's, interleaved so no two workers take the same one."""
        start = self.share_offset(users, worker)
        yield from range(start, start + self.share(users, worker))
        for k in itertools.count():
            yield users + k * self.workers + worker

    def first_user(self, users: int, worker: int) -> int:
        """The number of worker `worker`'s first user, counted across workers and the boxes of a --shard run
        (box i's users from i x `users`, this box's users: exact when the shards' users are equal)."""
        box = self.shard[0] * users if self.shard is not None else 0
        return box + self.share_offset(users, worker)


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (I from 0) as (i, n); raises PlanError."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise PlanError(f"--shard {text!r} is not I/N, e.g. 0/4") from None
    if not 0 <= i < n <= MAX_SHARDS:
        raise PlanError(f"--shard {text!r}: I must be from 0 to N-1")
    return i, n


def share(total: int, i: int, n: int) -> int:
    """Part i of n's even share of `total` (the first `total % n` parts take one more)."""
    return total // n + (1 if i < total % n else 0)


def split_fields(text: str, fields: dict[str, Any], users_from_stages: bool = False) -> None:
    """Replace connections, rate, requests and seed in `fields` with shard I of N's share; set `shard`."""
    i, n = parse_shard(text)
    connections = int(fields.get("connections", 64))
    if connections < n and not users_from_stages:
        raise PlanError(f"--shard {text!r}: {connections} connections cannot be split {n} ways")
    fields["connections"] = max(1, share(connections, i, n))
    if fields.get("rate") is not None:
        fields["rate"] = float(fields["rate"]) / n
    if fields.get("requests") is not None:
        fields["requests"] = share(int(fields["requests"]), i, n)
        if fields["requests"] == 0:
            raise PlanError(f"--shard {text!r}: -n is smaller than the number of shards")
    fields["shard"] = (i, n)
    fields["seed"] = int(fields.get("seed", 0)) * 1_000_003 + i


def split_shape(shape: Shape, i: int, n: int) -> Shape:
    """Shard i of n's share of every stage: a rate divided by n, users split evenly so the shards add up."""

    def part(target: float) -> float:
        if shape.kind == "rate":
            return target / n
        return share(round(target), i, n)

    return Shape(shape.kind, tuple(Stage(s.duration_s, part(s.target)) for s in shape.stages))
