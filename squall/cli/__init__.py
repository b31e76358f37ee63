"""The command line: parse flags, build a Plan, call the library, map the Result to an exit code."""

from squall.cli.app import app, main

__all__ = ["app", "main"]
