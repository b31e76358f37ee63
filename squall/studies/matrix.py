"""`squall py --param name=v1,v2`: one run per cell of the parameter matrix, one table and one document."""

from __future__ import annotations

import inspect
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squall.units import PlanError

if TYPE_CHECKING:
    from squall.plan.plan import Plan
    from squall.result.document import Result

SCHEMA = "squall/matrix@1"


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


def run_matrix(
    grid_cells: list[dict[str, Any]],
    plans: list[Plan],
    out: Path | None,
    command: str,
    run: Callable[[Plan], Result] | None = None,
) -> int:
    """Run every cell of a --param matrix, one after another; one table and one document for all.

    The document is written after every cell, so a matrix killed in cell 7 keeps the first 6. Ctrl-C or
    SIGTERM ends the cell that runs (kept, marked) and skips the rest (listed in `skipped`)."""
    from squall.engine.supervisor import trap_stops
    from squall.report.console import print_matrix
    from squall.report.json import write_json
    from squall.report.outputs import signal_exit, signals_wait
    from squall.result.document import EXIT_INVALID, STOPPED_BY_SIGNAL

    if run is None:
        from squall.engine import run

    rows: list[dict[str, Any]] = []
    stopped: list[str] = []

    def document() -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": SCHEMA, "command": command, "cells": rows}
        if len(rows) < len(grid_cells):
            doc["skipped"] = grid_cells[len(rows) :]
        return doc

    with trap_stops(stopped.append):
        for cell, plan in zip(grid_cells, plans, strict=True):
            if stopped:
                break
            print(f"matrix: {', '.join(f'{k}={v}' for k, v in cell.items())} ...", file=sys.stderr)
            res = run(plan)
            reason = res.doc["meta"].get("stop_reason", "")
            rows.append(
                {
                    "params": cell,
                    "summary": res.summary,
                    "valid": res.valid,
                    "warnings": res.warnings,
                    "thresholds": res.doc.get("thresholds", []),
                    "error_samples": res.doc.get("error_samples", {}),
                    "tracemalloc": res.doc.get("tracemalloc"),
                    "stop_reason": reason,
                }
            )
            if reason in ("interrupted", "terminated"):
                stopped.append(reason)
            if out is not None:
                write_json(document(), str(out))
    with signals_wait() as got:
        doc = document()
        print_matrix(doc)
        if out is not None:
            write_json(doc, str(out))
            print(f"matrix written to {out}", file=sys.stderr)
    if any(not r["valid"] for r in rows):
        return EXIT_INVALID
    if stopped:
        return STOPPED_BY_SIGNAL[stopped[0]]
    return signal_exit(got, 1 if any(not t["ok"] for r in rows for t in r["thresholds"]) else 0)
