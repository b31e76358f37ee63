"""Reading a result file back: one line and exit 2 for anything that is not a whole squall result."""

from __future__ import annotations

from pathlib import Path

from squall.result.document import SCHEMA
from squall.units import PlanError

# The top-level fields every reader of a result relies on, and their JSON types.
RESULT_SHAPE = (
    ("meta", dict),
    ("summary", dict),
    ("timeseries", list),
    ("histograms", dict),
    ("counters", dict),
)


def read_result(path: Path) -> dict:
    """The result document at `path`; PlanError (one line, exit 2) when it is not a whole squall result."""
    from squall.report.json import read_json

    try:
        doc = read_json(str(path))
    except (OSError, ValueError) as e:
        raise PlanError(f"{str(path)!r} cannot be read as a squall result: {e}") from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith(SCHEMA.split("@")[0] + "@"):
        raise PlanError(f"{str(path)!r} is not a squall result (no squall/result schema)")
    if doc["schema"] != SCHEMA:
        raise PlanError(f"{str(path)!r} has schema {doc['schema']!r}; this squall reads {SCHEMA}")
    for key, kind in RESULT_SHAPE:
        if not isinstance(doc.get(key), kind):
            raise PlanError(f"{str(path)!r} is not a whole squall result: {key!r} is missing or malformed")
    return doc
