"""The workload seams: a `RequestSource` feeds a transport's channels one request at a time (http, llm); an
`IterationWorkload` runs one coroutine per iteration over `Transport.request` (journey, py). The worker drives
either through the same `Sender` face."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from squall.engine.transport.base import Channel, Owner
    from squall.engine.workload.http import Request


class RequestSource(Protocol):
    """The requests a channel sends (http, llm): the next one's bytes, and the reader of its answer."""

    streams: bool  # whether answers go to an AnswerReader (then a cut answer is `stream_broken`)

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its number (for `reader`)."""
        ...

    def next_request(self) -> tuple[Request, int]:
        """The next request as parts, for a transport that frames requests itself, and its number."""
        ...

    def reader(self, index: int) -> Any:
        """The AnswerReader for request number `index`'s answer, or None when answers are not read."""
        ...


class Sender(Protocol):
    """What a worker drives: a transport with a request source, or an iteration workload."""

    name: str

    async def open(self) -> None:
        """Ready to send (inside the worker's loop)."""

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Open the channels' connections before t0 where it can; how many opened."""
        ...

    def channel(self, owner: Owner) -> Channel:
        """A new channel (a connection, or a virtual user) reporting to `owner`."""
        ...

    def begin(self, measure_start_ns: int) -> None:
        """The run's t0 is known: what starts from `measure_start_ns` on is measured, earlier is warmup."""

    def classify(self, exc: BaseException) -> str:
        """The error kind of a failed send."""
        ...

    def finish(self) -> None:
        """The run is over, before its last window ships: a last word for that window (py: tracemalloc)."""

    async def close(self) -> None:
        """Close every connection and let go of the workload."""


class IterationWorkload(Sender, Protocol):
    """A workload whose one send is one iteration (journey, py): a coroutine over `Transport.request` (or the
    user's own code), recording its parts (steps, journeys, phases) in the worker's recorder itself."""

    measure_start: int  # set by begin(): iterations started earlier are warmup
