"""The scenario model: weighted multi-step user journeys as frozen specs (templates compiled, paths parsed).

The YAML loader that builds it is squall.plan.scenario.load; the schema is documented in docs/scenarios.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(-?\d+)\]|\[['\"]([^'\"]+)['\"]\]")


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `{{var}}` holes, or any other JSON value with templated strings inside."""

    value: Any
    names: frozenset[str]

    def render(self, env: dict[str, Any]) -> Any:
        return _render(self.value, env)


def _render(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = _VAR.fullmatch(value.strip())
        if whole:  # "{{id}}" alone keeps the variable's type (a number stays a number in JSON)
            return env[whole.group(1)]
        return _VAR.sub(lambda m: str(env[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _render(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, env) for v in value]
    return value


def _names(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_VAR.findall(value))
    if isinstance(value, dict):
        return set().union(*(_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names(v) for v in value)) if value else set()
    return set()


def template(value: Any) -> Template:
    return Template(_plain(value), frozenset(_names(value)))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A JSONPath subset: `$`, `.key`, `['key']`, `[index]` (negative counts from the end)."""

    text: str
    parts: tuple[str | int, ...]

    def find(self, doc: Any) -> Any:
        """The value at the path, or raise LookupError."""
        node = doc
        for part in self.parts:
            if isinstance(part, int):
                if not isinstance(node, list) or not -len(node) <= part < len(node):
                    raise LookupError(self.text)
            elif not isinstance(node, dict) or part not in node:
                raise LookupError(self.text)
            node = node[part]
        return node


def parse_json_path(text: str) -> JsonPath:
    if not text.startswith("$"):
        raise ValueError("a JSONPath starts with $, e.g. $.id or $.items[0].id")
    parts: list[str | int] = []
    pos = 1
    while pos < len(text):
        m = _PATH_PART.match(text, pos)
        if not m:
            raise ValueError(f"cannot read {text[pos:]!r}; the subset is $.key, $['key'] and $[0]")
        key, index, quoted = m.groups()
        parts.append(int(index) if index is not None else key if key is not None else quoted)
        pos = m.end()
    return JsonPath(text, tuple(parts))


@dataclass(frozen=True, slots=True)
class Extract:
    """Where a variable comes from: the JSON body at a path, or a response header."""

    name: str
    path: JsonPath | None = None
    header: str | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    status: tuple[int, ...] = ()  # empty: any status below 400
    body_contains: Template | None = None


@dataclass(frozen=True, slots=True)
class LlmCall:
    api: str
    model: str
    prompt: Template
    max_tokens: int | None
    stream: bool
    extra: Template
    history: bool = False  # carry the iteration's conversation: earlier history steps' prompts and answers


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a journey: plain HTTP or an LLM call."""

    name: str
    method: str
    path: Template
    headers: tuple[tuple[str, Template], ...]
    body: Template | None  # JSON (dict/list) or text
    body_is_json: bool
    llm: LlmCall | None
    extract: tuple[Extract, ...]
    expect: Expect
    line: int


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    weight: float
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario file, ready to run."""

    source: str
    base_url: str
    journeys: tuple[Journey, ...]
    users: int | None = None
    duration_s: float | None = None
    think: str | None = None
    stages: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    data_columns: tuple[str, ...] = ()
    data_rows: tuple[tuple[str, ...], ...] = ()
    data_per: str = "user"
    headers: tuple[tuple[str, Template], ...] = field(default=())

    @property
    def step_names(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for j in self.journeys:
            for s in j.steps:
                seen[s.name] = None
        return tuple(seen)

    def row(self, n: int) -> dict[str, str]:
        if not self.data_rows:
            return {}
        return dict(zip(self.data_columns, self.data_rows[n % len(self.data_rows)], strict=True))
