"""Conversations: a session's history kept as encoded JSON bytes, so turn k costs the size of its new messages
(plus the one copy of the body that goes on the wire), never work that grows with k².

A request body is `head + history + tail`. `Template` cuts the body the API shape builds (with --body-json
merged in) around the field that holds the history: a messages array (`ApiShape.history_field`, e.g.
chat's `messages`), whose entries are joined by commas, or, for an API that takes one prompt string
(`history_field` None, e.g. completions), the string itself, whose pieces are joined by a line break. JSON
escapes character by character, so the escaped pieces joined are the escaped whole: the body is byte for byte
what `orjson.dumps` of the whole message list would give.
"""

from __future__ import annotations

import hashlib
import json
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import orjson

from squall.engine.llm.apis import prompt_text, request_body
from squall.engine.llm.stream import AnswerReader, Reading
from squall.plan.specs import Prompt

if TYPE_CHECKING:
    from squall.engine.llm.apis import ApiShape
    from squall.engine.workload.http import Request
    from squall.engine.workload.llm import LlmSource
    from squall.plan.specs import LlmSpec

MARK = "\x00squall:history\x00"  # where the history goes in a template body (no prompt holds a NUL)
TURN_PARTS = 64  # per-turn stats: turns 1..63 each, every later turn pooled into "64+"


def dumps(value: Any) -> bytes:
    """JSON bytes as orjson writes them; text orjson refuses (a lone surrogate, which a server's escaped
    `\\ud800` decodes to) is written with the standard library's \\u escapes instead."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def user_text(p: Prompt) -> str:
    """What a prompt says as one user turn of a conversation: its text, or its first user message (a
    record's system messages and any assistant text it holds are not the user's to say)."""
    if not p.messages:
        return p.text
    return next((content for role, content in p.messages if role == "user"), prompt_text(p))


def key_part(key: str) -> str:
    """The name of an API key's stats part: the first 8 hex digits of its SHA-256 (never the key; the same
    on every box and run). A bearer value ("Bearer K") is named by its K, as `squall llm` sends K."""
    if key[:7].lower() == "bearer ":
        key = key[7:].strip()
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def turn_part(turn: int) -> str:
    """The name of turn `turn`'s stats part: "1".."63", then "64+" for every later turn."""
    return str(turn) if turn < TURN_PARTS else f"{TURN_PARTS}+"


class Template:
    """A request body cut around its history: `head` and `tail` bytes, and how history entries are written.

    `system`: a system prefix for an API whose system prompt is a top-level field (`system_field` on the
    shape, e.g. Anthropic's `system`): it is written into the head; any other API carries it as the history's
    first entry (see `History.start`).
    """

    __slots__ = ("head", "listed", "max_tokens", "sep", "shape", "system_field", "system_in_head", "tail")

    def __init__(self, shape: ApiShape, spec: LlmSpec, max_tokens: int | None, system: str = "") -> None:
        self.shape = shape
        self.max_tokens = max_tokens  # (the turn's: what --cancel-rate takes as its expected end)
        field: str | None = shape.history_field
        system_field = self.system_field = shape.system_field
        self.system_in_head = bool(system and system_field)
        # (one user message where the API takes a list: the field is a list, whatever a text prompt gives)
        given = Prompt(messages=(("user", MARK),)) if field is not None else Prompt(MARK)
        body = request_body(spec, Prompt(given.text, given.messages, max_tokens))
        if system and system_field:
            body[system_field] = system
        mark = orjson.dumps(MARK)
        self.listed = field is not None and isinstance(body.get(field), list)
        if self.listed:
            body[field] = MARK  # (the whole list's place)
            self.sep = b","
        else:
            mark = mark[1:-1]  # (inside the prompt string)
            self.sep = b"\\n"
        encoded = dumps(body)
        at = encoded.find(mark)
        if at < 0:  # --body-json replaced the history's field: the body is sent as the user wrote it
            self.head, self.tail = encoded, b""
            return
        self.head, self.tail = encoded[:at], encoded[at + len(mark) :]
        if self.listed:
            self.head += b"["
            self.tail = b"]" + self.tail


class History:
    """One session's history so far, encoded: its entries joined by a separator, appended in place."""

    __slots__ = ("empty_ok", "encoded", "listed", "message", "n", "sep")

    def __init__(self, shape: ApiShape, listed: bool) -> None:
        self.message = shape.message
        self.listed = listed
        self.empty_ok = shape.empty_message_ok or not listed  # (else an empty answer is left out)
        self.sep = b"," if listed else b"\\n"
        self.encoded = bytearray()
        self.n = 0

    def clear(self) -> None:
        """Forget the history (a new session)."""
        self.encoded = bytearray()
        self.n = 0

    def add(self, role: str, text: str) -> None:
        """Append one entry: a message (`role`, `text`), or for a prompt-string API the text alone."""
        piece = dumps(self.message(role, text)) if self.listed else dumps(text)[1:-1]
        if self.n:
            self.encoded += self.sep
        self.encoded += piece
        self.n += 1

    def add_encoded(self, piece: bytes) -> None:
        """Append an entry encoded already (a user's system prefix, encoded once)."""
        if self.n:
            self.encoded += self.sep
        self.encoded += piece
        self.n += 1

    def entry(self, role: str, text: str) -> bytes:
        """One entry's bytes as `add` would write them."""
        return dumps(self.message(role, text)) if self.listed else dumps(text)[1:-1]

    def body(self, template: Template) -> bytes:
        """The whole request body: the template's head, the history, its tail."""
        return b"".join((template.head, self.encoded, template.tail))

    def value(self) -> bytes:
        """The history field's JSON value alone (the messages array, or the prompt string)."""
        return b"[" + self.encoded + b"]" if self.listed else b'"' + self.encoded + b'"'


class KeyReader(AnswerReader):
    """An AnswerReader that knows the name of its request's API key (`key_part`), None when the run has at
    most one key: the recorder counts its answer in that key's part too (summary.by_key)."""

    __slots__ = ("counted", "key", "parted")

    def __init__(self, how: Reading, input_tokens: int, key: str | None = None) -> None:
        super().__init__(how, input_tokens)
        self.key = key
        # Whether the answer is counted in parts (a key's, a turn's): set once, so an answer without any
        # (one key, not multi-turn) costs the recorder one attribute read.
        self.parted = key is not None
        self.counted: tuple[int, int, bool, int] | None = None

    def tokens(self) -> tuple[int, int, bool, int]:
        """AnswerReader.tokens, counted on the first call (once finished): the run and the answer's parts
        (its key's, its turn's) and a session's next input estimate all ask."""
        if self.counted is None:
            self.counted = super().tokens()
        return self.counted


class SessionReader(KeyReader):
    """An AnswerReader of a session's turn: it knows the max_tokens the turn asked for (--cancel-rate's
    expected end; a session's turns are not the worker's prompts by index)."""

    __slots__ = ("max_tokens",)

    def __init__(
        self, how: Reading, input_tokens: int, max_tokens: int | None, key: str | None = None
    ) -> None:
        super().__init__(how, input_tokens, key)
        self.max_tokens = max_tokens


class TurnReader(SessionReader):
    """A SessionReader that knows which turn of its session it answers (for the per-turn stats)."""

    __slots__ = ("turn",)

    def __init__(
        self,
        how: Reading,
        input_tokens: int,
        turn: int,
        max_tokens: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(how, input_tokens, max_tokens, key)
        self.turn = turn
        self.parted = True


class Session:
    """One user's conversations, one after another (a channel's request source).

    A session starts with the next prompt of the worker's rotation: its messages (or text) are turn 1, and it
    lasts its record's turns (`Prompt.turns`) or else --turns; every later user message is the record's next
    turn or the rotation's next prompt. Turn k's body carries the history: the user's prefix (as a system
    message, the prompt string's start, or the shape's top-level system field), every earlier user message
    and every answer exactly as read (`AnswerReader.text()`), then the new user message. An answer that was
    cut or never came (a stream broken, a timeout, a refused connection) goes on as what arrived, maybe ""
    (left out for an API that refuses an empty message, `ApiShape.empty_message_ok`):
    the session never restarts, so its turn count and its prefix reuse stay what the workload says; the
    error is counted with the request as usual.
    """

    streams = True
    __slots__ = (
        "history",
        "key",
        "keyed",
        "last",
        "length",
        "prefix",
        "prefix_tokens",
        "record",
        "source",
        "system",
        "template",
        "tokens",
        "top",
        "turn",
    )

    def __init__(self, source: LlmSource, user: int) -> None:
        self.source = source
        spec = source.spec
        self.key = user % len(source.heads) if source.per_user else -1  # -1: the next key per request
        self.keyed: str | None = None  # the name of the key the turn in flight went with (several keys)
        prefix = spec.prefixes[user % len(spec.prefixes)] if spec.prefixes else ""
        top = bool(prefix and source.shape.system_field)
        self.system = prefix if top else ""  # (written into the body's head by its template)
        self.top = self.system  # the session's top-level system text: the prefix and its record's system
        self.template = source.template(spec.max_tokens, self.system)
        self.history = History(source.shape, self.template.listed)
        self.prefix = self.history.entry("system", prefix) if prefix and not top else b""
        self.prefix_tokens = source.count(prefix) if prefix else 0
        self.record: Prompt | None = None
        self.turn = self.length = self.tokens = 0
        self.last: AnswerReader | None = None  # the reader of this user's request before

    def _advance(self) -> None:
        """Add the last answer and the next user message (or start the next session)."""
        last, self.last = self.last, None
        source, history = self.source, self.history
        if self.turn < self.length:
            text = ""
            if last is not None:
                last.finish(perf_counter_ns())  # (the recorder has finished it already, unless unanswered)
                text = last.text()
                if text:  # (the answer's tokens as the recorder counted them, from usage else estimated,
                    # less its reasoning, which is never sent back)
                    self.tokens += max(0, last.tokens()[0] - last.reasoning_tokens())
            if text or history.empty_ok:  # (Anthropic refuses an empty message; two user turns are fine)
                history.add("assistant", text)
            self.turn += 1
            record = self.record
            assert record is not None
            if record.turns:
                nxt = record.turns[self.turn - 2]
                self._user(prompt_text(nxt), nxt.max_tokens, source.estimate(nxt))
            else:  # (the rotation's next prompt: its user message only, never its system or assistant text)
                p = source.take()
                nxt = source.spec.prompts[p]
                said = user_text(nxt)
                tokens = source.input_estimates[p] if said is nxt.text else source.count(said)
                self._user(said, nxt.max_tokens, tokens)
            return
        p = source.take()
        record = self.record = source.spec.prompts[p]
        self.length = 1 + len(record.turns) if record.turns else source.spec.turns
        self.turn = 1
        history.clear()
        self.tokens = self.prefix_tokens
        if self.prefix:
            history.add_encoded(self.prefix)
        self.top = self.system
        if record.messages and history.listed:
            # (an API with a top-level system field, e.g. Anthropic's, takes the record's system messages)
            lifted = self.template.system_field is not None
            for role, content in record.messages:
                if role == "system" and lifted:
                    self.top = f"{self.top}\n{content}" if self.top else content
                else:
                    history.add(role, content)
            self.tokens += source.input_estimates[p]
            self.template = source.template(record.max_tokens or source.spec.max_tokens, self.top)
        else:
            self._user(prompt_text(record), record.max_tokens, source.input_estimates[p])

    def _user(self, text: str, max_tokens: int | None, tokens: int) -> None:
        self.history.add("user", text)
        self.tokens += tokens
        self.template = self.source.template(max_tokens or self.source.spec.max_tokens, self.top)

    def _key(self) -> int:
        source = self.source
        k = self.key
        if k < 0:
            k = source.keys_sent
            source.keys_sent = k + 1
            k %= len(source.heads)
        if source.key_names:
            self.keyed = source.key_names[k]
        return k

    def next(self) -> tuple[bytes, int]:
        """The next turn's wire bytes (one join: request head, length, body head, history, body tail)."""
        self._advance()
        t, encoded = self.template, self.history.encoded
        n = len(t.head) + len(encoded) + len(t.tail)
        head = self.source.heads[self._key()]
        return b"".join((head, b"Content-Length: %d\r\n\r\n" % n, t.head, encoded, t.tail)), 0

    def next_request(self) -> tuple[Request, int]:
        """The next turn as a request, for a transport that frames requests itself."""
        self._advance()
        return self.source.request_for(self._key(), self.history.body(self.template)), 0

    def reader(self, index: int) -> AnswerReader:
        """The reader of this turn's answer (its text is the next turn's assistant message)."""
        source = self.source
        max_tokens = self.template.max_tokens
        if source.multi_turn:
            r: AnswerReader = TurnReader(source.reading, self.tokens, self.turn, max_tokens, self.keyed)
        else:
            r = SessionReader(source.reading, self.tokens, max_tokens, self.keyed)
        self.last = r
        return r
