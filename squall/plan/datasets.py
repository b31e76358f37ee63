"""Datasets for LLM runs (`--dataset`): ShareGPT, OpenAI messages or prompt files, as Prompts (a multi-turn
record's later user turns in `turns`), checked record by record, sampled by seed."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from squall.plan.prompts import message_text
from squall.plan.specs import Prompt
from squall.units import PlanError

FORMATS = ("auto", "sharegpt", "openai", "prompts")
MAX_SAMPLE = 10_000_000

# ShareGPT's `from` (and the `role` some dumps use instead) -> the chat role.
_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One checked record: its system messages, its user turns each with the assistant text that answered
    it (None: no answer follows), and the record's own max_tokens."""

    system: tuple[str, ...]
    turns: tuple[tuple[str, str | None], ...]
    max_tokens: int | None


def load(path: Path, fmt: str = "auto", sample: int | None = None, seed: int = 0) -> tuple[Prompt, ...]:
    """The prompts of the dataset at `path` in format `fmt` (auto: by content), `sample` of them picked by
    `seed` (without replacement when there are enough); PlanError names FILE:LINE: FIELD for a bad record."""
    if fmt not in FORMATS:
        raise PlanError(f"--dataset-format {fmt!r} is not one of {', '.join(FORMATS)}")
    if sample is not None and not 1 <= sample <= MAX_SAMPLE:
        raise PlanError(f"--dataset-sample must be from 1 to {MAX_SAMPLE:,} (got {sample})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlanError(f"--dataset {str(path)!r} cannot be read: {e.strerror or e}") from None
    objects: Iterator[tuple[str, Any]] = iter(())
    json_like = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"[", b"{"))
    if fmt in ("sharegpt", "openai") or (fmt == "auto" and json_like and path.suffix.lower() != ".txt"):
        objects = _objects(path, raw)
    first = next(objects, None)
    if fmt == "auto":
        fmt = detect(path, raw, first)
    if fmt == "prompts":
        from squall.plan.prompts import load as load_prompts

        if raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            raise PlanError(
                f"--dataset {str(path)!r} is a JSON list; a prompts file is text (a prompt a line) or "
                "JSONL: give --dataset-format sharegpt or openai (or leave it to auto)"
            )
        by_content = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")
        jsonl = None if path.suffix.lower() in (".txt", ".jsonl") else by_content
        return tuple(pick(list(load_prompts(path, "--dataset", jsonl)), sample, seed))
    read = _sharegpt if fmt == "sharegpt" else _openai
    records = [] if first is None else [read(first[1], first[0])]
    records += [read(obj, where) for where, obj in objects]
    records = [r for r in records if r.turns]
    if not records:
        raise PlanError(f"--dataset {str(path)!r} holds no record with a user turn")
    from squall.engine.llm.tokens import make_counter

    count = make_counter()
    return tuple(to_prompt(r, count) for r in pick(records, sample, seed))


def detect(path: Path, raw: bytes, first: tuple[str, Any] | None) -> str:
    """The format of a dataset by its content: a JSON list or JSONL whose first record has `conversations`
    (sharegpt), `messages` (openai) or `prompt` (prompts, JSONL only); other text is a prompt per line."""
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if path.suffix.lower() == ".txt" or not head.startswith((b"[", b"{")):
        return "prompts"
    obj = first[1] if first is not None else None
    if isinstance(obj, dict):
        if "conversations" in obj:
            return "sharegpt"
        if "messages" in obj:
            return "openai"
        if "prompt" in obj and not head.startswith(b"["):
            return "prompts"
    raise PlanError(
        f"--dataset {path}: cannot tell the format from the first record (no 'conversations', 'messages' "
        "or 'prompt'); give --dataset-format sharegpt, openai or prompts"
    )


def pick(items: list[Any], sample: int | None, seed: int) -> list[Any]:
    """`sample` of `items` chosen by `seed` (all of them, in order, for None): without replacement when
    there are enough, else every item once and the rest drawn again."""
    if sample is None:
        return items
    rng = random.Random(seed)
    if sample <= len(items):
        return rng.sample(items, sample)
    return rng.sample(items, len(items)) + rng.choices(items, k=sample - len(items))


def to_prompt(r: Record, count: Callable[[str], int]) -> Prompt:
    """The Prompt of a record: the first user turn (after the system messages), the later ones as `turns`;
    a turn's max_tokens is the record's, else the length in tokens of the answer the record had."""

    def limit(answer: str | None) -> int | None:
        if r.max_tokens is not None:
            return r.max_tokens
        return (count(answer) or None) if answer else None

    (first, answer), *later = r.turns
    head = Prompt(
        text=first if not r.system else "",
        messages=(*(("system", s) for s in r.system), ("user", first)) if r.system else (),
        max_tokens=limit(answer),
    )
    if not later:
        return head
    rest = tuple(Prompt(text=text, max_tokens=limit(a)) for text, a in later)
    return Prompt(head.text, head.messages, head.max_tokens, rest)


def _objects(path: Path, raw: bytes) -> Iterator[tuple[str, Any]]:
    """Every record of a JSON list, or of one object per line, with where it is (file:line or record i)."""
    body = raw.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"["):
        try:
            whole = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise PlanError(f"--dataset {path}: a JSON list that does not parse ({e})") from None
        for i, obj in enumerate(whole):
            yield f"--dataset {path}: record {i}", obj
        return
    # Lines split at \n only: a JSON string may hold U+2028 and the like, which splitlines() would split at.
    for no, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"--dataset {path}:{no}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise PlanError(
                f"{where}: not JSON ({e.msg} at column {e.colno}); give one JSON object per line"
            ) from None
        yield where, obj


def _max_tokens(obj: dict[str, Any], where: str) -> int | None:
    m = obj.get("max_tokens")
    if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
        raise PlanError(f"{where}: max_tokens: {m!r} is not a positive integer; give one, or leave it out")
    return m


def _sharegpt(obj: Any, where: str) -> Record:
    if not isinstance(obj, dict):
        raise PlanError(f"{where}: expected an object with 'conversations'")
    conv = obj.get("conversations")
    if not isinstance(conv, list):
        raise PlanError(f"{where}: conversations: missing or not a list; give [{{from, value}}, ...]")
    messages = []
    for i, m in enumerate(conv):
        field = f"conversations[{i}]"
        if not isinstance(m, dict):
            raise PlanError(f"{where}: {field}: expected an object with 'from' and 'value'")
        who = m.get("from", m.get("role"))
        role = _ROLES.get(who.lower()) if isinstance(who, str) else None
        if role is None:
            raise PlanError(
                f"{where}: {field}.from: {who!r} is not a role; use human, gpt or system (or user, assistant)"
            )
        value = m.get("value", m.get("content"))
        if not isinstance(value, str):
            raise PlanError(f"{where}: {field}.value: missing or not a string; give the turn's text")
        messages.append((role, value))
    return _record(messages, _max_tokens(obj, where))


def _openai(obj: Any, where: str) -> Record:
    if not isinstance(obj, dict):
        raise PlanError(f"{where}: expected an object with 'messages'")
    msgs = obj.get("messages")
    if not isinstance(msgs, list):
        raise PlanError(f"{where}: messages: missing or not a list; give [{{role, content}}, ...]")
    messages = []
    for i, m in enumerate(msgs):
        field = f"messages[{i}]"
        if not isinstance(m, dict):
            raise PlanError(f"{where}: {field}: expected an object with 'role' and 'content'")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise PlanError(f"{where}: {field}.role: {role!r} is not a role; use system, user or assistant")
        messages.append((role, message_text(m.get("content"), f"{where}: {field}.content")))
    return _record(messages, _max_tokens(obj, where))


def _record(messages: list[tuple[str, str]], max_tokens: int | None) -> Record:
    """System messages before the first user turn, then each user turn with the assistant text after it;
    assistant turns before any user turn (some dumps start with one) are left out."""
    system: list[str] = []
    turns: list[list[Any]] = []
    for role, text in messages:
        if role == "user":
            turns.append([text, None])
        elif not turns:
            if role == "system":
                system.append(text)
        elif role == "assistant":
            last = turns[-1]
            last[1] = text if last[1] is None else last[1] + text
        # (a system message between turns is the record's and not sent: the history carries the answers)
    return Record(tuple(system), tuple((t, a) for t, a in turns), max_tokens)
