"""A Python workload's factory (MODULE:FACTORY) and its --param values, checked before any process starts."""

from __future__ import annotations

import importlib
import inspect
import itertools
import os
import sys
from typing import Any

from squall.units import PlanError


def load_factory(target: str) -> Any:
    """`package.module:factory` → the factory; PlanError naming what is missing."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise PlanError(f"{target!r} is not MODULE:FACTORY, e.g. examples.agent_sdk:workload")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # the user's module: any import error is theirs to see, in one line
        raise PlanError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PlanError(f"{module_name!r} has no callable {attr!r}")
    return factory


def params(texts: list[str]) -> dict[str, list[Any]]:
    """--param name=v1,v2 -> {name: [values]}, numbers as numbers."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values:
            raise PlanError(f"--param {text!r} is not name=v1,v2,...")
        if name in grid:
            raise PlanError(f"--param {name} is given twice")
        grid[name] = [number(v.strip()) for v in values.split(",")]
        if any(v == "" for v in grid[name]):
            raise PlanError(f"--param {text!r} has an empty value")
        if name == "concurrency" and not all(isinstance(v, int) and v >= 1 for v in grid[name]):
            raise PlanError("--param concurrency= takes whole numbers of at least 1")
    return grid


def number(text: str) -> Any:
    """`3` -> 3, `0.5` -> 0.5, anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cells(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first name varying slowest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def check_params(target: str, factory: Any, grid: dict[str, list[Any]]) -> None:
    """Every --param (but concurrency, which is squall's) must be one the factory takes."""
    names = [n for n in grid if n != "concurrency"]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: its worker reports what it refuses
    try:
        sig.bind_partial(**dict.fromkeys(names))
    except TypeError:
        takes = ", ".join(p for p in sig.parameters if p != "self") or "no parameters"
        wrong = [n for n in names if n not in sig.parameters]
        raise PlanError(f"--param {', '.join(wrong) or names[0]}: {target} takes {takes}") from None


def load_py_factory(target_text: str) -> Any:
    """The MODULE:FACTORY of a py workload, MODULE looked up from where squall was started (as python -m)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return load_factory(target_text)
