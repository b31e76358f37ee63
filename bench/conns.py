#!/usr/bin/env python3
"""How many keep-alive connections one box holds: squall against a 4-worker nginx (reuseport) on loopback.

    python3 bench/conns.py                  # 36,000 connections, 2 workers, 10 s (about 40 s here)
    python3 bench/conns.py -c 2000 -d 3     # a small check first

Writes bench/conns.json (every number, the commands, the nginx config, this box's limits) and prints a
markdown table: errors, the time to open the connections (`meta.setup_s`), the connections nginx saw open,
RSS per connection (the workers' peak RSS over a 2-connection run's, per connection), and what the same
arithmetic gives for a 16-core VM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nginx import BenchError, serve

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FD_SLACK = 64  # squall.engine.limits.FD_SLACK: a worker's own files
AUTO_FILL = 0.25  # squall.engine.limits.AUTO_FILL: of one loopback source address's ports
AUTO_SOURCES = 253  # squall.engine.limits.AUTO_SOURCES_MAX
NGINX_WORKERS = 4


def read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def box() -> dict[str, Any]:
    """This box's limits on connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, high = (int(x) for x in (read("/proc/sys/net/ipv4/ip_local_port_range") or "0 -1").split())
    mem_kb = next(
        (
            int(line.split()[1])
            for line in (read("/proc/meminfo") or "").splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cores": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "nofile_soft": soft,
        "nofile_hard": hard,
        "port_range": [low, high],
        "ports_per_source": high - low + 1,
        "somaxconn": int(read("/proc/sys/net/core/somaxconn") or 0),
        "file_max": int(read("/proc/sys/fs/file-max") or 0),
        "nr_open": int(read("/proc/sys/fs/nr_open") or 0),
        "kernel": os.uname().release,
    }


def capacity(cores: int, nofile: int, ports: int, kb_per_conn: float, memory_mb: int) -> dict[str, Any]:
    """Connections one box holds toward one loopback target by squall's own arithmetic: one worker a core,
    each at most `nofile - 64` connections; at most a quarter of each source address's ephemeral ports,
    over at most 253 loopback addresses (127.0.0.2-254); the workers' memory at `kb_per_conn` within half
    the RAM."""
    by_files = cores * (nofile - FD_SLACK)
    by_ports = AUTO_SOURCES * int(ports * AUTO_FILL)
    by_memory = int(memory_mb * 1024 * 0.5 / kb_per_conn) if kb_per_conn > 0 else None
    limits = {"files": by_files, "ports": by_ports} | ({"memory": by_memory} if by_memory else {})
    bound = min(limits, key=lambda k: limits[k])
    return {"connections": limits[bound], "bound_by": bound, "limits": limits}


@contextlib.contextmanager
def nginx(connections: int) -> Iterator[dict[str, Any]]:
    """A 4-worker nginx with reuseport on 127.0.0.1; always stopped and cleaned up."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_worker = min(nofile - 100, math.ceil(connections / NGINX_WORKERS) * 2 + 1000)
    with serve(
        workers=NGINX_WORKERS, connections=per_worker, nofile=nofile, body="ok", reuseport=True
    ) as target:
        yield target


def active(url: str) -> int:
    """nginx's open client connections (stub_status), less the status request's own."""
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(url + "nginx_status", timeout=5) as r,
    ):
        m = re.search(rb"Active connections:\s*(\d+)", r.read())
        return int(m.group(1)) - 1 if m else -1
    return -1


def established(port: int) -> int:
    """Client sockets the kernel holds established toward 127.0.0.1:port (less the status request's)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True
    ).stdout
    return out.count("\n")


def squall(url: str, conns: int, workers: int, duration: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """One squall run; returns its result, wall time and the most connections nginx saw open meanwhile."""
    argv = [sys.executable, "-m", "squall", "run", url, "-c", str(conns), "-w", str(workers)]
    argv += ["-d", f"{duration}s", "-q", "-o", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seen, kernel = [0], [0]
    stop = threading.Event()
    port = int(url.rsplit(":", 1)[1].strip("/"))

    def watch() -> None:
        while not stop.wait(1.0):
            seen[0] = max(seen[0], active(url))
            kernel[0] = max(kernel[0], established(port))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, env=env)
    wall = time.monotonic() - t
    stop.set()
    watcher.join()
    if not out.exists():
        raise BenchError(f"squall wrote no result (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    doc = json.loads(out.read_text())
    samples = [s.get("worker_rss_mb") or {} for s in doc["timeseries"]]
    rss = [max([x.get(str(w)) or 0 for x in samples] or [0]) for w in range(workers)]
    s = doc["summary"]
    return {
        "command": " ".join(["squall", *argv[3:]]),
        "exit": done.returncode,
        "wall_s": round(wall, 2),
        "setup_s": doc["meta"].get("setup_s"),
        "source_ips": doc["meta"].get("source_ips"),
        "duration_s": s["duration_s"],
        "requests": s["requests"],
        "errors": s["errors"],
        "error_pct": round(100 * s["errors"] / max(1, s["requests"]), 3),
        "error_kinds": s["error_kinds"],
        "rps": s["rps"],
        "p99_ms": s["latency_ms"].get("p99"),
        "nginx_active_max": seen[0],
        "established_max": kernel[0],
        "worker_rss_peak_mb": rss,
        "valid": doc["valid"],
        "warnings": doc["warnings"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--connections", type=int, default=36_000)
    ap.add_argument("-w", "--workers", type=int, default=2)
    ap.add_argument("-d", "--duration", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "conns.json")
    ap.add_argument("squall_args", nargs="*", help="more squall options, after --")
    args = ap.parse_args(argv)
    limits = box()
    work = Path(tempfile.mkdtemp(prefix="squall-conns-"))
    try:
        with nginx(args.connections) as target:
            base = squall(target["url"], 2, args.workers, 3, work / "base.json", args.squall_args)
            big = squall(
                target["url"],
                args.connections,
                args.workers,
                args.duration,
                work / "big.json",
                args.squall_args,
            )
    except BenchError as e:
        print(f"conns: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_worker = args.connections / args.workers
    grown = [b - a for a, b in zip(base["worker_rss_peak_mb"], big["worker_rss_peak_mb"], strict=True)]
    kb_per_conn = round(max(grown) * 1024 / per_worker, 2) if grown else 0.0
    nofile, ports = limits["nofile_hard"], limits["ports_per_source"]
    here = capacity(limits["cores"] or 1, nofile, ports, kb_per_conn, limits["memory_mb"])
    vm16 = capacity(16, nofile, ports, kb_per_conn, 64 * 1024)
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "box": limits,
        "nginx_config": target["config"],
        "baseline": base,
        "run": big,
        "kb_per_connection": kb_per_conn,
        "capacity_here": here,
        "capacity_16_core_vm_64gb": vm16,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    ok = big["error_pct"] < 1 and big["established_max"] >= 0.99 * args.connections
    print(
        "| connections | workers | setup s | measured s | wall s | open (kernel / nginx) | requests | errors "
        "| req/s | p99 ms | RSS/conn KB | verdict |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        f"| {args.connections:,} | {args.workers} | {big['setup_s']} | {big['duration_s']} "
        f"| {big['wall_s']} | {big['established_max']:,} / {big['nginx_active_max']:,} | {big['requests']:,} "
        f"| {big['errors']:,} ({big['error_pct']} %) | {big['rps']:,.0f} | {big['p99_ms']} | {kb_per_conn} "
        f"| {'held, < 1 % errors' if ok else 'NOT held'} |"
    )
    print(
        f"\nsource addresses: {big['source_ips']}; error kinds: {big['error_kinds']}; "
        f"warnings: {big['warnings']}"
    )
    for name, cap in (("this box", here), ("16-core VM, 64 GB, same limits", vm16)):
        print(f"{name}: {cap['connections']:,} connections (bound by {cap['bound_by']}: {cap['limits']})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
