"""The JSON result file, written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import orjson

from squall.redact import redact_doc


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write `doc` (its secrets redacted) to `path` via a temporary file and rename, so a reader never sees
    half a file."""
    redact_doc(doc)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".squall-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict[str, Any]:
    """Read a result document (what an older squall left unredacted is redacted now)."""
    with open(path, "rb") as f:
        return redact_doc(orjson.loads(f.read()))
