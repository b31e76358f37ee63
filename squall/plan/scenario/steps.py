"""Scenario files, one step at a time: requests and LLM calls, their headers, extracts and checks; and
the `file:line: field: problem` messages every part of the loader raises."""

from __future__ import annotations

import re
from typing import Any

import orjson
import yaml

from squall.plan.scenario.model import (
    Expect,
    Extract,
    LlmCall,
    Step,
    Template,
    parse_json_path,
    template,
)
from squall.units import PlanError, parse_header

NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
BUILTINS = ("user", "iteration", "worker")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class YamlMap(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each key (1-based)."""

    line = 0
    key_lines: dict[str, int]


class YamlLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> YamlMap:  # type: ignore[override]
        out = YamlMap(super().construct_mapping(node, deep=True))
        out.line = node.start_mark.line + 1
        out.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
        return out


YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, YamlLoader.construct_mapping)


class Where:
    """Builds `file:line: field: problem` messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Any, key: str | None, where: str, problem: str) -> PlanError:
        line = 0
        if isinstance(node, YamlMap):
            line = node.key_lines.get(key, node.line) if key is not None else node.line
        return PlanError(f"{self.source}:{line}: {where}: {problem}")


def encodable(w: Where, node: dict, key: str, where: str) -> None:
    """A json: body (or an LLM step's extra body) must be JSON: no 65-bit integers, !!binary or !!set."""
    if key in node:
        try:
            orjson.dumps(node[key])
        except TypeError as e:
            raise w.fail(node, key, where, f"cannot be sent as JSON: {e}") from None


def parse_headers(w: Where, node: Any, key: str, where: str) -> tuple[tuple[str, Template], ...]:
    value = node.get(key) if isinstance(node, dict) else None
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
        raise w.fail(node, key, where, "must map header names to strings")
    for name, text in value.items():
        try:  # the same rules as -H; a {{variable}} is checked for what it stands for at run time
            parse_header(f"{name}: {'' if '{{' in str(text) else text}")
        except PlanError as e:
            raise w.fail(node, key, f"{where}.{name}", str(e)) from None
    return tuple((str(k), template(str(v))) for k, v in value.items())


def merged(shared: tuple[tuple[str, Template], ...], own: tuple[tuple[str, Template], ...]) -> tuple:
    """The file's headers, then the step's: a step's header replaces the file's of that name (any case)."""
    names = {name.lower() for name, _ in own}
    return tuple(h for h in shared if h[0].lower() not in names) + own


def parse_step(w: Where, s: Any, where: str, seen: set[str], shared: tuple) -> Step:
    if not isinstance(s, dict):
        raise PlanError(f"{w.source}: {where}: must be a mapping with name and request or llm")
    for key in s:
        if key not in ("name", "request", "llm", "extract", "expect"):
            raise w.fail(
                s, key, f"{where}.{key}", "unknown field; expected name, request, llm, extract, expect"
            )
    name = s.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise w.fail(s, "name", f"{where}.name", "must be a name of letters, digits, _ or -")
    where = f"{where} ({name})"
    if ("request" in s) == ("llm" in s):
        raise w.fail(s, None, where, "needs exactly one of request or llm")
    llm = None
    body: Template | None = None
    body_is_json = False
    if "request" in s:
        r = s["request"]
        if not isinstance(r, dict):
            raise w.fail(s, "request", f"{where}.request", "must be {method, path, headers, json | body}")
        for key in r:
            if key not in ("method", "path", "headers", "json", "body"):
                raise w.fail(r, key, f"{where}.request.{key}", "unknown field")
        method = str(r.get("method", "GET")).upper()
        if method not in METHODS:
            raise w.fail(r, "method", f"{where}.request.method", f"must be one of {', '.join(METHODS)}")
        path = r.get("path", "/")
        if "json" in r and "body" in r:
            raise w.fail(r, "json", f"{where}.request", "use either json or body, not both")
        if "json" in r:
            encodable(w, r, "json", f"{where}.request.json")
            body, body_is_json = template(r["json"]), True
        elif "body" in r:
            if not isinstance(r["body"], str):
                raise w.fail(r, "body", f"{where}.request.body", "must be text (use json: for objects)")
            body = template(r["body"])
        headers = merged(shared, parse_headers(w, r, "headers", f"{where}.request.headers"))
        node = r
    else:
        c = s["llm"]
        if not isinstance(c, dict):
            raise w.fail(s, "llm", f"{where}.llm", "must be {path, model, prompt, max_tokens}")
        for key in c:
            if key not in (
                "path",
                "api",
                "model",
                "prompt",
                "max_tokens",
                "stream",
                "headers",
                "body",
                "history",
            ):
                raise w.fail(c, key, f"{where}.llm.{key}", "unknown field")
        path = c.get("path", "/v1/chat/completions")
        api = c.get("api") or guess_api(str(path), own_fields=True)
        steps_apis = step_apis()
        if api not in steps_apis:
            raise w.fail(c, "api", f"{where}.llm.api", f"must be {_one_of(steps_apis)}")
        prompt = c.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise w.fail(c, "prompt", f"{where}.llm.prompt", "must be a non-empty string")
        max_tokens = c.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise w.fail(c, "max_tokens", f"{where}.llm.max_tokens", "must be a whole number of at least 1")
        extra = c.get("body", {})
        if not isinstance(extra, dict):
            raise w.fail(c, "body", f"{where}.llm.body", "must be a mapping of extra request fields")
        if not isinstance(c.get("stream", True), bool):
            raise w.fail(c, "stream", f"{where}.llm.stream", "must be true or false (unquoted)")
        if not isinstance(c.get("history", False), bool):
            raise w.fail(c, "history", f"{where}.llm.history", "must be true or false (unquoted)")
        if not isinstance(c.get("model", "default"), str):
            raise w.fail(c, "model", f"{where}.llm.model", "must be a string")
        encodable(w, c, "body", f"{where}.llm.body")
        llm = LlmCall(
            api=api,
            model=str(c.get("model", "default")),
            prompt=template(prompt),
            max_tokens=max_tokens,
            stream=bool(c.get("stream", True)),
            extra=template(extra),
            history=bool(c.get("history", False)),
        )
        method = "POST"
        headers = merged(shared, parse_headers(w, c, "headers", f"{where}.llm.headers"))
        node = c
    if not isinstance(path, str) or not path.startswith("/"):
        raise w.fail(node, "path", f"{where}.path", "must start with /")
    extracts = _extracts(w, s, where)
    expect = _expect(w, s, where)
    step = Step(
        name=name,
        method=method,
        path=template(path),
        headers=headers,
        body=body,
        body_is_json=body_is_json,
        llm=llm,
        extract=extracts,
        expect=expect,
        line=s.line if isinstance(s, YamlMap) else 0,
    )
    used = set(step.path.names)
    for _, h in headers:
        used |= h.names
    if body is not None:
        used |= body.names
    if llm is not None:
        used |= llm.prompt.names | llm.extra.names
    if expect.body_contains is not None:  # checked after extract: it may use this step's own extracts
        used |= expect.body_contains.names - {e.name for e in extracts}
    unknown = sorted(used - seen)
    if unknown:
        known = ", ".join(sorted(seen))
        raise w.fail(
            s, None, where, f"uses {{{{{unknown[0]}}}}}, which no earlier step extracts (known: {known})"
        )
    return step


def step_apis() -> tuple[str, ...]:
    """The API shapes an LLM step may use: those that read their own fields (a step has no --text-path)."""
    from squall.engine.llm.apis import APIS

    return tuple(name for name, shape in APIS.items() if not shape.text_path)


def guess_api(path: str, own_fields: bool = False) -> str:
    """The engine's guess of the API an endpoint path speaks (asked lazily: the plan sits above it)."""
    from squall.engine.llm.apis import guess_api as guess

    return guess("http://h" + path, own_fields)


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _extracts(w: Where, s: dict, where: str) -> tuple[Extract, ...]:
    raw = s.get("extract")
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise w.fail(
            s, "extract", f"{where}.extract", "must map variable names to $.json.paths or header:Name"
        )
    out = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in BUILTINS:
            raise w.fail(raw, name, f"{where}.extract.{name}", "is not a free variable name")
        if not isinstance(spec, str):
            raise w.fail(raw, name, f"{where}.extract.{name}", "must be a $.json.path or header:Name")
        if spec.lower().startswith("header:"):
            header = spec.split(":", 1)[1].strip()
            if not header:
                raise w.fail(
                    raw, name, f"{where}.extract.{name}", "header: needs a name, e.g. header:Location"
                )
            out.append(Extract(name, header=header))
            continue
        try:
            out.append(Extract(name, path=parse_json_path(spec)))
        except ValueError as e:
            raise w.fail(raw, name, f"{where}.extract.{name}", str(e)) from None
    return tuple(out)


def _expect(w: Where, s: dict, where: str) -> Expect:
    raw = s.get("expect")
    if raw is None:
        return Expect()
    if not isinstance(raw, dict):
        raise w.fail(s, "expect", f"{where}.expect", "must be {status: 200 | [200, 201], body: TEXT}")
    for key in raw:
        if key not in ("status", "body"):
            raise w.fail(raw, key, f"{where}.expect.{key}", "unknown field; expected status or body")
    status = raw.get("status", [])
    status = [status] if isinstance(status, int) else status
    if not isinstance(status, list) or not all(isinstance(v, int) and 100 <= v <= 599 for v in status):
        raise w.fail(raw, "status", f"{where}.expect.status", "must be a status code or a list of them")
    body = raw.get("body")
    if body is not None and not isinstance(body, str):
        raise w.fail(raw, "body", f"{where}.expect.body", "must be text the body contains")
    return Expect(tuple(status), template(body) if body is not None else None)
