"""The `squall` command: one Typer app, one module per command group, and usage errors as one line."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from typing import Any

import typer

from squall.cli import load, results, studies, tools

try:  # recent typer carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors  # type: ignore[no-redef]
from squall.result.document import EXIT_INTERRUPTED, EXIT_USAGE

HELP = "A load engine for HTTP and LLM APIs: exact HDR stats, one uvloop worker per core."


class SquallTyper(typer.Typer):
    """A Typer app whose command-line errors are one line (`squall: error: ...`) and exit 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sys.exit(run_cli(kwargs.get("args", args[0] if args else None), self))


def make_app() -> typer.Typer:
    """The app with every command group registered: load, studies, results, tools."""
    app = SquallTyper(
        name="squall", help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False
    )
    app.callback()(_app_options)
    for group in (load, studies, tools, results):
        group.register(app)
    return app


def _show_version(value: bool) -> None:
    if value:
        from squall import __version__

        typer.echo(f"squall {__version__}")
        raise typer.Exit()


def _app_options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print squall's version and exit."
    ),
) -> None:
    """A load engine for HTTP and LLM APIs: exact HDR stats, one uvloop worker per core."""


app = make_app()


def run_cli(argv: Sequence[str] | None = None, typer_app: typer.Typer | None = None) -> int:
    """Run one command line; return its exit code. A usage error (unknown option, a value of the wrong
    type, a missing argument) is one line on stderr and exit 2; Ctrl-C is one line and exit 130."""
    command = typer.main.get_command(typer_app or app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with command.make_context("squall", args) as ctx:
            command.invoke(ctx)
    except click_errors.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `squall` or `squall CMD`: the help, exit 2
            e.show()
            return EXIT_USAGE
        return _usage_line(e)
    except click_errors.ClickException as e:  # e.g. a file option that cannot be opened
        typer.echo(f"squall: error: {_one_line(e.format_message())}", err=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("squall: interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`| head`): nothing more to say
        return 1
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        return 1
    return 0


def _usage_line(e: click_errors.UsageError) -> int:
    """`squall: error: MESSAGE (see squall CMD --help)` on stderr; the exit code (2)."""
    where = e.ctx.command_path if e.ctx is not None else "squall"
    typer.echo(f"squall: error: {_one_line(e.format_message())} (see '{where} --help')", err=True)
    return e.exit_code


def _one_line(text: str) -> str:
    """The message on one line, with any secret typed on the command line redacted (`unexpected extra
    argument (sk-...)`)."""
    from squall.redact import redact_text

    return redact_text(" ".join(text.split()))
