#!/usr/bin/env python3
"""Two squall builds side by side with wrk, alternated in one run: each round runs wrk, NEW and OLD at each
connection count, so the box's drift hits all three alike; prints each squall's req/s over wrk's, per round
and the median. Aim it at a running loopback target (e.g. the nginx that bench/run.py configures)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path


def wrk_rps(url: str, c: int, d: int) -> float:
    """wrk's Requests/sec for one run on CPU 0."""
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{c}", f"-d{d}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise SystemExit(f"wrk printed no Requests/sec:\n{out}")
    return float(m.group(1))


def squall_rps(exe: str, url: str, c: int, d: int, out: Path) -> float:
    """summary.rps of one `squall run` on CPU 0 (one worker)."""
    cmd = ["taskset", "-c", "0", exe, "run", url, f"-c{c}", "-w1", f"-d{d}s", "-q", "-o", str(out)]
    subprocess.run(cmd, capture_output=True, check=True)
    return float(json.loads(out.read_text())["summary"]["rps"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--new", required=True, help="the squall executable to judge")
    p.add_argument("--old", required=True, help="the squall executable to judge it against")
    p.add_argument("--url", required=True, help="a loopback target, e.g. http://127.0.0.1:8080/")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per run")
    p.add_argument("--connections", default="64,1000", help="comma-separated connection counts")
    a = p.parse_args()
    conns = [int(c) for c in a.connections.split(",")]
    got: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        for _ in range(a.rounds):
            for c in conns:
                got.setdefault((c, "wrk"), []).append(wrk_rps(a.url, c, a.duration))
                for name, exe in (("new", a.new), ("old", a.old)):
                    got.setdefault((c, name), []).append(squall_rps(exe, a.url, c, a.duration, out))
    for c in conns:
        wrk = got[(c, "wrk")]
        for name in ("new", "old"):
            ratios = [s / w for s, w in zip(got[(c, name)], wrk, strict=True)]
            rounds = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"c={c} {name}/wrk: median {statistics.median(ratios):.2f} (rounds {rounds})")


if __name__ == "__main__":
    main()
