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

import yaml

from squall.plan.load import parse_stage, parse_stages, parse_think
from squall.plan.scenario.model import (
    Journey,
    Scenario,
)
from squall.plan.scenario.steps import BUILTINS, NAME, Where, YamlLoader, parse_headers, parse_step
from squall.plan.thresholds import parse_threshold
from squall.units import PlanError, parse_duration


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
        doc = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        if mark is None and isinstance(getattr(e, "position", None), int):  # a character YAML never allows
            line = str(text[: e.position].count("\n") + 1)
        why = " ".join(
            str(getattr(e, "problem", None) or e).splitlines()[0].split()
        )  # (no "in <string>" lines)
        raise PlanError(f"{p}:{line}: not valid YAML: {why}") from None
    except RecursionError:  # e.g. a json: body of lists nested 500 deep
        raise PlanError(f"{p}: nested too deeply (lists or mappings inside each other)") from None
    try:
        return parse_scenario(doc, str(p), p.parent)
    except RecursionError:
        raise PlanError(f"{p}: nested too deeply (lists or mappings inside each other)") from None


def parse_scenario(doc: Any, source: str, base_dir: Path) -> Scenario:
    w = Where(source)
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
    headers = parse_headers(w, doc, "headers", "headers")
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
    w: Where, doc: dict, think: str | None, stages: tuple[str, ...], thresholds: tuple[str, ...]
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


def _strings(w: Where, doc: dict, key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise w.fail(doc, key, key, "must be a list of strings")
    return tuple(str(v) for v in value)


def _data(w: Where, doc: dict, base_dir: Path) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], str]:
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


def _journey(w: Where, j: Any, where: str, variables: set[str], headers: tuple) -> Journey:
    if not isinstance(j, dict):
        raise PlanError(f"{w.source}: {where}: must be a mapping with name, weight and steps")
    for key in j:
        if key not in ("name", "weight", "steps"):
            raise w.fail(j, key, f"{where}.{key}", "unknown field; expected name, weight, steps")
    name = j.get("name")
    if not isinstance(name, str) or not NAME.match(name):
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
        step = parse_step(w, s, f"{where}.steps[{i}]", seen, headers)
        if any(step.name == other.name for other in steps):
            raise w.fail(
                s, "name", f"{where}.steps[{i}].name", f"{step.name!r} is used twice in this journey"
            )
        steps.append(step)
        seen |= {e.name for e in step.extract}
    return Journey(name, float(weight), tuple(steps))
