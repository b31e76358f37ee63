"""The command line: parse flags, build a Plan, call the library, map the Result to an exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

EXIT_INTERRUPTED = 130  # as squall.result.document has it; repeated so that a Ctrl-C here needs no import


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for `squall` and `python -m squall`: exit with the command's code.

    The command modules are imported here, not when this package is, so that a Ctrl-C while they load is one
    line and exit 130 rather than a traceback.
    """
    try:
        from squall.cli.commands import run_cli

        code = run_cli(argv)
    except KeyboardInterrupt:
        print("squall: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def __getattr__(name: str) -> Any:
    # the Typer app (squall.cli.commands) on first use, so `from squall.cli import main` stays light.
    if name == "app":
        from squall.cli.commands import app

        return app
    raise AttributeError(f"module 'squall.cli' has no attribute {name!r}")


__all__ = ["app", "main"]
