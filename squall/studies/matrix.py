"""`squall py --param name=v1,v2`: one run per cell of the parameter matrix, one table and one document."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from squall.plan.plan import Plan
    from squall.result.document import Result

SCHEMA = "squall/matrix@1"


def run_matrix(
    grid_cells: list[dict[str, Any]],
    plans: list[Plan],
    out: Path | None,
    command: str,
    run: Callable[[Plan], Result] | None = None,
    html: Path | None = None,
) -> int:
    """Run every cell of a --param matrix, one after another; one table and one document for all, and one
    HTML report (`html`) of every cell.

    The document is written after every cell, so a matrix killed in cell 7 keeps the first 6. Ctrl-C or
    SIGTERM ends the cell that runs (kept, marked) and skips the rest (listed in `skipped`)."""
    from squall.engine.supervisor import trap_stops
    from squall.redact import redact_doc, redact_json
    from squall.report.json import write_json
    from squall.report.outputs import EXIT_UNWRITTEN, signal_exit, signals_wait, write_all
    from squall.report.tables import print_matrix
    from squall.result.document import EXIT_INVALID, EXIT_USAGE, STOPPED_BY_SIGNAL
    from squall.units import PlanError, check_writable, distinct

    if html is not None:  # checked before the first cell, as a single run checks its outputs
        try:
            check_writable(html, "--html")
            distinct({"-o": out, "--html": html})
        except PlanError as e:
            print(f"squall: error: {e}", file=sys.stderr)
            return EXIT_USAGE
    if run is None:
        from squall.engine import run

    rows: list[dict[str, Any]] = []
    stopped: list[str] = []
    lost: list[bool] = []  # per cell: could not be measured fully (a single run's exit 3)

    def document() -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": SCHEMA, "command": command, "cells": rows}
        if len(rows) < len(grid_cells):
            doc["skipped"] = [redact_json(c) for c in grid_cells[len(rows) :]]
        return redact_doc(doc)

    with trap_stops(stopped.append):
        for cell, plan in zip(grid_cells, plans, strict=True):
            if stopped:
                break
            shown = redact_json(cell)
            print(f"matrix: {', '.join(f'{k}={v}' for k, v in shown.items())} ...", file=sys.stderr)
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
            lost.append(res.exit_code() == EXIT_INVALID)
            for warning in res.warnings:  # (the cells run quiet: their warnings are said here)
                print(f"matrix: warning: {warning}", file=sys.stderr)
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
        unwritten = write_all(doc, {"--html": html}) if rows else []
    if any(lost):  # as a single run: a closed-model cell at squall's CPU ceiling is flagged, not failed
        return EXIT_INVALID
    if unwritten:
        return EXIT_UNWRITTEN
    if stopped:
        return STOPPED_BY_SIGNAL[stopped[0]]
    return signal_exit(got, 1 if any(not t["ok"] for r in rows for t in r["thresholds"]) else 0)
