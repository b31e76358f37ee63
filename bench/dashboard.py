"""What the live dashboard and scraping cost the load: squall's req/s at c=64 with and without
`--dashboard PORT --scrape URL`, alternated.

nginx (pinned to CPU 1, as bench/run.py) is the target; the built-in mock LLM (idle, also on CPU 1) is
what is scraped, so each scrape parses its vLLM-style /metrics (two histograms, gauges, counters). squall
(one worker and its collector, pinned to CPU 0) runs `squall run URL -c 64 -w 1 -d Ds`, once plain and
once with `--dashboard PORT --scrape MOCK/metrics`, in pairs whose order alternates (plain first, then
dashboard first), so the box's drift hits both alike. With the dashboard on, a reader holds GET /api/events
open for the whole run, as a browser tab would (if the dashboard does not answer, that is recorded and the
run still counts).
Run: `python3 bench/dashboard.py [--pairs 5] [--duration 5]` (writes bench/dashboard.json and dashboard.md).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson
import psutil
from nginx import free_port, serve

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GEN_CPU, TARGET_CPU = "0", "1"
NOISY_PCT = 10  # others' CPU (% of one core) above which the table says the box was not quiet


def mock_child(ready: Callable[[int], None]) -> None:
    """Child process: the built-in mock on the target's CPU, serving /metrics until terminated."""
    from squall.targets.mock_llm import serve_mock
    from squall.targets.mock_options import MockOptions

    os.sched_setaffinity(0, {int(TARGET_CPU)})
    serve_mock(MockOptions(port=0), ready)


def start_mock() -> tuple[BaseProcess, int]:
    """The mock in a forked process; (the process, its port)."""
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=mock_child, args=(tx.send,), daemon=True)
    proc.start()
    if not rx.poll(10):
        proc.terminate()
        raise SystemExit("the built-in mock did not start within 10 s")
    return proc, rx.recv()


def watch_events(url: str, stop: threading.Event, seen: dict[str, Any]) -> None:
    """Hold GET /api/events open as a browser would, counting the bytes until `stop` (or the run's end)."""
    deadline = time.monotonic() + 5
    while not stop.is_set() and time.monotonic() < deadline:  # the dashboard binds when the run starts
        try:
            with urllib.request.urlopen(url + "api/events", timeout=2) as r:
                seen["status"] = r.status
                while not stop.is_set():
                    chunk = r.read1(65536)
                    if not chunk:
                        return
                    seen["bytes"] = seen.get("bytes", 0) + len(chunk)
                    seen["events"] = seen.get("events", 0) + chunk.count(b"\n\n")
        except (OSError, ValueError) as e:
            seen["error"] = f"{type(e).__name__}: {e}"
            time.sleep(0.2)


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds of these processes and their children (nginx's workers), those still running."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for p in (root, *root.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def one_run(
    target: str, c: int, d: int, out: Path, dashboard: str | None, targets: list[int]
) -> dict[str, Any]:
    """One `squall run` on the generator CPU: req/s, its tree's CPU, what the dashboard served."""
    argv = ["taskset", "-c", GEN_CPU, sys.executable, "-m", "squall", "run", target]
    argv += ["-c", str(c), "-w", "1", "-d", f"{d}s", "-q", "-o", str(out)]
    port = free_port()
    if dashboard is not None:
        argv += ["--dashboard", str(port), "--scrape", dashboard]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    seen: dict[str, Any] = {}
    stop = threading.Event()
    reader = None
    if dashboard is not None:
        reader = threading.Thread(
            target=watch_events, args=(f"http://127.0.0.1:{port}/", stop, seen), daemon=True
        )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    host0, targets0 = psutil.cpu_times(), tree_cpu_s(targets)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if reader is not None:
        reader.start()
    try:
        output, _ = proc.communicate(timeout=d + 60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    host1, targets1 = psutil.cpu_times(), tree_cpu_s(targets)
    if reader is not None:
        reader.join(3)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    host = sum(getattr(host1, f) - getattr(host0, f) for f in ("user", "nice", "system", "irq", "softirq"))
    doc = orjson.loads(out.read_bytes()) if out.exists() else {}
    s = doc.get("summary", {})
    return {
        "dashboard": dashboard is not None,
        "rc": proc.returncode,
        "rps": s.get("rps"),
        "requests": s.get("requests"),
        "errors": s.get("errors"),
        "valid": doc.get("valid"),
        "cpu_us_per_request": round(cpu / s["requests"] * 1e6, 2) if s.get("requests") else None,
        "host_cpu_pct": round(100 * host / wall, 1),  # all cores (100 each), squall and nginx included
        # Neither squall nor the targets: other work on the box, which makes a comparison noisy.
        "other_cpu_pct": round(100 * (host - cpu - (targets1 - targets0)) / wall, 1),
        "target_metrics": sorted(doc.get("target_metrics") or {})[:5],
        "events": seen,
        "warnings": doc.get("warnings", [])[:5],
        "output": "" if proc.returncode == 0 else output[-1500:],
    }


def machine() -> dict[str, Any]:
    """The box and the versions."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "squall_git": git,
        "nginx": nginx,
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Side by side: each arm's median req/s and CPU, and the pairs' ratio."""

    def med(arm: bool, key: str) -> float | None:
        vals = [r[key] for r in rows if r["dashboard"] is arm and r[key] is not None and r["rc"] == 0]
        return statistics.median(vals) if vals else None

    plain = [r for r in rows if not r["dashboard"]]
    dash = [r for r in rows if r["dashboard"]]
    ratios = [b["rps"] / a["rps"] for a, b in zip(plain, dash, strict=True) if a["rps"] and b["rps"]]
    out = [
        "| arm | median req/s | all runs | CPU µs/request | host CPU % | others' CPU % | valid |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for name, arm, rs in (("plain", False, plain), ("--dashboard --scrape", True, dash)):
        runs = ", ".join(f"{r['rps']:,.0f}" if r["rps"] else "—" for r in rs)
        rps, cpu, host = med(arm, "rps"), med(arm, "cpu_us_per_request"), med(arm, "host_cpu_pct")
        other = med(arm, "other_cpu_pct")
        valid = f"{sum(bool(r['valid']) for r in rs)}/{len(rs)}"
        out.append(
            f"| {name} | {rps or 0:,.0f} | {runs} | {cpu or 0:.2f} | {host or 0:.0f} | {other or 0:.0f} "
            f"| {valid} |"
        )
    if ratios:
        each = ", ".join(f"{x:.3f}" for x in ratios)
        out.append(f"\nDashboard/plain req/s, pair by pair: median {statistics.median(ratios):.3f} ({each}).")
    served = [r["events"] for r in dash]
    got = sum(1 for e in served if e.get("events"))
    out.append(
        f"The dashboard answered GET /api/events in {got} of {len(dash)} runs"
        + (f" (last error: {served[-1].get('error')})" if got < len(dash) and served else "")
        + f"; target_metrics in the result: {sum(1 for r in dash if r['target_metrics'])} of {len(dash)}."
    )
    others = [r["other_cpu_pct"] for r in rows]
    if others and statistics.median(others) > NOISY_PCT:
        out.append(
            f"Not a quiet box: other work used {statistics.median(others):.0f} % of a core (median) beside "
            "squall and its targets, so the pairs differ by that work's bursts; re-run on a quiet box."
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--duration", type=int, default=5, help="seconds per run")
    p.add_argument("-c", "--connections", type=int, default=64)
    a = p.parse_args(argv)
    mock, mock_port = start_mock()
    scrape = f"http://127.0.0.1:{mock_port}/metrics"
    rows: list[dict[str, Any]] = []
    try:
        with (
            serve(workers=1, connections=4096, nofile=8192, body="Hello, world", cpu=TARGET_CPU) as nginx,
            tempfile.TemporaryDirectory() as tmp,
        ):
            out = Path(tmp) / "r.json"
            for i in range(a.pairs):
                order = (None, scrape) if i % 2 == 0 else (scrape, None)
                for dashboard in order:
                    out.unlink(missing_ok=True)
                    arm = "dashboard" if dashboard else "plain"
                    print(f"[dashboard] pair {i + 1}/{a.pairs}: {arm} ...", file=sys.stderr, flush=True)
                    targets = [nginx["pid"], mock.pid or 0]
                    rows.append(one_run(nginx["url"], a.connections, a.duration, out, dashboard, targets))
    finally:
        mock.terminate()
        mock.join(5)
    rows.sort(key=lambda r: r["dashboard"])  # stable: each arm keeps its run order, so pairs line up
    info = machine()
    head = (
        f"{info['date']}, `bench/dashboard.py --pairs {a.pairs} --duration {a.duration}`: squall run -c "
        f"{a.connections} -w 1 on CPU 0 against nginx on CPU 1, plain vs `--dashboard PORT --scrape` the "
        f"built-in mock's /metrics (with /api/events held open), {a.pairs} alternated pairs of "
        f"{a.duration} s; {info['cpu']}, {info['nproc']} CPUs, Python {info['python']}, "
        f"squall {info['squall_git']}, {info['nginx']}."
    )
    text = f"{head}\n\n{table(rows)}\n"
    (HERE / "dashboard.md").write_text(text)
    doc = {"args": vars(a), "machine": info, "rows": rows}
    (HERE / "dashboard.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(text)
    bad = [r for r in rows if r["rc"] != 0]
    if bad:
        print(f"{len(bad)} run(s) failed; see bench/dashboard.json", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
