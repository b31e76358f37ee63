"""The `squall` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from squall.cli import load, results, studies, tools
from squall.cli.options import RedactingGroup

HELP = "A load engine for HTTP and LLM APIs: exact HDR stats, one uvloop worker per core."


def make_app() -> typer.Typer:
    """The app with every command group registered: load, studies, results, tools."""
    app = typer.Typer(
        name="squall",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        cls=RedactingGroup,
    )
    for group in (load, studies, tools, results):
        group.register(app)
    return app


app = make_app()


def main() -> None:
    """Entry point for `python -m squall`."""
    app(prog_name="squall")
