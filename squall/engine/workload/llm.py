"""`squall llm`'s requests: every (key, prompt) request built once from parts, cycled from a worker offset;
keys taken per request, or held by each user (`--key-per user`). Conversations (`--turns`, a dataset's
multi-turn records) and shared prefixes make each channel a user with its own session (`Session`), and
`--max-inflight` lends the worker's share of connections to the sessions in turn (`Pool`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import orjson

from squall.engine.llm.apis import APIS, parse_path, prompt_text, request_body
from squall.engine.llm.history import KeyReader, Session, Template, key_part
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import make_counter
from squall.engine.transport.base import Channel
from squall.engine.workload.http import Request, build, frame
from squall.engine.workload.pool import Pool
from squall.plan.plan import Plan

if TYPE_CHECKING:
    from collections.abc import Callable

    from squall.engine.transport.base import Owner
    from squall.engine.workload.base import RequestSource, Sender
    from squall.plan.specs import Prompt


def llm_sender(plan: Plan, connections: int, worker: int) -> Sender:
    """Worker `worker`'s transport over its LLM requests: keys per request or per user, sessions (each user
    its conversations), and with --max-inflight its share of connections lent to its users in turn."""
    from squall.engine.workload import transport_class

    keyed = plan.llm is not None and len(plan.llm.api_keys) > 1
    source = (KeyedSource if keyed else LlmSource)(plan, worker)
    spec = source.spec
    per_user: Callable[[int], RequestSource] | None = None
    if source.sessions:
        per_user = source.session
    elif source.per_user:
        per_user = source.for_user
    if spec.max_inflight is not None:
        # The worker's share of the cap, as of -c (at least one: a worker with no slot would never send).
        slots = min(connections, max(1, plan.spread.share(spec.max_inflight, worker)))
        transport = transport_class(plan.client.transport)(plan, slots, source)  # type: ignore[call-arg]
        return Pool(transport, slots, per_user or (lambda user: source))  # type: ignore[return-value]
    transport = transport_class(plan.client.transport)(plan, connections, source)  # type: ignore[call-arg]
    if per_user is not None:
        return UserKeys(transport, source, per_user)  # type: ignore[return-value]
    return transport  # type: ignore[return-value]


class LlmSource:
    """One worker's LLM requests and their answer readers; keys and prompts rotate independently."""

    streams = True

    def __init__(self, plan: Plan, worker: int) -> None:
        spec = plan.llm
        assert spec is not None
        self.spec = spec
        req = plan.request
        # (a user's Content-Length would be wrong for all prompts but one: squall always sets its own)
        headers = tuple((n, v) for n, v in req.headers if n.lower() != "content-length")
        defaults = [("Content-Type", "application/json")]
        if spec.stream:
            defaults.append(("Accept", "text/event-stream"))
        shape = APIS[spec.api]
        self.requests: list[Request] = []
        for key in spec.api_keys or ("",):
            extra = list(defaults)
            if key:
                extra.extend(shape.auth(key))
            self.requests.append(build("POST", req.url, headers, b"", tuple(extra)))
        self.heads = [r.prefix() for r in self.requests]
        # Each key's part name (summary.by_key), when there are several keys: else none is kept.
        self.key_names = [key_part(k) for k in spec.api_keys] if len(spec.api_keys) > 1 else []
        count = make_counter()
        self.reading = Reading(shape, spec.stream, count, parse_path(spec.text_path), spec.done_marker)
        self.bodies = [orjson.dumps(request_body(spec, p)) for p in spec.prompts]
        self.framed = [frame(body) for body in self.bodies]
        self.input_estimates = [
            count(prompt_text(p)) if p.input_tokens is None else p.input_tokens for p in spec.prompts
        ]
        # The request numbers n go out in blocks of W (one a worker): worker w sends number bW + w of block
        # b, so over all workers every prompt (n mod P) goes once before any goes twice (-n gives each worker
        # its share). A timed run, where one worker can send more than another, moves each worker on to the
        # next slot every R = lcm(P, W) / W blocks (number bW + (w + b // R) mod W), so each worker goes over
        # every prompt, not over every W-th one, and the counts per prompt stay even (with -n it never does).
        # Request n takes key n mod K, stepped on by one more after each lcm(K, P) requests (the span after
        # which (n mod P, n mod K) pairs would repeat), so over K x P requests every (key, prompt) pair is
        # sent once, whatever K and P are (one prompt and two keys included).
        self.cycle = math.lcm(len(self.bodies), len(self.requests))
        self.k, self.worker = 0, worker  # this worker's requests so far
        self.stride = max(1, plan.spread.workers)
        timed = plan.stop.requests is None
        self.rotate = max(1, math.lcm(len(self.bodies), self.stride) // self.stride) if timed else 1 << 62
        # --key-per user: the worker's users are numbered on from those of the workers before it, and user u
        # keeps key u % K all run, so the users spread evenly over the keys across workers.
        self.per_user = spec.key_per == "user" and len(self.requests) > 1
        self.first_user = plan.spread.first_user(plan.load.connections, worker)
        # Conversations and shared prefixes: each user (channel) holds a session (see Session).
        self.shape, self.count = shape, count
        self.multi_turn = spec.turns > 1 or any(p.turns for p in spec.prompts)
        self.sessions = self.multi_turn or bool(spec.prefixes)
        self.templates: dict[tuple[int | None, str], Template] = {}
        self.keys_sent = 0  # sessions' requests so far (each takes the next key, unless --key-per user)
        self.estimates: dict[Prompt, int] = {}  # records' later turns: their input tokens, counted once

    def _number(self) -> int:
        """The request number n of this worker's next request."""
        k = self.k
        self.k = k + 1
        w = self.stride
        return k * w + (self.worker + k // self.rotate) % w

    def _key_index(self, n: int) -> int:
        """The key request number `n` takes: n mod K, stepped on by one after each `cycle` (see __init__)."""
        return (n + n // self.cycle) % len(self.requests)

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its prompt's index (for `reader`)."""
        n = self._number()
        p = n % len(self.bodies)
        return self.heads[self._key_index(n)] + self.framed[p], p

    def next_request(self) -> tuple[Request, int]:
        """The next request, for a transport that frames requests itself, and its prompt's index."""
        n = self._number()
        p = n % len(self.bodies)
        r = self.requests[self._key_index(n)]
        return Request(r.method, r.url, r.headers, self.bodies[p]), p

    def reader(self, prompt: int) -> AnswerReader:
        """A reader for the answer to prompt number `prompt`."""
        return AnswerReader(self.reading, self.input_estimates[prompt])

    def take(self) -> int:
        """The index of the next prompt in the worker's turn."""
        return self._number() % len(self.bodies)

    def for_user(self, user: int) -> UserSource:
        """The requests of the worker's user number `user` (from 0): the worker's prompts, one key."""
        return UserSource(self, (self.first_user + user) % len(self.requests))

    def session(self, user: int) -> Session:
        """The worker's user number `user` (from 0) as a conversation: its sessions one after another."""
        return Session(self, self.first_user + user)

    def request_for(self, key: int, body: bytes) -> Request:
        """A request with key number `key` carrying `body` (a session's turn)."""
        r = self.requests[key]
        return Request(r.method, r.url, r.headers, body)

    def estimate(self, p: Prompt) -> int:
        """The input tokens of a record's later turn, counted once (a count costs ~1 ms a 300-token turn)."""
        n = self.estimates.get(p)
        if n is None:
            n = self.estimates[p] = self.count(prompt_text(p))
        return n

    def template(self, max_tokens: int | None, system: str) -> Template:
        """The body template for a turn asking for `max_tokens` (a top-level `system` prefix in its head)."""
        key = (max_tokens, system)
        t = self.templates.get(key)
        if t is None:
            if len(self.templates) >= 4096:  # (a dataset of many system prompts: kept bounded)
                self.templates.clear()
            t = self.templates[key] = Template(self.shape, self.spec, max_tokens, system)
        return t


class KeyedSource(LlmSource):
    """An LlmSource over several keys taken per request: each answer's reader knows its request's key (the
    transports ask for the reader right after the request, so the key just taken is the one)."""

    def __init__(self, plan: Plan, worker: int) -> None:
        super().__init__(plan, worker)
        self.last_key = ""

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its prompt's index (for `reader`)."""
        n = self._number()
        p = n % len(self.bodies)
        k = self._key_index(n)
        self.last_key = self.key_names[k]
        return self.heads[k] + self.framed[p], p

    def next_request(self) -> tuple[Request, int]:
        """The next request, for a transport that frames requests itself, and its prompt's index."""
        n = self._number()
        p = n % len(self.bodies)
        k = self._key_index(n)
        self.last_key = self.key_names[k]
        r = self.requests[k]
        return Request(r.method, r.url, r.headers, self.bodies[p]), p

    def reader(self, prompt: int) -> AnswerReader:
        """A reader for the answer to prompt number `prompt`, sent with the key just taken."""
        return KeyReader(self.reading, self.input_estimates[prompt], self.last_key)


class UserSource:
    """One user's requests: its worker's prompts in turn, always with the user's one key."""

    streams = True
    __slots__ = ("head", "name", "request", "source")

    def __init__(self, source: LlmSource, key: int) -> None:
        self.source = source
        self.head, self.request = source.heads[key], source.requests[key]
        self.name = source.key_names[key] if source.key_names else None

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its prompt's index."""
        p = self.source.take()
        return self.head + self.source.framed[p], p

    def next_request(self) -> tuple[Request, int]:
        """The next request as parts and its prompt's index."""
        p = self.source.take()
        r = self.request
        return Request(r.method, r.url, r.headers, self.source.bodies[p]), p

    def reader(self, prompt: int) -> AnswerReader:
        """A reader for the answer to prompt number `prompt`, sent with the user's key."""
        source = self.source
        return KeyReader(source.reading, source.input_estimates[prompt], self.name)


class UserKeys:
    """A transport whose every channel is one user with a source of its own: its key (`--key-per user`), or
    its sessions (`per_user`: the source of the worker's user number u); the rest is the transport's own."""

    def __init__(
        self, transport: Any, source: LlmSource, per_user: Callable[[int], RequestSource] | None = None
    ) -> None:
        self.transport = transport
        self.per_user = per_user or source.for_user
        self.users = 0

    def channel(self, owner: Owner) -> Channel:
        """The next user's channel."""
        ch: Channel = self.transport.channel(owner, self.per_user(self.users))
        self.users += 1
        return ch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
