"""Every file a run was asked for, written after the run, and the exit code that follows."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from squall.plan.plan import Plan
from squall.result.document import EXIT_USAGE, STOPPED_BY_SIGNAL
from squall.units import PlanError


def check_writable(path: Path, option: str = "--out") -> None:
    if path.is_dir():
        raise PlanError(f"{option} {str(path)!r} is a directory; give a file name")
    parent = path.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        where = f"directory {str(parent)!r}"
        raise PlanError(f"{option} {str(path)!r}: {where} does not exist or is not writable")


@contextlib.contextmanager
def signals_wait() -> Iterator[list[str]]:
    """Ctrl-C and SIGTERM wait while result files are written: they are noted in the list, and act after."""
    from squall.engine.supervisor import trap_stops

    got: list[str] = []
    with trap_stops(got.append):
        yield got


def signal_exit(got: list[str], code: int) -> int:
    """The exit code once the files are written: 130/143 if Ctrl-C/SIGTERM came meanwhile."""
    return STOPPED_BY_SIGNAL[got[0]] if got else code


def refused_by_workers(doc: dict) -> str | None:
    """The usage error every worker stopped on before sending anything (a py factory, say), if that is
    what happened."""
    lost = doc.get("workers_lost") or {}
    prefix = "squall.units.PlanError: "
    if lost and not doc["summary"]["requests"] and all(why.startswith(prefix) for why in lost.values()):
        return str(next(iter(lost.values())))[len(prefix) :]
    return None


def execute(
    plan: Plan, junit: Path | None = None, html: Path | None = None, csv_path: Path | None = None
) -> int:
    from squall.engine import run as run_plan
    from squall.engine.supervisor import RunError
    from squall.report.console import print_summary

    try:
        for path, option in ((html, "--html"), (csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        out = Path(plan.out_path) if plan.out_path else None
        log = Path(plan.hdr_log) if plan.hdr_log else None
        distinct({"-o": out, "--html": html, "--csv": csv_path, "--junit": junit, "--hdr-log": log})
    except PlanError as e:
        typer.echo(f"squall: error: {e}", err=True)
        return EXIT_USAGE
    try:
        result = run_plan(plan)
    except RunError as e:
        typer.echo(f"squall: error: {e}", err=True)
        return 1
    refused = refused_by_workers(result.doc)
    if refused:  # e.g. a py factory that raises: the workers found bad input, not a fault in the target
        typer.echo(f"squall: error: {refused}", err=True)
        return EXIT_USAGE
    with signals_wait() as got:
        try:
            print_summary(result.doc)
        except (BrokenPipeError, SystemExit):
            # stdout was closed (`| head`; rich then points stdout at /dev/null and raises SystemExit): the
            # summary has nowhere to go, but the files still do, and the exit code is still the run's.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if plan.out_path:
            typer.echo(f"result written to {plan.out_path}", err=True)
        if junit is not None:
            from squall.report.junit import junit_xml

            junit.write_text(junit_xml(result.doc.get("thresholds", [])))
        write_extras(result.doc, html, csv_path)
    return signal_exit(got, result.exit_code())


def distinct(paths: dict[str, Path | None]) -> None:
    """No two files given to one command may be the same file (the last write would win)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = path.resolve()
        if key in seen:
            raise PlanError(f"{option} and {seen[key]} name the same file {str(path)!r}")
        seen[key] = option


def write_extras(doc: dict, html: Path | None, csv_path: Path | None) -> None:
    if html is not None:
        from squall.report.html import write_html

        write_html(doc, html)
        typer.echo(f"report written to {html}", err=True)
    if csv_path is not None:
        from squall.report.csv import write_csv

        summary_path = write_csv(doc, csv_path)
        typer.echo(f"series written to {csv_path}, summary to {summary_path}", err=True)
