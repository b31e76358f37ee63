"""When an LLM request is abandoned, as a user closing a tab does: a time after its send (--cancel-after), or,
for a seeded share of streams (--cancel-rate), at a uniformly random point between the first token and the
expected end.

The transports' cancel channels ask `Canceller.arm` at each send; they close the connection when the timer
fires or when the stream reaches its cut point, and report `Abandoned` (counted `cancelled`: docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from squall.plan.plan import Plan
from squall.plan.specs import LlmSpec

FIRST_GUESS = 64  # the expected end (content events) of an answer without max_tokens before any answer ended


def draws(seed: int, worker: int, rate: float, sends: int) -> list[float | None]:
    """The first `sends` draws of worker `worker`'s cancel policy: for each send, where in its stream it is
    abandoned (a fraction from 0 to 1 of the way from the first token to the expected end), or None."""
    rng = _rng(seed, worker)
    out: list[float | None] = []
    for _ in range(sends):
        chosen, point = rng.random() < rate, rng.random()
        out.append(point if chosen else None)
    return out


def cut_point(point: float, end: int) -> int:
    """The content event at which a stream expected to end after `end` events is abandoned, `point` (0 to 1)
    of the way from the first one to the end: from 1 to end - 1 (1 when the answer is expected shorter)."""
    if end <= 2:
        return 1
    return 1 + min(end - 2, int(point * (end - 1)))


def _rng(seed: int, worker: int) -> random.Random:
    return random.Random(f"{seed}:cancel:{worker}")


class Canceller:
    """One worker's cancel policy: a timer per send (--cancel-after) and a cut point in content events for
    the streams the seeded draw picks (--cancel-rate); two draws per send, taken or not, so which sends are
    picked depends only on the seed, the worker and the send's rank in the worker."""

    __slots__ = ("after_s", "answers", "ends", "events", "loop", "rate", "rng")

    def __init__(self, spec: LlmSpec, seed: int, worker: int, loop: asyncio.AbstractEventLoop) -> None:
        self.after_s = spec.cancel_after
        self.rate = spec.cancel_rate if spec.stream else 0.0
        self.rng = _rng(seed, worker)
        self.loop = loop
        # The expected end of each prompt's answer in content events (a server streams a token an event):
        # its max_tokens, else None (the running mean of this worker's answers read to their end).
        self.ends = tuple(p.max_tokens or spec.max_tokens for p in spec.prompts)
        self.events = 0  # content events of those answers, and how many they were
        self.answers = 0

    def learn(self, reader: Any) -> None:
        """Count an answer read to its end (recorded ok) into the running mean of answer lengths."""
        if reader is not None and reader.finished == (None,):
            self.events += reader.events()
            self.answers += 1

    def expected_end(self, prompt: int, max_tokens: int | bool | None = False) -> int:
        """The expected length of the answer to prompt number `prompt`, in content events; `max_tokens`:
        the max_tokens its request asked for when the reader knows it (a session's turn; None: none), False
        when the prompt's index says it."""
        end: int | None
        if max_tokens is False:
            end = self.ends[prompt] if 0 <= prompt < len(self.ends) else None
        else:
            end = int(max_tokens) if max_tokens is not None else None
        if end is not None:
            return end
        return round(self.events / self.answers) if self.answers else FIRST_GUESS

    def arm(
        self, cut: Callable[[Any], None], reader: Any, prompt: int
    ) -> tuple[int, asyncio.TimerHandle | None]:
        """For a send about to go: the content event at which its stream is cut (0: never) and the timer
        that calls `cut(reader)` --cancel-after from now (None without it)."""
        at = 0
        if self.rate:
            rng = self.rng
            chosen, point = rng.random() < self.rate, rng.random()
            if chosen:
                at = cut_point(point, self.expected_end(prompt, getattr(reader, "max_tokens", False)))
        timer = None
        if self.after_s is not None:
            loop = self.loop
            timer = loop.call_at(loop.time() + self.after_s, cut, reader)
        return at, timer


def canceller(plan: Plan, worker: int, loop: asyncio.AbstractEventLoop) -> Canceller | None:
    """Worker `worker`'s Canceller, or None when the plan abandons no request (sends are then untouched)."""
    spec = plan.llm
    if spec is None or (spec.cancel_after is None and not spec.cancel_rate):
        return None
    return Canceller(spec, plan.seed, worker, loop)


def cancelling(plan: Plan) -> bool:
    """Whether the plan abandons requests (the transports then make cancel channels)."""
    spec = plan.llm
    return spec is not None and (spec.cancel_after is not None or bool(spec.cancel_rate))
