"""Write a long result synthetically: a short real result's per-second entries repeated to N seconds.

    python3 bench/long_result.py SHORT.json OUT.json --seconds 30000 [--shift S]

Each entry keeps its own latency histogram (so `merge` has real per-second histograms to add); counters,
the cumulative histograms and the summary are scaled to match, so the file reads as one long run. `--shift`
moves the start by S seconds (two files with shifts 0 and 0.5 merge as two boxes of one test).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def stretch(doc: dict, seconds: int, shift: float = 0.0) -> dict:
    """`doc` with its timeseries repeated to `seconds` entries, and its totals scaled to match."""
    full = [e for e in doc["timeseries"] if not e.get("partial")] or doc["timeseries"]
    series = []
    for i in range(seconds):
        e = dict(full[i % len(full)])
        e["t"] = float(i + 1)
        series.append(e)
    factor = seconds / max(float(doc["summary"]["duration_s"]), 1e-9)
    out = dict(doc)
    out["timeseries"] = series
    summary = dict(doc["summary"])
    for key in ("requests", "ok", "errors", "bytes_in", "bytes_out"):
        if isinstance(summary.get(key), int):
            summary[key] = int(summary[key] * factor)
    summary["duration_s"] = float(seconds)
    out["summary"] = summary
    out["counters"] = {k: int(v * factor) if isinstance(v, int) else v for k, v in doc["counters"].items()}
    meta = dict(doc["meta"])
    meta["duration_s"] = float(seconds)
    meta["started_at_epoch"] = float(meta["started_at_epoch"]) + shift
    out["meta"] = meta
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("short", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=int, default=30_000)
    ap.add_argument("--shift", type=float, default=0.0)
    args = ap.parse_args()
    doc = json.loads(args.short.read_text())
    args.out.write_text(json.dumps(stretch(doc, args.seconds, args.shift)))


if __name__ == "__main__":
    main()
