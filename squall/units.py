"""The ground floor: the usage error every layer raises, durations and headers."""

from __future__ import annotations

import os
import re
from pathlib import Path

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|µs|ms|s|m|h)?\s*$")
_UNIT_S = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_SECONDS = 30 * 24 * 3600.0
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class PlanError(ValueError):
    """Bad input: the message names the problem and the fix, with any secret it quotes redacted."""

    def __init__(self, message: object = "") -> None:
        from squall.redact import redact_text

        super().__init__(redact_text(str(message)))


def named(what: str, text: object) -> str:
    """`--think '2x'` in an error message, or just `'2x'` where the caller names the place itself ('')."""
    return f"{what} {text!r}" if what else repr(text)


def parse_duration(text: str, what: str = "duration") -> float:
    """Parse `10s`, `2m`, `1h`, `250ms` or a bare number of seconds into seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise PlanError(f"{named(what, text)} is not a duration; use e.g. 500ms, 10s, 2m or 1h")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds > MAX_SECONDS:
        raise PlanError(f"{named(what, text)} is longer than 30 days")
    return seconds


_FRAMING = frozenset(("content-length", "transfer-encoding"))  # a wrong one breaks every request


def parse_header(text: str) -> tuple[str, str]:
    """Parse one `Name: value` header."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or not TOKEN.match(name):
        raise PlanError(f"header {text!r} is malformed; use 'Name: value'")
    value = value.strip()
    if name.lower() in _FRAMING:
        raise PlanError(f"header {name!r} is set by squall from the body; drop it")
    if "\r" in value or "\n" in value:
        raise PlanError(f"header {name!r} contains a line break")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise PlanError(
            f"header {name!r} has characters HTTP/1.1 cannot carry; percent-encode them"
        ) from None
    return name, value


def parse_percent(text: str, what: str = "percentage") -> float:
    """Parse `10%` or `10` into 10.0, from 0 to 10000."""
    raw = text.strip().rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise PlanError(f"{what} {text!r} is not a percentage such as 10%") from None
    if not 0 <= value <= 10_000:
        raise PlanError(f"{what} {text!r} must be from 0% to 10000%")
    if 0 < value < 1 and not text.strip().endswith("%"):  # 0.1: a fraction (10 %) or 0.1 %?
        raise PlanError(f"{what} {text!r} is ambiguous: write {value * 100:g}% or {raw}%")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)
_MB = {"b": 1 / 2**20, "kb": 1 / 1024, "mb": 1.0, "gb": 1024.0, "tb": 1024.0**2}


def size_mb(text: str) -> float | None:
    """`600MB`, `2GB`, `512KiB` in MB (powers of 1,024, as RSS is sampled); None when `text` is not a
    size with its unit."""
    m = _SIZE.match(text)
    return None if m is None else float(m.group(1)) * _MB[m.group(2).lower().replace("i", "")]


def check_writable(path: Path, option: str = "--out") -> None:
    """PlanError unless `path` can be written: not a directory, in a writable directory."""
    if path.is_dir():
        raise PlanError(f"{option} {str(path)!r} is a directory; give a file name")
    parent = path.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        where = f"directory {str(parent)!r}"
        raise PlanError(f"{option} {str(path)!r}: {where} does not exist or is not writable")
    if path.exists() and not path.is_file():  # written by a rename, which would replace /dev/null itself
        raise PlanError(f"{option} {str(path)!r} is not a regular file; give a file name, or drop {option}")
    try:  # a file is written beside its path, then renamed: that must work (not in /proc, even as root)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=".squall-check-", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise PlanError(
            f"{option} {str(path)!r} cannot be written: a file cannot be made in {str(parent)!r} "
            f"({e.strerror or e})"
        ) from None
    if path.exists():  # an existing file may still refuse writes (read-only mounts, root's access())
        try:
            with path.open("ab"):
                pass
        except OSError as e:
            raise PlanError(f"{option} {str(path)!r} cannot be written: {e.strerror or e}") from None


def distinct(paths: dict[str, Path | None]) -> None:
    """No two files given to one command may be the same file (the last write would win)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = path.resolve()
        if key in seen:
            raise PlanError(f"{option} and {seen[key]} name the same file {str(path)!r}")
        seen[key] = option
