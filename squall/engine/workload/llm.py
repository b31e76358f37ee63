"""`squall llm`'s requests: every (key, prompt) request built once from parts, cycled from a worker offset."""

from __future__ import annotations

import orjson

from squall.engine.llm.apis import APIS, parse_path, prompt_text, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.engine.llm.tokens import make_counter
from squall.engine.workload.http import Request, build, frame
from squall.plan.plan import Plan


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
        self.requests: list[Request] = []
        for key in spec.api_keys or ("",):
            extra = list(defaults)
            if key:
                extra.append(("Authorization", key if key.startswith("Bearer ") else f"Bearer {key}"))
            self.requests.append(build("POST", req.url, headers, b"", tuple(extra)))
        self.heads = [r.prefix() for r in self.requests]
        count = make_counter()
        shape = APIS[spec.api]
        self.reading = Reading(shape, spec.stream, count, parse_path(spec.text_path), spec.done_marker)
        self.bodies = [orjson.dumps(request_body(spec, p)) for p in spec.prompts]
        self.framed = [frame(body) for body in self.bodies]
        self.input_estimates = [count(prompt_text(p)) for p in spec.prompts]
        # Worker w sends request numbers w, w + W, w + 2W, ...: over all workers every prompt goes once
        # before any goes twice. Keys step on by one more each time the prompts come round, so over K x P
        # requests every (key, prompt) pair is sent, not just K or P of them.
        self.n = worker
        self.stride = max(1, plan.spread.workers)

    def next(self) -> tuple[bytes, int]:
        """The next request's wire bytes and its prompt's index (for `reader`)."""
        n = self.n
        self.n = n + self.stride
        prompts = len(self.bodies)
        p = n % prompts
        return self.heads[(n + n // prompts) % len(self.heads)] + self.framed[p], p

    def next_request(self) -> tuple[Request, int]:
        """The next request, for a transport that frames requests itself, and its prompt's index."""
        n = self.n
        self.n = n + self.stride
        prompts = len(self.bodies)
        p = n % prompts
        r = self.requests[(n + n // prompts) % len(self.requests)]
        return Request(r.method, r.url, r.headers, self.bodies[p]), p

    def reader(self, prompt: int) -> AnswerReader:
        """A reader for the answer to prompt number `prompt`."""
        return AnswerReader(self.reading, self.input_estimates[prompt])
