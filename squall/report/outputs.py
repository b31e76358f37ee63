"""Every file a run was asked for, written after the run, and the exit code that follows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from squall.result.document import EXIT_USAGE, STOPPED_BY_SIGNAL, Result


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


def write_all(doc: dict[str, Any], files: dict[str, Path | None]) -> None:
    """Write every file asked for ({option: path}, None when not asked), each saying so on stderr."""
    for option, write in OUTPUTS.items():
        path = files.get(option)
        if path is not None:
            said = write(doc, path)
            if said:
                typer.echo(said, err=True)


def exit_code(result: Result) -> int:
    """The run's exit code: 2 when every worker refused the input, else what the result implies."""
    return EXIT_USAGE if result.usage_error is not None else result.exit_code()


def write_extras(doc: dict[str, Any], html: Path | None, csv_path: Path | None) -> None:
    """Write --html and --csv for a document that is already at hand (hunt, soak, merge)."""
    write_all(doc, {"--html": html, "--csv": csv_path})
