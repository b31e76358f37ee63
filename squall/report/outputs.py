"""Every file a run was asked for, written after the run, and the exit code that follows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from squall.result.document import EXIT_INVALID, EXIT_USAGE, STOPPED_BY_SIGNAL, Result

# An output that could not be written (-o, a checkpoint, --html, --csv, --junit) ends the command with this
# code, whatever the run was: what was asked for is not there. (Paths are checked before the run, exit 2.)
EXIT_UNWRITTEN = EXIT_INVALID


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


def _write_html(doc: dict[str, Any], path: Path) -> str:
    from squall.report.html import write_html

    write_html(doc, path)
    return f"report written to {path}"


def _write_csv(doc: dict[str, Any], path: Path) -> str:
    from squall.report.csv import write_csv

    summary_path = write_csv(doc, path)
    return f"series written to {path}, summary to {summary_path}"


def _write_junit(doc: dict[str, Any], path: Path) -> str:
    from squall.report.junit import junit_xml

    path.write_text(junit_xml(doc.get("thresholds", [])))
    return ""


# The files written after a run, by option, in this order (-o is written by the collector process itself).
# A new output is one module and one entry here: writer(doc, path) -> the line to print ("" for none).
OUTPUTS: dict[str, Callable[[dict[str, Any], Path], str]] = {
    "--junit": _write_junit,
    "--html": _write_html,
    "--csv": _write_csv,
}


def write_all(doc: dict[str, Any], files: dict[str, Path | None]) -> list[str]:
    """Write every file asked for ({option: path}, None when not asked), each saying so on stderr; return
    the options whose file could not be written (each said as an error line)."""
    failed = []
    for option, write in OUTPUTS.items():
        path = files.get(option)
        if path is None:
            continue
        try:
            said = write(doc, path)
        except OSError as e:
            typer.echo(f"squall: error: could not write {option} {path}: {e.strerror or e}", err=True)
            failed.append(option)
            continue
        if said:
            typer.echo(said, err=True)
    return failed


def said_unwritten(doc: dict[str, Any], out_path: str | None) -> bool:
    """Say where the run's -o went, or that an output the collector wrote (-o, a soak checkpoint) could not
    be written; True when one could not."""
    unwritten = doc.get("unwritten") or {}
    for output, why in unwritten.items():
        typer.echo(f"squall: error: could not write {output} {why}", err=True)
    if out_path and "-o" not in unwritten:
        typer.echo(f"result written to {out_path}", err=True)
    return bool(unwritten)


def exit_code(result: Result) -> int:
    """The run's exit code: 2 when every worker refused the input, else what the result implies."""
    return EXIT_USAGE if result.usage_error is not None else result.exit_code()


def write_extras(doc: dict[str, Any], html: Path | None, csv_path: Path | None) -> list[str]:
    """Write --html and --csv for a document that is already at hand (hunt, soak, merge); return the
    options whose file could not be written."""
    return write_all(doc, {"--html": html, "--csv": csv_path})
