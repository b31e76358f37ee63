"""A Python workload's factory (MODULE:FACTORY) and its --param values, checked before any process starts."""

from __future__ import annotations

import importlib
import inspect
import itertools
from typing import TYPE_CHECKING, Any

from squall.units import PlanError

if TYPE_CHECKING:
    from squall.plan.build import LoadFlags
    from squall.plan.plan import Plan


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


def matrix_plans(
    target: str,
    flags: LoadFlags,
    users: int | None,
    iterations: int | None,
    param: tuple[str, ...],
    tracemalloc: bool,
) -> tuple[list[dict[str, Any]], list[Plan]]:
    """`squall py`'s validated plans, one per cell of the --param matrix (one cell without a matrix): a
    matrix's cells run quiet and write no file of their own (the matrix writes one document)."""
    from dataclasses import replace

    from squall.plan import build
    from squall.plan.specs import PySpec, RequestSpec
    from squall.units import check_writable

    factory = build.load_py_factory(target)
    grid = params(list(param))
    check_params(target, factory, grid)
    grid_cells = cells(grid)
    if len(grid_cells) > 1:
        if flags.html is not None or flags.csv_path is not None or flags.junit is not None:
            raise PlanError(
                "--html, --csv and --junit take one run; a --param matrix writes its one table to -o"
            )
        if flags.shard is not None or flags.start_at is not None or flags.prometheus_port is not None:
            raise PlanError("--shard, --start-at and --prometheus-port take one run, not a --param matrix")
    cell_flags = flags if len(grid_cells) == 1 else replace(flags, quiet=True, out=None)
    plans: list[Plan] = []
    for cell in grid_cells:
        if "concurrency" in cell and users is not None:
            raise PlanError("--param concurrency= sets -c for each cell; drop -c")
        given = tuple((k, v) for k, v in cell.items() if k != "concurrency")
        plans.append(
            build.build(
                RequestSpec(url="http://127.0.0.1/"),
                cell_flags,
                connections=cell.get("concurrency", users),
                default_connections=10,
                requests=iterations,
                py=PySpec(target, given, tracemalloc),
            )
        )
    if len(grid_cells) > 1 and flags.out is not None:
        check_writable(flags.out)
    return grid_cells, plans
