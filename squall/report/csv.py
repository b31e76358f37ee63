"""CSV output: the per-second series (one row a second) and the final summary (one row a metric)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

SERIES = (
    "t", "span_s", "partial", "rps", "target_rps", "requests", "ok", "errors", "p50", "p99", "inflight",
    "users", "target_users", "output_tokens_per_s", "ttft_p50", "ttft_p99", "collector_cpu", "host_cpu",
)  # fmt: skip


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif not isinstance(value, list):
        out[prefix] = value


def write_csv(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the series to `path` and the summary to `<path stem>.summary.csv` (with hunt and soak verdicts;
    a hunt's steps go to `<stem>.hunt.csv`, a soak's target samples to `<stem>.soak.csv`); returns the
    summary's path."""
    path = Path(path)
    series = doc.get("timeseries", [])
    workers = sorted({w for e in series for w in (e.get("worker_cpu") or {})}, key=str)
    kinds = sorted({k for e in series for k in (e.get("error_kinds") or {})})
    head = [c for c in SERIES if any(c in e for e in series)]
    head += [f"worker{w}_cpu" for w in workers] + [f"worker{w}_rss_mb" for w in workers]
    head += [f"errors.{k}" for k in kinds]
    has_target = any(e.get("target") for e in series)
    if has_target:
        head += ["target_cpu", "target_rss_mb", "target_fds", "target_threads"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for e in series:
            row = [e.get(c, "") for c in head if c in SERIES]
            row += [(e.get("worker_cpu") or {}).get(x, "") for x in workers]
            row += [(e.get("worker_rss_mb") or {}).get(x, "") for x in workers]
            row += [(e.get("error_kinds") or {}).get(k, 0) for k in kinds]
            if has_target:
                t = e.get("target") or {}
                row += [t.get("cpu", ""), t.get("rss_mb", ""), t.get("fds", ""), t.get("threads", "")]
            w.writerow(row)
    flat: dict[str, Any] = {}
    _flat("", doc.get("summary", {}), flat)
    for t in doc.get("thresholds", []):
        flat[f"threshold {t['expr']}"] = "pass" if t["ok"] else "FAIL"
    for section in ("hunt", "soak"):  # their verdicts; the hunt's steps and the soak's samples get a file
        if doc.get(section):
            _flat(section, {k: v for k, v in doc[section].items() if k not in ("steps", "series")}, flat)
    hunt_steps = (doc.get("hunt") or {}).get("steps")
    if hunt_steps:
        _rows(path.with_name(path.stem + ".hunt.csv"), sorted(hunt_steps, key=lambda st: st["level"]))
    soak_series = (doc.get("soak") or {}).get("series")
    if soak_series:
        _rows(path.with_name(path.stem + ".soak.csv"), soak_series)
    summary_path = path.with_name(path.stem + ".summary.csv")
    with summary_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value"])
        w.writerows(flat.items())
    return summary_path


def _rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per dict, the union of their scalar keys as columns (lists joined with ';')."""
    head = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, dict)))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            w.writerow(
                [";".join(map(str, r[k])) if isinstance(r.get(k), list) else r.get(k, "") for k in head]
            )
