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
    for name, value in doc["counters"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise PlanError(f"{str(path)!r}: counter {name!r} is not a number; it is {_kind(value)}")
    _check_histograms(doc["histograms"], f"{str(path)!r}: histogram")
    for i, entry in enumerate(doc["timeseries"]):  # (too many to decode here: each is decoded where used)
        if not isinstance(entry, dict):
            raise PlanError(f"{str(path)!r}: timeseries[{i}] is not an object; it is {_kind(entry)}")
        for key, blob in entry.items():
            if (
                key.endswith("_hist")
                and blob is not None
                and not (isinstance(blob, str) and blob[:5] == "HISTF")
            ):
                raise PlanError(
                    f"{str(path)!r}: timeseries[{i}].{key} is not an HDR histogram; it is {_kind(blob)}"
                )
    parts = doc.get("parts", {})
    if not isinstance(parts, dict) or not all(isinstance(p, dict) for p in parts.values()):
        raise PlanError(f"{str(path)!r} is not a whole squall result: 'parts' is malformed")
    for key, part in parts.items():
        hists = part.get("histograms", {})
        if not isinstance(hists, dict):
            raise PlanError(f"{str(path)!r}: part {key!r}: 'histograms' is malformed")
        _check_histograms(hists, f"{str(path)!r}: part {key!r}: histogram")
    return doc


def _check_histograms(hists: dict, where: str) -> None:
    """PlanError unless every value is a whole HdrHistogram (base64 V2, compressed), as squall writes."""
    from squall.hist import decode

    for name, blob in hists.items():
        if not isinstance(blob, str) or not blob:
            raise PlanError(
                f"{where} {name!r} is not an HDR histogram (a base64 string); it is {_kind(blob)}"
            )
        try:
            decode(blob)
        except Exception:
            raise PlanError(f"{where} {name!r} is not a whole HDR histogram (corrupt or truncated)") from None


def _kind(value: object) -> str:
    return "empty" if value in ("", None) else f"a JSON {type(value).__name__}"
