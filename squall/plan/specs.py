"""What a run sends: one HTTP request, an LLM call's flavour and prompts, a Python workload."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from squall.units import TOKEN, PlanError, parse_duration


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to send, over and over."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def validate(self) -> None:
        """Raise PlanError unless the URL, method and headers can be sent."""
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError as e:
            raise PlanError(f"URL {self.url!r} is not valid: {e}") from None
        if parts.scheme not in ("http", "https"):
            raise PlanError(f"URL {self.url!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise PlanError(f"URL {self.url!r} has no host")
        if parts.username is not None or parts.password is not None:
            # (the URL would be printed and stored in the result, and the credentials never sent)
            shown = self.url.replace(parts.netloc, parts.netloc.rpartition("@")[2])
            raise PlanError(
                f"URL {shown!r} holds credentials (user:password@); send them with -H 'Authorization: ...'"
            )
        if not self.url.isascii() or any(c.isspace() or ord(c) < 32 for c in self.url):
            raise PlanError(f"URL {self.url!r} must be ASCII without spaces; percent-encode the rest")
        if port == 0:
            raise PlanError(f"URL {self.url!r} has port 0")
        if not TOKEN.match(self.method):
            raise PlanError(f"method {self.method!r} is not a valid HTTP method")


KEY_PER = ("request", "user")
GOODPUT_METRICS = ("ttft", "tpot", "e2e", "itl")
_BOUND = re.compile(r"^\s*(ttft|tpot|e2e|itl)\s*<\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: a string (completions, dify, sse) or chat messages, with an optional max_tokens; a
    conversation record's later user turns (`turns`: each its text and max_tokens) follow it, each sent with
    the history so far (the server's answers as received). `input_tokens`: its length in tokens where the
    source knows it (a trace line's), taken instead of counting the text at startup."""

    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    max_tokens: int | None = None
    turns: tuple[Prompt, ...] = ()
    input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class LlmSpec:
    """What makes a run an LLM run: the API flavour, the prompts, keys and how to read the stream."""

    api: str = "chat"
    stream: bool = True
    model: str = "default"
    max_tokens: int | None = None
    temperature: float | None = None
    body_json: tuple[tuple[str, object], ...] = ()
    prompts: tuple[Prompt, ...] = (Prompt("Hello"),)
    api_keys: tuple[str, ...] = ()
    key_per: str = "request"  # "request": each request the next key; "user": each user keeps one
    text_path: str = "choices.0.delta.content"
    done_marker: str = "[DONE]"
    goodput: tuple[tuple[str, float], ...] = ()
    turns: int = 1  # --turns: user turns per session (a dataset record's own turns drive its session)
    max_inflight: int | None = None  # --max-inflight: requests in flight across all sessions
    prefixes: tuple[str, ...] = ()  # --prefix-tokens/--prefixes: shared system prefixes, user u has u % K
    exact_output: bool = False  # --exact-output: also ask for min_tokens = max_tokens and ignore_eos
    cancel_after: float | None = None  # --cancel-after: seconds after the send a stream is abandoned
    cancel_rate: float = 0.0  # --cancel-rate: the share of streams abandoned between first token and end
    trace_offsets: tuple[
        float, ...
    ] = ()  # --trace: each request's send time (s from t0, after --trace-speed);
    # request i of the run sends prompts[i] at trace_offsets[i]

    def validate(self) -> None:
        """Raise PlanError for an unknown API, no prompts or a bad bound."""
        names = api_names()
        if self.api not in names:
            raise PlanError(f"--api {self.api!r} is not one of {', '.join(names)}")
        if not self.prompts:
            raise PlanError("no prompts: the prompts file is empty")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise PlanError(f"--max-tokens must be at least 1 (got {self.max_tokens})")
        if self.key_per not in KEY_PER:
            raise PlanError(f"--key-per {self.key_per!r} is not one of {', '.join(KEY_PER)}")
        for key in self.api_keys:
            if not key or any(c in key for c in "\r\n") or not key.isascii():
                raise PlanError("an API key is empty or has characters a header cannot carry")
        if not 1 <= self.turns <= 10_000:
            raise PlanError(f"--turns must be from 1 to 10,000 (got {self.turns})")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise PlanError(f"--max-inflight must be at least 1 (got {self.max_inflight})")
        if self.cancel_after is not None and not 0 < self.cancel_after <= 86_400:
            raise PlanError(
                f"--cancel-after must be more than 0 s and at most a day (got {self.cancel_after:g} s)"
            )
        if not 0 <= self.cancel_rate <= 1:  # (nan fails too)
            raise PlanError(f"--cancel-rate must be from 0 to 1 (got {self.cancel_rate:g})")
        if self.exact_output and self.api not in ("chat", "completions"):
            raise PlanError(
                f"--exact-output sends min_tokens and ignore_eos, which chat and completions servers (vLLM, "
                f"SGLang) take; --api {self.api} has no such fields: drop --exact-output"
            )
        if self.cancel_rate and not self.stream:
            raise PlanError(
                "--cancel-rate cuts streams between their first token and their end, and --no-stream has "
                "neither; use --cancel-after, or drop --no-stream"
            )
        if self.body_json and (self.turns > 1 or self.prefixes or any(p.turns for p in self.prompts)):
            self._check_session_body()

    def _check_session_body(self) -> None:
        """A session builds the history's field (and a top-level system field) each turn: --body-json must
        not set them (it would replace the conversation or make the body invalid JSON)."""
        from squall.engine.llm.apis import APIS

        shape = APIS[self.api]
        if shape.history_field is not None:
            fields = {shape.history_field}
        else:  # (the one prompt string: whichever field the shape puts it in)
            fields = {k for k, v in shape.body(self, Prompt("\x00")).items() if v == "\x00"}
        if shape.system_field is not None:
            fields.add(shape.system_field)
        for name, _ in self.body_json:
            if name in fields:
                raise PlanError(
                    f'--body-json sets "{name}", which a conversation builds for each turn (--turns, '
                    f'--prefix-tokens/--prefixes or a multi-turn dataset); drop "{name}" from --body-json'
                )


def parse_goodput(text: str) -> tuple[str, float]:
    """Parse a goodput bound such as `ttft<500ms` into (metric, seconds)."""
    m = _BOUND.match(text)
    if not m:
        raise PlanError(f"--goodput {text!r} is not a bound; use e.g. 'ttft<500ms', 'tpot<50ms' or 'e2e<10s'")
    return m.group(1), parse_duration(m.group(2), "--goodput")


def api_names() -> tuple[str, ...]:
    """The API shapes' names, from the engine's registry (the one place a shape is added)."""
    from squall.engine.llm.apis import APIS

    return tuple(APIS)


def api_from_path(url: str) -> str:
    """Guess the API shape from the endpoint path (the registry's first shape that takes it)."""
    from squall.engine.llm.apis import guess_api

    return guess_api(url)


@dataclass(frozen=True, slots=True)
class PySpec:
    """`squall py MODULE:FACTORY`: the factory and the keyword arguments it is called with."""

    target: str
    params: tuple[tuple[str, Any], ...] = ()
    tracemalloc: bool = False


@dataclass(frozen=True, slots=True)
class SoakSpec:
    """Verdict settings: a leak is suspected when the RSS slope is significant and above the threshold."""

    leak_threshold_mb_h: float = 10.0
    checkpoint_s: float = 60.0

    def validate(self) -> None:
        if not 0 <= self.leak_threshold_mb_h <= 1e6:
            raise PlanError(f"--leak-threshold must be 0 or more MB/h (got {self.leak_threshold_mb_h:g})")
        if not 1 <= self.checkpoint_s <= 86_400:
            raise PlanError(f"--checkpoint must be from 1 s to 1 day (got {self.checkpoint_s:g} s)")
