"""Run one plan for a command: the engine, the summary printed, the files asked for, the exit code."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from squall.result.document import EXIT_USAGE

if TYPE_CHECKING:
    from squall.plan.plan import Plan


def execute(
    plan: Plan, junit: Path | None = None, html: Path | None = None, csv_path: Path | None = None
) -> int:
    """Run the plan, print its summary, write the files asked for; return the exit code."""
    from squall.engine import run as run_plan
    from squall.engine.supervisor import RunError
    from squall.redact import redact_text
    from squall.report.console import print_summary
    from squall.report.outputs import (
        EXIT_UNWRITTEN,
        exit_code,
        said_unwritten,
        signal_exit,
        signals_wait,
        write_all,
    )
    from squall.units import PlanError, check_writable, distinct

    try:
        for path, option in ((html, "--html"), (csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        out = Path(plan.outputs.out_path) if plan.outputs.out_path else None
        log = Path(plan.outputs.hdr_log) if plan.outputs.hdr_log else None
        distinct({"-o": out, "--html": html, "--csv": csv_path, "--junit": junit, "--hdr-log": log})
    except PlanError as e:
        typer.echo(f"squall: error: {redact_text(str(e))}", err=True)
        return EXIT_USAGE
    try:
        result = run_plan(plan)
    except RunError as e:
        typer.echo(f"squall: error: {redact_text(str(e))}", err=True)
        return 1
    except PlanError as e:  # the box's limits cannot hold the run (squall.engine.limits), found before it
        typer.echo(f"squall: error: {e}", err=True)
        return EXIT_USAGE
    if result.usage_error is not None:  # e.g. a py factory that raises: bad input, not a fault in the target
        typer.echo(f"squall: error: {redact_text(result.usage_error)}", err=True)
        return exit_code(result)
    with signals_wait() as got:
        try:
            print_summary(result.doc)
        except (BrokenPipeError, SystemExit):
            # stdout was closed (`| head`; rich then points stdout at /dev/null and raises SystemExit): the
            # summary has nowhere to go, but the files still do, and the exit code is still the run's.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        unwritten = said_unwritten(result.doc, plan.outputs.out_path)
        failed = write_all(result.doc, {"--junit": junit, "--html": html, "--csv": csv_path})
    code = exit_code(result)
    if unwritten or failed:
        code = max(code, EXIT_UNWRITTEN)
    return signal_exit(got, code)
