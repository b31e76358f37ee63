"""Trace replay (`--trace`): Mooncake-style JSONL or CSV lines (a send time and token lengths, optional
prefix-block hash ids) as prompts synthesized to those lengths and each prompt's send offset."""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from squall.plan.prompts import MAX_SYNTHETIC_TOKENS, words
from squall.plan.specs import Prompt
from squall.units import PlanError

MAX_LINES = 10_000_000
MAX_TRACE_TOKENS = 50_000_000  # all synthesized prompts together: a few hundred MB of text in every worker

# CSV headers (compared lower-cased, spaces and dashes as underscores) -> what the column holds. The
# timestamp's unit goes with the header's family: squall's and Mooncake's names are ms, BurstGPT's
# `Timestamp` (with `Request tokens`) is seconds, Azure's `TIMESTAMP` (with `ContextTokens`) a date and time.
_INPUT = (
    "input_tokens",
    "input_length",
    "request_tokens",
    "contexttokens",
    "context_tokens",
    "prompt_tokens",
)
_OUTPUT = (
    "output_tokens",
    "output_length",
    "response_tokens",
    "generatedtokens",
    "generated_tokens",
    "completion_tokens",
)
_TIME = ("timestamp", "timestamp_ms", "arrival_time_ms")
MAX_SPAN_S = 30 * 86_400  # the longest replay: a soak's length, not a typo's
MAX_TIME_MS = 1e13  # (ms since the epoch reach it in 2286: a larger time is not one)


@dataclass(frozen=True, slots=True)
class Line:
    """One trace line: its send time (ms from any origin), token lengths and prefix-block hash ids."""

    at_ms: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace's prompts in send order and each one's send offset in seconds (after the speed-up);
    `reordered`: the file's timestamps were out of order and the lines were sorted (stably)."""

    prompts: tuple[Prompt, ...]
    offsets: tuple[float, ...]
    reordered: bool = False


def load(path: Path, speed: float = 1.0, block_tokens: int = 512, seed: int = 0) -> Trace:
    """The trace at `path` (JSONL, or CSV with a header) replayed `speed` times as fast, prompts made of
    `block_tokens`-token blocks (one per hash id); PlanError names FILE:LINE: FIELD for a bad line."""
    if not (math.isfinite(speed) and speed > 0):
        raise PlanError(f"--trace-speed must be a number greater than 0 (got {speed:g})")
    if not 1 <= block_tokens <= MAX_SYNTHETIC_TOKENS:
        raise PlanError(f"--block-tokens must be from 1 to {MAX_SYNTHETIC_TOKENS:,} (got {block_tokens})")
    lines = read(path)
    order = sorted(range(len(lines)), key=lambda i: lines[i].at_ms)  # (stable: equal times keep file order)
    reordered = order != list(range(len(lines)))
    lines = [lines[i] for i in order]
    total = sum(x.input_tokens for x in lines)
    if total > MAX_TRACE_TOKENS:
        raise PlanError(
            f"--trace {path}: {total:,} input tokens in all, over {MAX_TRACE_TOKENS:,}; replay a part of "
            "it (e.g. its first lines: head -n 10000)"
        )
    start = lines[0].at_ms
    offsets = tuple((x.at_ms - start) / 1000 / speed for x in lines)
    if offsets[-1] > MAX_SPAN_S:
        raise PlanError(
            f"--trace {path}: the replay would last {offsets[-1] / 86_400:,.1f} days, over 30; check its "
            "timestamps are milliseconds, or give --trace-speed"
        )
    return Trace(synthesize(lines, block_tokens, seed), offsets, reordered)


def synthesize(lines: list[Line], block_tokens: int, seed: int) -> tuple[Prompt, ...]:
    """A prompt per line of its input length in tokens (one common word each): block j is the text of
    hash_ids[j] (equal ids, equal text), the rest after the blocks is the line's own; output -> max_tokens."""
    blocks: dict[int, list[str]] = {}
    out = []
    for i, line in enumerate(lines):
        n = line.input_tokens
        parts: list[str] = []
        for j, h in enumerate(line.hash_ids):
            if j * block_tokens >= n:
                break
            block = blocks.get(h)
            if block is None:
                block = blocks[h] = words(block_tokens, random.Random(f"{seed}:block:{h}"))
            parts += block[: n - j * block_tokens]
        if len(parts) < n:
            parts += words(n - len(parts), random.Random(f"{seed}:line:{i}"))
        out.append(Prompt(text=" ".join(parts), max_tokens=line.output_tokens, input_tokens=n))
    return tuple(out)


def read(path: Path) -> list[Line]:
    """The lines of a trace file, checked: JSONL (a `{` first) or CSV with a header."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PlanError(f"--trace {str(path)!r} cannot be read: {e.strerror or e}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    lines = _jsonl(path, raw) if raw.lstrip()[:1] == b"{" else _csv(path, raw)
    if not lines:
        raise PlanError(f"--trace {str(path)!r} holds no line to replay")
    if len(lines) > MAX_LINES:
        raise PlanError(f"--trace {path}: {len(lines):,} lines, over {MAX_LINES:,}; replay a part of it")
    return lines


def _jsonl(path: Path, raw: bytes) -> list[Line]:
    out = []
    for no, text in enumerate(raw.split(b"\n"), 1):
        if not text.strip():
            continue
        where = f"--trace {path}:{no}"
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise PlanError(f"{where}: not JSON ({e}); give one JSON object per line") from None
        if not isinstance(obj, dict):
            raise PlanError(f"{where}: expected an object with timestamp, input_length and output_length")
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in ids):
            raise PlanError(f"{where}: hash_ids: expected a list of integers, e.g. [0, 1, 2]")
        out.append(
            Line(
                _time(obj.get("timestamp"), where, "timestamp"),
                _tokens(obj.get("input_length"), where, "input_length"),
                _tokens(obj.get("output_length"), where, "output_length"),
                tuple(ids),
            )
        )
    return out


def _csv(path: Path, raw: bytes) -> list[Line]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PlanError(f"--trace {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    rows = csv.reader(io.StringIO(text))
    try:
        return _rows(path, rows)
    except csv.Error as e:  # (a cell over the csv module's field limit, 131,072 characters; a stray NUL)
        raise PlanError(
            f"--trace {path}:{rows.line_num}: not a CSV line ({e}); give one line per request"
        ) from None


def _rows(path: Path, rows: Any) -> list[Line]:
    header = next(rows, None)
    names = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header or ()]
    time_col = next((names.index(n) for n in _TIME if n in names), None)
    in_col = next((names.index(n) for n in _INPUT if n in names), None)
    out_col = next((names.index(n) for n in _OUTPUT if n in names), None)
    if time_col is None or in_col is None or out_col is None:
        raise PlanError(
            f"--trace {path}:1: expected a JSONL trace or a CSV header timestamp,input_tokens,output_tokens "
            "(or BurstGPT's or Azure's columns)"
        )
    if "request_tokens" in names:
        unit = "s"  # BurstGPT: seconds from the trace's start
    elif "contexttokens" in names:
        unit = "date"  # Azure LLM inference traces: 2023-11-16 18:15:46.6805900
    else:
        unit = "ms"
    field = (header or [])[time_col].strip()
    out = []
    for row in rows:
        no = rows.line_num
        if not any(c.strip() for c in row):
            continue
        where = f"--trace {path}:{no}"
        if len(row) < len(names) or any(c.strip() for c in row[len(names) :]):
            raise PlanError(f"{where}: {len(row)} columns where the header has {len(names)}")
        cell = row[time_col].strip()
        at = _date(cell, where, field) if unit == "date" else _time(_number(cell), where, field)
        out.append(
            Line(
                at * 1000 if unit == "s" else at,
                _tokens(_number(row[in_col]), where, header[in_col].strip()),  # type: ignore[index]
                _tokens(_number(row[out_col]), where, header[out_col].strip()),  # type: ignore[index]
            )
        )
    return out


def _number(cell: str) -> Any:
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _time(value: Any, where: str, field: str) -> float:
    if value is None:
        raise PlanError(f"{where}: {field}: missing; give the send time in milliseconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PlanError(f"{where}: {field}: {value!r} is not a time; give milliseconds as a number >= 0")
    if value > MAX_TIME_MS:
        raise PlanError(
            f"{where}: {field}: {value!r} is past the year 2286 in milliseconds; give milliseconds"
        )
    return float(value)


def _date(cell: str, where: str, field: str) -> float:
    """An Azure trace's time (`2023-11-16 18:15:46.6805900`: up to 7 decimals) as ms since the epoch."""
    whole, _, frac = cell.partition(".")
    try:
        t = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
        return (t + (float(f"0.{frac}") if frac else 0.0)) * 1000
    except ValueError:
        example = "2023-11-16 18:15:46.6"
        raise PlanError(f"{where}: {field}: {cell!r} is not a date and time like {example}") from None


def _tokens(value: Any, where: str, field: str) -> int:
    """A token length: a whole number; 0 (BurstGPT logs failed requests so) is taken as 1."""
    if value is None:
        raise PlanError(f"{where}: {field}: missing; give the length in tokens")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SYNTHETIC_TOKENS:
        raise PlanError(
            f"{where}: {field}: {value!r} is not a token count; give a whole number from 0 to "
            f"{MAX_SYNTHETIC_TOKENS:,}"
        )
    return max(1, value)
