"""Scenario files: the YAML loader, with errors that name the line and field, that builds the model.

The schema is documented in docs/scenarios.md. Loading turns the file into frozen specs: templates are
compiled (`{{name}}` -> variable), JSONPath subsets parsed, variables checked against what each step can see.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from squall.plan.load import parse_stage, parse_stages, parse_think
from squall.plan.scenario.model import (
    Expect,
    Extract,
    Journey,
    LlmCall,
    Scenario,
    Step,
    Template,
    parse_json_path,
    template,
)
from squall.plan.specs import api_names
from squall.plan.thresholds import parse_threshold
from squall.units import PlanError, parse_duration, parse_header

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
BUILTINS = ("user", "iteration", "worker")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class _Map(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each key (1-based)."""

    line = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Map:  # type: ignore[override]
        out = _Map(super().construct_mapping(node, deep=True))
        out.line = node.start_mark.line + 1
        out.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
        return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)


class _Where:
    """Builds `file:line: field: problem` messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Any, key: str | None, where: str, problem: str) -> PlanError:
        line = 0
        if isinstance(node, _Map):
            line = node.key_lines.get(key, node.line) if key is not None else node.line
        return PlanError(f"{self.source}:{line}: {where}: {problem}")


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and check a scenario file; raise PlanError naming the line and field of any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(
            f"scenario file {str(p)!r} cannot be read: {getattr(e, 'strerror', None) or e}"
        ) from None
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        raise PlanError(f"{p}:{line}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    return parse_scenario(doc, str(p), p.parent)


def parse_scenario(doc: Any, source: str, base_dir: Path) -> Scenario:
    w = _Where(source)
    if not isinstance(doc, dict):
        raise PlanError(f"{source}:1: the file must be a mapping with base_url and scenarios")
    known = {"base_url", "users", "duration", "think", "stages", "thresholds", "data", "scenarios", "headers"}
    for key in doc:
        if key not in known:
            raise w.fail(doc, key, str(key), f"unknown field; expected one of {', '.join(sorted(known))}")
    base_url = doc.get("base_url")
    try:
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        parts = host = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise w.fail(doc, "base_url", "base_url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise w.fail(
            doc, "base_url", "base_url", "must not hold credentials; use headers: {Authorization: ...}"
        )
    if parts.query or parts.fragment:
        raise w.fail(doc, "base_url", "base_url", "must not have a query or fragment; put them in each path")
    users = doc.get("users")
    if users is not None and (not isinstance(users, int) or isinstance(users, bool) or users < 1):
        raise w.fail(doc, "users", "users", "must be a whole number of at least 1")
    duration = None
    if doc.get("duration") is not None:
        try:
            duration = parse_duration(str(doc["duration"]), "duration")
        except PlanError as e:
            raise w.fail(doc, "duration", "duration", str(e)) from None
    think = doc.get("think")
    if think is not None and not isinstance(think, str):
        raise w.fail(doc, "think", "think", "must be like 1s-3s, 2s or exp:2s")
    stages = _strings(w, doc, "stages")
    if stages:
        for key in ("users", "duration"):
            if doc.get(key) is not None:
                raise w.fail(doc, key, key, "not with stages: the stages set the users and the duration")
    thresholds = _strings(w, doc, "thresholds")
    _check_load_fields(w, doc, think, stages, thresholds)
    columns, rows, per = _data(w, doc, base_dir)
    headers = _headers(w, doc, "headers", "headers")
    raw = doc.get("scenarios")
    if not isinstance(raw, list) or not raw:
        raise w.fail(doc, "scenarios", "scenarios", "must be a non-empty list of {name, weight, steps}")
    variables = set(BUILTINS) | set(columns)
    journeys = []
    names: set[str] = set()
    for i, j in enumerate(raw):
        journeys.append(_journey(w, j, f"scenarios[{i}]", variables, headers))
        if journeys[-1].name in names:
            raise w.fail(j, "name", f"scenarios[{i}].name", f"{journeys[-1].name!r} is used twice")
        names.add(journeys[-1].name)
    return Scenario(
        source=source,
        base_url=base_url.rstrip("/"),
        journeys=tuple(journeys),
        users=users,
        duration_s=duration,
        think=think,
        stages=stages,
        thresholds=thresholds,
        data_columns=columns,
        data_rows=rows,
        data_per=per,
        headers=headers,
    )


def _check_load_fields(
    w: _Where, doc: dict, think: str | None, stages: tuple[str, ...], thresholds: tuple[str, ...]
) -> None:
    """think, stages and thresholds parse as their command-line twins do; errors name the line and field."""
    checks: list[tuple[str, str, Callable[[], object]]] = []
    if think is not None:
        checks.append(("think", "think", partial(parse_think, think, "")))
    checks += [("stages", f"stages[{i}]", partial(parse_stage, st, "")) for i, st in enumerate(stages)]
    checks.append(("stages", "stages", partial(parse_stages, list(stages), "")))  # together: one kind
    checks += [
        ("thresholds", f"thresholds[{i}]", partial(parse_threshold, e, "")) for i, e in enumerate(thresholds)
    ]
    for key, where, check in checks:
        try:
            check()
        except PlanError as e:
            raise w.fail(doc, key, where, str(e)) from None


def _strings(w: _Where, doc: dict, key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise w.fail(doc, key, key, "must be a list of strings")
    return tuple(str(v) for v in value)


def _data(w: _Where, doc: dict, base_dir: Path) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], str]:
    data = doc.get("data")
    if data is None:
        return (), (), "user"
    if not isinstance(data, dict) or not isinstance(data.get("csv"), str):
        raise w.fail(doc, "data", "data", "must be {csv: FILE, per: user|iteration}")
    for key in data:
        if key not in ("csv", "per"):
            raise w.fail(data, key, f"data.{key}", "unknown field; expected csv, per")
    per = data.get("per", "user")
    if per not in ("user", "iteration"):
        raise w.fail(data, "per", "data.per", "must be user or iteration")
    path = Path(data["csv"])
    if not path.is_absolute():
        path = base_dir / path
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # (-sig: a BOM, as Excel writes)
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [tuple(r) for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise w.fail(data, "csv", "data.csv", f"{str(path)!r} cannot be read: {e}") from None
    if not header:
        raise w.fail(data, "csv", "data.csv", f"{str(path)!r} has no header row")
    columns = tuple(h.strip() for h in header)
    for i, c in enumerate(columns):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c):
            raise w.fail(data, "csv", "data.csv", f"column {c!r} is not a variable name (letters, digits, _)")
        if c in BUILTINS:
            raise w.fail(data, "csv", "data.csv", f"column {c!r} is a built-in variable; rename it")
        if c in columns[:i]:
            raise w.fail(data, "csv", "data.csv", f"column {c!r} appears twice")
    if not rows:
        raise w.fail(data, "csv", "data.csv", f"{str(path)!r} has a header but no rows")
    for n, r in enumerate(rows, start=2):
        if len(r) != len(columns):
            raise w.fail(
                data, "csv", "data.csv", f"{path.name} row {n} has {len(r)} fields, not {len(columns)}"
            )
    return columns, tuple(rows), per


def _encodable(w: _Where, node: dict, key: str, where: str) -> None:
    """A json: body (or an LLM step's extra body) must be JSON: no 65-bit integers, !!binary or !!set."""
    if key in node:
        try:
            orjson.dumps(node[key])
        except TypeError as e:
            raise w.fail(node, key, where, f"cannot be sent as JSON: {e}") from None


def _headers(w: _Where, node: Any, key: str, where: str) -> tuple[tuple[str, Template], ...]:
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


def _journey(w: _Where, j: Any, where: str, variables: set[str], headers: tuple) -> Journey:
    if not isinstance(j, dict):
        raise PlanError(f"{w.source}: {where}: must be a mapping with name, weight and steps")
    for key in j:
        if key not in ("name", "weight", "steps"):
            raise w.fail(j, key, f"{where}.{key}", "unknown field; expected name, weight, steps")
    name = j.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise w.fail(j, "name", f"{where}.name", "must be a name of letters, digits, _ or -")
    weight = j.get("weight", 1)
    if (
        not isinstance(weight, (int, float))
        or isinstance(weight, bool)
        or not 0 < weight < float("inf")  # (nan fails too)
    ):
        raise w.fail(j, "weight", f"{where}.weight", "must be a finite number greater than 0")
    raw = j.get("steps")
    if not isinstance(raw, list) or not raw:
        raise w.fail(j, "steps", f"{where}.steps", "must be a non-empty list of steps")
    seen = set(variables)
    steps = []
    for i, s in enumerate(raw):
        step = _step(w, s, f"{where}.steps[{i}]", seen, headers)
        if any(step.name == other.name for other in steps):
            raise w.fail(
                s, "name", f"{where}.steps[{i}].name", f"{step.name!r} is used twice in this journey"
            )
        steps.append(step)
        seen |= {e.name for e in step.extract}
    return Journey(name, float(weight), tuple(steps))


def _step(w: _Where, s: Any, where: str, seen: set[str], shared: tuple) -> Step:
    if not isinstance(s, dict):
        raise PlanError(f"{w.source}: {where}: must be a mapping with name and request or llm")
    for key in s:
        if key not in ("name", "request", "llm", "extract", "expect"):
            raise w.fail(
                s, key, f"{where}.{key}", "unknown field; expected name, request, llm, extract, expect"
            )
    name = s.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
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
            _encodable(w, r, "json", f"{where}.request.json")
            body, body_is_json = template(r["json"]), True
        elif "body" in r:
            if not isinstance(r["body"], str):
                raise w.fail(r, "body", f"{where}.request.body", "must be text (use json: for objects)")
            body = template(r["body"])
        headers = shared + _headers(w, r, "headers", f"{where}.request.headers")
        node = r
    else:
        c = s["llm"]
        if not isinstance(c, dict):
            raise w.fail(s, "llm", f"{where}.llm", "must be {path, model, prompt, max_tokens}")
        for key in c:
            if key not in ("path", "api", "model", "prompt", "max_tokens", "stream", "headers", "body"):
                raise w.fail(c, key, f"{where}.llm.{key}", "unknown field")
        path = c.get("path", "/v1/chat/completions")
        api = c.get("api") or _api_of(str(path))
        if api not in api_names() or api == "sse":
            raise w.fail(c, "api", f"{where}.llm.api", "must be chat, completions or dify")
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
        if not isinstance(c.get("model", "default"), str):
            raise w.fail(c, "model", f"{where}.llm.model", "must be a string")
        _encodable(w, c, "body", f"{where}.llm.body")
        llm = LlmCall(
            api=api,
            model=str(c.get("model", "default")),
            prompt=template(prompt),
            max_tokens=max_tokens,
            stream=bool(c.get("stream", True)),
            extra=template(extra),
        )
        method = "POST"
        headers = shared + _headers(w, c, "headers", f"{where}.llm.headers")
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
        line=s.line if isinstance(s, _Map) else 0,
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


def _api_of(path: str) -> str:
    if path.endswith("/chat-messages"):
        return "dify"
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return "completions"
    return "chat"


def _extracts(w: _Where, s: dict, where: str) -> tuple[Extract, ...]:
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


def _expect(w: _Where, s: dict, where: str) -> Expect:
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
