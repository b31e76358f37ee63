"""The outcome of a run: the JSON-ready document and the exit code it implies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA = "squall/result@1"  # the one place the result's schema name is spelled
USAGE_ERROR = "usage_error"  # set when every worker refused the input before sending: the CLI exits 2

EXIT_OK = 0
EXIT_THRESHOLDS = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)
STOPPED_BY_SIGNAL = {"interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED}


@dataclass(frozen=True)
class Result:
    """A finished (or interrupted) run; `doc` is exactly what `-o` writes."""

    doc: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        return self.doc["summary"]

    @property
    def valid(self) -> bool:
        return bool(self.doc["valid"])

    @property
    def warnings(self) -> list[str]:
        return list(self.doc["warnings"])

    @property
    def usage_error(self) -> str | None:
        """The input every worker refused (a py factory that raises, say), or None."""
        return self.doc.get(USAGE_ERROR)

    def exit_code(self) -> int:
        """3 when a worker was lost or stalled or an open-model run could not deliver its rate, else 130/143
        when Ctrl-C/SIGTERM cut the run short (its files are written all the same), else 1 when a threshold
        failed, else 0.

        A closed-model run that saturates squall's CPU measured squall's ceiling: not valid, warned, exit 0.
        """
        if self.doc["workers_lost"] or self.doc["meta"].get("stop_reason") == "no worker started":
            return EXIT_INVALID
        if self.doc.get("stalled"):  # load that was due was not sent, in either model
            return EXIT_INVALID
        if self.doc["generator_limited"] and self.doc["meta"]["model"] == "open":
            return EXIT_INVALID
        stopped = STOPPED_BY_SIGNAL.get(self.doc["meta"].get("stop_reason", ""))
        if stopped is not None:
            return stopped
        if any(not t["ok"] for t in self.doc.get("thresholds", ())):
            return EXIT_THRESHOLDS
        return EXIT_OK
