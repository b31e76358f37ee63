#!/usr/bin/env python3
"""Is `squall compare` a CI gate that does not flake? Runs pairs of `squall run` against `squall serve` and
judges each pair with `squall compare` at its defaults:

- same:  the same command twice, back to back (must say "same": exit 0);
- tail:  the second run's server answers every 50th request 7 ms later (`?slow_every=50&slow_ms=7`): its
         p99 is about 20 % slower and the rest unchanged (must be a regression: exit 1);
- shift: the second run's server answers in 24 ms instead of 20 (every answer slower; exit 1).

The kinds run in alternation (same, tail, shift, same, ...) so the box's drift hits each alike. Before each
pair it waits (at most 10 s) for the host's CPU to be under 25 %, and records the host CPU during the pair.
Writes bench/compare_gate.json (every pair, the commands, the machine) and prints the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from nginx import free_port

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "same": ("/delay/20", "/delay/20"),
    "tail": ("/delay/20", "/delay/20?slow_every=50&slow_ms=7"),
    "shift": ("/delay/20", "/delay/24"),
}


def squall(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "squall", *args],
        capture_output=True,
        text=True,
        env=env,
        check=check,
        timeout=120,
    )


def wait_quiet(limit_pct: float = 25.0, most_s: float = 10.0) -> float:
    """Wait until the host's CPU over half a second is under `limit_pct` (at most `most_s`); return it."""
    deadline = time.monotonic() + most_s
    busy = psutil.cpu_percent(0.5)
    while busy >= limit_pct and time.monotonic() < deadline:
        busy = psutil.cpu_percent(0.5)
    return busy


def run_once(url: str, out: Path, duration: str, conns: int) -> dict[str, Any]:
    squall("run", url, "-c", str(conns), "-d", duration, "-q", "-o", str(out))
    doc = json.loads(out.read_text())
    host = [e["host_cpu"] for e in doc["timeseries"] if e.get("host_cpu") is not None]
    return {
        "p50_ms": doc["summary"]["latency_ms"]["p50"],
        "p99_ms": doc["summary"]["latency_ms"]["p99"],
        "p999_ms": doc["summary"]["latency_ms"]["p999"],
        "requests": doc["summary"]["requests"],
        "rps": doc["summary"]["rps"],
        "valid": doc["valid"],
        "host_cpu_mean": round(statistics.fmean(host), 1) if host else None,
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    describe = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory_mb": psutil.virtual_memory().total // 2**20,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "squall": describe,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=20, help="pairs of each kind")
    p.add_argument("--duration", default="3s", help="-d of each run")
    p.add_argument("-c", "--connections", type=int, default=16)
    p.add_argument("--kinds", default="same,tail,shift")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "compare_gate.json")
    a = p.parse_args()
    kinds = a.kinds.split(",")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "squall", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    pairs: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            b, c = Path(tmp) / "base.json", Path(tmp) / "cur.json"
            for i in range(a.pairs):
                for kind in kinds:
                    idle = wait_quiet()
                    first, second = KINDS[kind]
                    rb = run_once(base_url + first, b, a.duration, a.connections)
                    rc = run_once(base_url + second, c, a.duration, a.connections)
                    res = squall("compare", str(b), str(c), "--json", check=False)
                    out = json.loads(res.stdout)
                    row = {
                        "pair": i,
                        "kind": kind,
                        "exit": res.returncode,
                        "said": "regression" if res.returncode == 1 else "same",
                        "regressions": [r["metric"] for r in out["rows"] if r["regression"]],
                        "p99_change_pct": next(
                            r["change_pct"] for r in out["rows"] if r["metric"] == "latency p99 ms"
                        ),
                        "host_cpu_before": idle,
                        "baseline": rb,
                        "current": rc,
                    }
                    pairs.append(row)
                    print(
                        f"{i:2d} {kind:5s} exit {res.returncode} p99 {rb['p99_ms']:.2f} -> "
                        f"{rc['p99_ms']:.2f} ({row['p99_change_pct']:+.1f}%) {row['regressions']} "
                        f"host {idle:.0f}%",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(10)
    counts = {
        kind: {
            "pairs": sum(1 for r in pairs if r["kind"] == kind),
            "same": sum(1 for r in pairs if r["kind"] == kind and r["said"] == "same"),
            "regression": sum(1 for r in pairs if r["kind"] == kind and r["said"] == "regression"),
        }
        for kind in kinds
    }
    p99 = {
        kind: statistics.median(r["current"]["p99_ms"] for r in pairs if r["kind"] == kind) for kind in kinds
    }
    p99_base = statistics.median(r["baseline"]["p99_ms"] for r in pairs)
    doc = {
        "command": f"squall run URL -c {a.connections} -d {a.duration} -q -o FILE; "
        "squall compare BASE CUR --json",
        "kinds": {k: {"baseline": KINDS[k][0], "current": KINDS[k][1]} for k in kinds},
        "counts": counts,
        "median_p99_ms": {"baseline": p99_base, **{f"current {k}": v for k, v in p99.items()}},
        "machine": machine(),
        "pairs": pairs,
    }
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({"counts": counts, "median_p99_ms": doc["median_p99_ms"]}, indent=1))


if __name__ == "__main__":
    main()
