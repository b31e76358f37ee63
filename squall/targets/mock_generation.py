"""The mock's generation: what one server's connections share (options, seeded draws of faults, token
counts and jitter, --max-running slots, pre-built bytes) and the paced writers the wheel steps (an SSE
stream event by event, a whole reply once its generation time is up)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from time import perf_counter_ns
from typing import TYPE_CHECKING

from squall.targets import mock_apis as apis
from squall.targets import mock_events as ev
from squall.targets import mock_metrics
from squall.targets.mock_options import FAULTS, MAX_TOKENS, MockOptions, MockState

if TYPE_CHECKING:
    from squall.targets.mock_llm import _MockProtocol

CATCH_UP_NS = 1_000_000


class Mock:
    """What the connections of one server share: options, state, random draws, the wheel, pre-built bytes."""

    def __init__(self, opts: MockOptions, state: MockState, loop: asyncio.AbstractEventLoop) -> None:
        self.opts, self.state, self.wheel = opts, state, ev.Wheel(loop)
        # One generator per purpose, so turning on jitter does not change which requests get faults.
        self._faults_rng = random.Random(f"{opts.seed}:faults")
        self._tokens_rng = random.Random(f"{opts.seed}:tokens")
        self._jitter_rng = random.Random(f"{opts.seed}:jitter")
        self.ttft_ns, self.itl_ns = round(opts.ttft_s * 1e9), round(opts.itl_s * 1e9)
        self.jitter, self.created = opts.jitter, int(time.time())
        self.events = tuple(  # [kind][chunked]
            tuple(ev.Events(kind, chunked, opts.model, self.created) for chunked in (False, True))
            for kind in (ev.CHAT, ev.COMPLETIONS, ev.DIFY)
        )
        self.models = ev.models_body(opts.model, self.created)
        self.builder = apis.Builder(opts.model, self.created)
        if state.received.maxlen != opts.keep_received:
            state.received = deque(state.received, maxlen=opts.keep_received)
        names = [name for name in FAULTS if getattr(opts, name) > 0]
        ends = itertools.accumulate(getattr(opts, name) for name in names)  # fractions end to end on [0, 1)
        self._thresholds = list(zip(ends, names, strict=True))

    def fault(self) -> str | None:
        """Which fault this request gets, if any (one draw per request)."""
        if self._thresholds:
            r = self._faults_rng.random()
            for threshold, name in self._thresholds:
                if r < threshold:
                    self.state.faults[name] += 1
                    return name
        return None

    def count(self, cap: int | None, exact: bool, least: int = 0) -> int:
        """Tokens to make: the server's draw (at least min_tokens) capped by max_tokens, or max_tokens itself
        with ignore_eos."""
        if cap is not None and exact:
            return min(cap, MAX_TOKENS)
        drawn = self.opts.tokens
        if self.opts.tokens_stddev > 0:
            drawn = max(1, min(MAX_TOKENS, round(self._tokens_rng.gauss(drawn, self.opts.tokens_stddev))))
        if drawn < least:
            drawn = min(least, MAX_TOKENS)
        return drawn if cap is None else min(cap, drawn)

    def thinking(self, asked: int | None) -> int:
        """Reasoning tokens before the answer: as the body says (mock_reasoning_tokens), else
        --reasoning-tokens, else --tokens for a request that asks for reasoning (reasoning_effort, reasoning,
        thinking)."""
        if asked is not None and asked >= 0:
            return min(asked, MAX_TOKENS)
        if self.opts.reasoning_tokens:
            return self.opts.reasoning_tokens
        return self.opts.tokens if asked is not None else 0

    def release(self) -> None:
        """A generation ended: start the next waiting requests that --max-running now lets in."""
        state = self.state
        state.running -= 1
        queue, limit = state.queue, self.opts.max_running
        while queue and state.running < limit:
            conn, args = queue.popleft()
            if conn.waiting:  # else its connection went while it waited (already uncounted)
                conn.waiting = False
                state.waiting -= 1
                conn.generate(*args)

    def metrics(self) -> bytes:
        """GET /metrics: the Prometheus text of this server's counters and gauges."""
        state = self.state
        return mock_metrics.render(
            state.metrics, self.opts.model, state.running, state.waiting, self.opts.max_running
        )

    def delay(self, base_ns: int) -> int:
        """`base_ns` times uniform(1 - jitter, 1 + jitter)."""
        if not self.jitter:
            return base_ns
        return round(base_ns * (1.0 - self.jitter + 2.0 * self.jitter * self._jitter_rng.random()))


class Stream:
    """One SSE response in flight: which token comes next, when it is due, and where it goes wrong.

    Content event k is due at arrival + ttft + k delays and is never written before then. After a late event
    the next may catch up, but no gap is shorter than its delay minus CATCH_UP_NS: the schedule slips instead.
    A stream runs through phases (reasoning, then text or a tool call's arguments); every token of every phase
    keeps the same schedule, and what goes between two phases is written with the next phase's first token.
    """

    __slots__ = (
        "arrival", "bad", "bad_at", "base", "came", "chunked", "conn", "count", "cycle", "drop_at", "due",
        "i", "n", "phases", "record", "seq0", "switch_at", "tail",
    )  # fmt: skip

    def __init__(
        self,
        conn: _MockProtocol,
        phases: list[apis.Phase],
        count: int,
        tail: bytes,
        arrival: int,
        chunked: bool,
        came: int,
    ) -> None:
        # arrival: when generation began (the schedule's origin); came: when the request arrived (before any
        # wait behind --max-running), the origin of the TTFT and latency the mock reports.
        self.conn, self.count, self.tail, self.arrival, self.chunked = conn, count, tail, arrival, chunked
        self.came = came
        self.i, self.drop_at, self.bad_at, self.due = 0, -1, -1, arrival
        self.bad = b""  # set with bad_at
        self.record: list[int] | None = None
        self.phases = phases
        self.base, self.switch_at = 0, -1
        self.cycle: tuple[bytes, ...] = ()
        self.n, self.seq0 = 1, -1
        if phases:
            self._switch()

    def _switch(self) -> bytes:
        """Start the next phase at token i; return what goes before its first token."""
        phase = self.phases[0]
        del self.phases[0]
        self.base, self.cycle, self.n, self.seq0 = self.i, phase.cycle, len(phase.cycle), phase.seq0
        self.switch_at = self.i + phase.count if self.phases else -1
        return phase.before

    def step(self) -> None:
        """Write the event that is due (the wheel calls this) and schedule the next."""
        conn = self.conn
        transport = conn.transport
        if transport is None or conn.stream is not self:
            return
        i = self.i
        if i == self.drop_at:
            conn.end_stream(dropped=True)
            return
        if i == self.count:  # only an empty stream has nothing before its tail
            transport.write(self.tail)
            conn.end_stream(dropped=False)
            return
        t = perf_counter_ns()
        before = self._switch() if i == self.switch_at else b""
        data = self.cycle[(i - self.base) % self.n]
        if self.seq0 >= 0:  # a Responses event: numbered here
            data = ev.frame(data + b"%d}\n\n" % (self.seq0 + i - self.base), self.chunked)
        if before:
            data = before + data
        if i == self.bad_at:
            data = self.bad + data
        mock = conn.mock
        if i == 0:
            mock.state.metrics.ttft.observe((t - self.came) / 1e9)
        self.i = i = i + 1
        mock.state.events_sent += 1
        if self.record is not None:
            self.record.append(t)
        if i == self.count:
            transport.write(data + self.tail)
            conn.end_stream(dropped=False)
            return
        transport.write(data)
        itl = mock.delay(mock.itl_ns) if mock.jitter else mock.itl_ns
        due, soonest = self.due + itl, t + itl - CATCH_UP_NS
        if -(-due // 1_000_000) * 1_000_000 < soonest:  # the wheel writes no sooner than due's ms boundary
            due = soonest
        self.due = due
        mock.wheel.add(self, due)


class Reply:
    """A whole (non-streaming) response waiting out its generation time."""

    __slots__ = ("came", "close", "conn", "ok", "payload", "tokens", "ttft_s")

    def __init__(
        self,
        conn: _MockProtocol,
        payload: bytes,
        close: bool,
        came: int,
        tokens: int,
        ttft_s: float,
        ok: bool,
    ) -> None:
        self.conn, self.payload, self.close = conn, payload, close
        self.came, self.tokens, self.ttft_s, self.ok = came, tokens, ttft_s, ok

    def step(self) -> None:
        """Write the response (the wheel calls this once it is due)."""
        conn = self.conn
        mock, transport = conn.mock, conn.transport
        mock.release()
        if transport is not None and not transport.is_closing():
            metrics = mock.state.metrics
            metrics.generation_tokens += self.tokens
            if self.ok:
                metrics.success += 1
                metrics.ttft.observe(self.ttft_s)
                metrics.e2e.observe((perf_counter_ns() - self.came) / 1e9)
            transport.write(self.payload)
            conn.finish(self.close)
