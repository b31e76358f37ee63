#!/usr/bin/env python3
"""Measure squall against wrk, hey and Locust on a pinned loopback nginx, and squall's own costs (recording,
memory per connection, the collector's merge, RSS over a soak); write bench/results.{json,md}."""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import extra
import psutil
from extra import MEM_CONNS, RECORD_N, fmt
from nginx import BenchError, serve

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-locust"
LOCUST = VENV / "bin" / "locust"
GEN_CPU, TARGET_CPU = "0", "1"
OPEN_RATE = 10_000
NOISY_PCT = 10  # other processes busier than this (% of one core) make a round noisy
G64, G1000, OPEN = "GET c=64", "GET c=1000", f"open {OPEN_RATE}/s c=256"
REC_ON, REC_OFF = "recording on, -n N", "recording off, -n N"
MEM_MANY, MEM_ONE, MERGE = f"RSS c={MEM_CONNS}", "RSS c=1", "collector merge, 64 workers"
SOAK = "RSS soak c=64"
CLIENTS = ("wrk", "hey", "locust", "squall-aiohttp", "squall-raw", "squall-collector")
NGINX_CONNECTIONS = 20_000
SQUALL = [shutil.which("squall") or sys.executable, *([] if shutil.which("squall") else ["-m", "squall"])]


LOCUSTFILE = """from locust import FastHttpUser, constant, task
class Hello(FastHttpUser):
    wait_time = constant(0)
    get = task(lambda self: self.client.get("/"))
"""


@dataclass
class Round:
    """One run of one client: its command, what it reported and the CPU its process tree used."""

    command: str
    rc: int
    wall_s: float
    cpu_s: float
    user_s: float = 0.0  # the user-mode part of cpu_s
    rps: float | None = None
    requests: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    output: str = ""
    target_cpu_pct: float | None = None  # nginx's CPU over the load period, % of one core
    other_cpu_pct: float | None = None  # the rest of the host (neither client nor nginx), % of one core

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.cpu_s / self.requests * 1e6 if self.requests else None

    @property
    def user_us_per_request(self) -> float | None:
        return self.user_s / self.requests * 1e6 if self.requests else None


@dataclass
class Job:
    """One client in one scenario, and the rounds it ran."""

    scenario: str
    client: str
    fn: Callable[[str, Path], Round]
    skip: str | None = None
    timed: bool = True  # runs for the --duration (else until done: nginx CPU % is over the wall time)
    once: bool = False  # run once after the rounds (the soak), not in the alternation
    rounds: list[Round] = field(default_factory=list)

    def median(self, pick: Callable[[Round], float | None]) -> float | None:
        values = [v for r in self.rounds if r.error is None and (v := pick(r)) is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"scenario": self.scenario, "client": self.client, "skipped": self.skip}
        out["median_rps"] = self.median(lambda r: r.rps)
        out["median_cpu_us_per_request"] = self.median(lambda r: r.cpu_us_per_request)
        out["rounds"] = [asdict(r) | {"cpu_us_per_request": r.cpu_us_per_request} for r in self.rounds]
        return out


# ---------------------------------------------------------------- running and reading one client


def measure(argv: list[str], timeout: float, cwd: Path) -> tuple[Round, str]:
    """Run argv pinned to the generator CPU; CPU is the rusage of every reaped process in its tree."""
    full = ["taskset", "-c", GEN_CPU, *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:  # timeout or Ctrl-C: take the whole tree down, then report or re-raise
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        if not isinstance(sys.exception(), subprocess.TimeoutExpired):
            raise
        out += f"\n[bench] killed after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    cpu = user + (after.ru_stime - before.ru_stime)
    r = Round(command=shlex.join(full), rc=proc.returncode, wall_s=round(wall, 3), cpu_s=round(cpu, 4))
    r.user_s = round(user, 4)
    return r, out


@contextlib.contextmanager
def reading(r: Round, out: str, expect_requests: bool = True) -> Iterator[None]:
    """Keep the output's tail and turn a result that cannot be parsed into an error on the round."""
    r.output = out[-3000:]
    try:
        yield
        if expect_requests and not r.requests:
            raise LookupError("no request completed")
    except (LookupError, ValueError, OSError) as e:
        r.error = f"could not read the result (exit code {r.rc}): {type(e).__name__}: {e}"


def grab(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    if m is None:
        raise LookupError(f"no match for {pattern!r} in the output")
    return float(m.group(1))


def run_wrk(url: str, conns: int, d: int, work: Path) -> Round:
    r, out = measure(["wrk", "-t1", f"-c{conns}", f"-d{d}s", "--latency", url], d + 30, work)
    with reading(r, out):
        r.rps = grab(r"Requests/sec:\s+([\d.]+)", out)
        r.requests = int(grab(r"(\d+) requests in", out))
        if m := re.search(r"Socket errors: (.*)", out):
            r.extra["socket_errors"] = m.group(1)
    return r


def run_hey(url: str, conns: int, d: int, work: Path) -> Round:
    r, out = measure(["hey", "-c", str(conns), "-z", f"{d}s", url], d + 30, work)
    with reading(r, out):
        r.rps = grab(r"Requests/sec:\s+([\d.]+)", out)
        r.requests = sum(int(n) for n in re.findall(r"\[\d{3}\]\s+(\d+) responses", out))
    return r


def run_locust(url: str, users: int, d: int, work: Path) -> Round:
    (work / "locustfile.py").write_text(LOCUSTFILE)
    stats = work / "locust_stats.csv"
    stats.unlink(missing_ok=True)
    argv = [str(LOCUST), "-f", "locustfile.py", "--headless", "-u", str(users)]
    argv += ["-r", str(users), "-t", f"{d}s", "-H", url.rstrip("/"), "--csv", "locust", "--only-summary"]
    r, out = measure(argv, d + 60, work)
    with reading(r, out):
        rows = [row for row in csv.DictReader(stats.open()) if row["Name"] == "Aggregated"]
        if not rows:
            raise LookupError(f"no Aggregated row in {stats}")
        r.rps, r.requests = float(rows[0]["Requests/s"]), int(rows[0]["Request Count"])
        r.extra["failures"] = int(rows[0]["Failure Count"])
    return r


def run_squall(url: str, transport: str, conns: int, d: int, work: Path, rate: int | None = None) -> Round:
    argv = ["-c", str(conns), *(["-r", str(rate)] if rate else []), "-d", f"{d}s"]
    r, doc = squall(url, transport, argv, 2 * d + 60, work)  # an open run that falls behind sends late
    if doc and rate:
        r.extra["schedule_lag_p99_ms"] = doc["summary"]["schedule_lag_ms"]["p99"]
    return r


def run_record(url: str, transport: str, n: int, record: bool, work: Path) -> Round:
    """`-c 64 -n N` with recording on or off; with it off squall counts nothing, so nginx's counter must."""
    before = served(url)
    argv = ["-c", "64", "-n", str(n), *([] if record else ["--no-record"])]
    r, _ = squall(url, transport, argv, 300, work, expect=record)
    r.extra |= {"n": n, "nginx_served": served(url) - before - 1}  # less the status request itself
    if not record and r.error is None:
        r.requests, r.rps = n, None
        if r.extra["nginx_served"] < n:
            r.error = f"nginx served {r.extra['nginx_served']} requests, fewer than -n {n}"
    r.extra["cpu_us"] = r.cpu_us_per_request
    return r


def run_memory(url: str, conns: int, seconds: int, work: Path) -> Round:
    """A closed raw run; the worker's RSS per second from the result (end, max, and minute 1 → end)."""
    r, doc = squall(url, "raw", ["-c", str(conns), "-d", f"{seconds}s"], seconds + 120, work)
    if doc:
        rss = extra.worker_rss(doc)
        r.extra["rss_end_mb"] = rss[-1][1] if rss else None
        r.extra["rss_max_mb"] = max((mb for _, mb in rss), default=None)
        r.extra["rss_per_minute"] = [(t, mb) for t, mb in rss if t % 60 == 0 or (t, mb) == rss[-1]]
        r.extra["growth"] = extra.rss_growth(rss)
    return r


def run_merge(seconds: int, work: Path) -> Round:
    argv = [sys.executable, str(BENCH / "extra.py"), "merge", "--workers", "64", "--seconds", str(seconds)]
    r, out = measure(argv, 300, work)
    with reading(r, out):
        r.extra = json.loads(out.strip().splitlines()[-1])
        r.requests = r.extra["requests_merged"]
    return r


def squall(
    url: str, transport: str, argv: list[str], timeout: float, work: Path, expect: bool = True
) -> tuple[Round, dict[str, Any] | None]:
    """One `squall run -w 1`; the round and the result document (None if it could not be read)."""
    result = work / "squall.json"
    result.unlink(missing_ok=True)
    full = [*SQUALL, "run", url, "-w", "1", *argv, "-q", "-o", str(result), "--transport", transport]
    r, out = measure(full, timeout, work)
    doc = None
    with reading(r, out, expect_requests=expect):
        doc = json.loads(result.read_text())
        s = doc["summary"]
        r.rps, r.requests = float(s["rps"]), int(s["requests"])
        r.extra = {"errors": s["errors"], "latency_p99_ms": s["latency_ms"]["p99"], "valid": doc["valid"]}
        r.extra |= {"generator_limited": doc["generator_limited"], "warnings": doc["warnings"]}
    return r, doc


def served(url: str) -> int:
    """nginx's count of requests served so far (stub_status), or -1 if it cannot be read."""
    try:
        with urllib.request.urlopen(url + "nginx_status", timeout=5) as resp:
            return int(resp.read().decode().splitlines()[2].split()[2])
    except (OSError, ValueError, IndexError):
        return -1


# ---------------------------------------------------------------- tools, target, machine


def sh(argv: list[str], timeout: float = 30) -> str:
    """Run a short helper command; its output, or '' if it is missing or fails."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout + p.stderr).strip()


def ensure_tools(clients: set[str]) -> dict[str, str]:
    """Install what the chosen clients need; returns {client: reason} for those that cannot run."""
    wanted = {"nginx": "nginx"} | {c: c for c in ("wrk", "hey") if c in clients}
    missing = [pkg for binary, pkg in wanted.items() if not shutil.which(binary)]
    skipped: dict[str, str] = {}
    if missing:
        if os.geteuid() != 0:
            raise BenchError(
                f"missing {', '.join(missing)}: run as root, or `apt-get install -y {' '.join(missing)}`"
            )
        print(f"[bench] installing {' '.join(missing)} with apt-get", flush=True)
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        if (
            "hey" in missing
            and re.search(r"Candidate: (?!\(none\))", sh(["apt-cache", "policy", "hey"])) is None
        ):
            missing.remove("hey")
            skipped["hey"] = "not available: apt-cache policy hey has no candidate"
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, timeout=900)
    if "locust" in clients and not (LOCUST).exists():
        print(f"[bench] installing Locust into {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "locust"], check=True, timeout=900)
    return skipped


@contextlib.contextmanager
def nginx() -> Iterator[dict[str, Any]]:
    """A one-worker nginx on CPU 1 answering 'Hello, world'; always stopped and cleaned up on exit."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)  # nginx may not exceed our hard limit
    with serve(
        workers=1, connections=NGINX_CONNECTIONS, nofile=nofile, body="Hello, world", cpu=TARGET_CPU
    ) as target:
        tree = [psutil.Process(target["pid"]), *psutil.Process(target["pid"]).children(recursive=True)]
        yield {
            "url": target["url"],
            "config": target["config"],
            "cpu_affinity": {p.pid: p.cpu_affinity() for p in tree},
            "pids": [p.pid for p in tree],
        }


def raw_available() -> bool:
    return re.search(r"\braw\b", sh([*SQUALL, "run", "--help"])) is not None


def machine_info() -> dict[str, Any]:
    cpu = re.search(r"Model name:\s*(.+)", sh(["lscpu"]))
    return {
        "cpu_model": cpu.group(1).strip() if cpu else "?",
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "squall": importlib.metadata.version("squall"),
        "squall_git": sh(["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"]),
        "wrk": sh(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else None,
        "nginx": sh(["nginx", "-v"]) if shutil.which("nginx") else None,
        "hey": sh(["dpkg-query", "-W", "-f=${Version}", "hey"]) if shutil.which("hey") else None,
        "locust": sh([str(LOCUST), "--version"]).split(" from ")[0] if LOCUST.exists() else None,
    }


# ---------------------------------------------------------------- the plan, the table, the verdicts


def plan(d: int, skipped: dict[str, str], soak_minutes: int = 0) -> list[Job]:
    """Every (scenario, client) in the order the rounds alternate; a skipped client keeps a row with why."""
    jobs = [
        Job(G64, "wrk", lambda u, w: run_wrk(u, 64, d, w)),
        Job(G64, "hey", lambda u, w: run_hey(u, 64, d, w)),
    ]
    jobs.append(Job(G64, "locust", lambda u, w: run_locust(u, 64, d, w)))
    jobs += [
        Job(G64, f"squall-{t}", lambda u, w, t=t: run_squall(u, t, 64, d, w)) for t in ("aiohttp", "raw")
    ]
    jobs.append(Job(G1000, "wrk", lambda u, w: run_wrk(u, 1000, d, w)))
    jobs += [
        Job(G1000, f"squall-{t}", lambda u, w, t=t: run_squall(u, t, 1000, d, w)) for t in ("aiohttp", "raw")
    ]
    for t in ("aiohttp", "raw"):
        jobs.append(Job(OPEN, f"squall-{t}", lambda u, w, t=t: run_squall(u, t, 256, d, w, OPEN_RATE)))
    for t in ("raw", "aiohttp"):  # about d seconds of work each; on and off back to back
        n = max(1000, RECORD_N[t] * d // 10)
        for scenario, record in ((REC_ON, True), (REC_OFF, False)):
            fn = lambda u, w, t=t, n=n, rec=record: run_record(u, t, n, rec, w)  # noqa: E731
            jobs.append(Job(scenario, f"squall-{t}", fn, timed=False))
    jobs.append(Job(MEM_MANY, "squall-raw", lambda u, w: run_memory(u, MEM_CONNS, d, w)))
    jobs.append(Job(MEM_ONE, "squall-raw", lambda u, w: run_memory(u, 1, d, w)))
    jobs.append(Job(MERGE, "squall-collector", lambda u, w: run_merge(30 if d >= 10 else 10, w), timed=False))
    if soak_minutes:
        soak = Job(SOAK, "squall-raw", lambda u, w: run_memory(u, 64, soak_minutes * 60, w), once=True)
        jobs.append(soak)
    for job in jobs:
        job.skip = skipped.get(job.client)
    return jobs


def find(jobs: list[Job], scenario: str, client: str) -> Job | None:
    return next((j for j in jobs if j.scenario == scenario and j.client == client and not j.skip), None)


def ratio(jobs: list[Job], scenario: str, client: str, other: str) -> float | None:
    a, b = find(jobs, scenario, client), find(jobs, scenario, other)
    ma, mb = (a.median(lambda r: r.rps) if a else None), (b.median(lambda r: r.rps) if b else None)
    return ma / mb if ma and mb else None


def verdicts(jobs: list[Job], client: str) -> list[tuple[str, float | None, bool | None]]:
    """Each target as (name, measured value, passed) for one squall transport; None where not measured."""
    j64, op = find(jobs, G64, client), find(jobs, OPEN, client)
    cpu = j64.median(lambda r: r.cpu_us_per_request) if j64 else None
    rate = op.median(lambda r: r.rps) if op else None
    off = abs(rate / OPEN_RATE - 1) * 100 if rate else None
    lag = op.median(lambda r: r.extra.get("schedule_lag_p99_ms")) if op else None
    checks: list[tuple[str, float | None, float | None, bool]] = [
        (">= 0.9x wrk @64 (ratio)", ratio(jobs, G64, client, "wrk"), 0.9, True),
        (">= 0.7x wrk @1000 (ratio)", ratio(jobs, G1000, client, "wrk"), 0.7, True),
        (">= 15x Locust @64 (ratio)", ratio(jobs, G64, client, "locust"), 15, True),
        (">= 3x hey @64 (ratio)", ratio(jobs, G64, client, "hey"), 3, True),
        ("<= 25 µs client CPU/request @64 (µs)", cpu, 25, False),
        ("open model within 1 % of 10k/s (% off)", off, 1, False),
        ("schedule-lag p99 <= 2 ms (ms)", lag, 2, False),
        *own_costs(jobs, client),
    ]
    return [(n, v, judge(v, lim, up)) for n, v, lim, up in checks]


def judge(value: float | None, limit: float | None, at_least: bool) -> bool | None:
    """Pass or fail against the limit; None when nothing was measured or the limit is withheld."""
    if value is None or limit is None:
        return None
    return value >= limit if at_least else value <= limit


def own_costs(jobs: list[Job], client: str) -> list[tuple[str, float | None, float | None, bool]]:
    """The targets on squall's own costs; a limit of None makes the verdict inconclusive."""
    share = extra.recording(jobs, REC_ON, REC_OFF, client)["share_pct"]
    kb = extra.per_connection(jobs, MEM_MANY, MEM_ONE, client)["kb_per_connection"]
    soak = find(jobs, SOAK, client)
    growths = [r.extra["growth"] for r in soak.rounds if r.extra.get("growth")] if soak else []
    span = f"minute 1 to {growths[0]['to_t_s'] / 60:.0f}" if growths else "minute 1 to 10"
    merge = extra.merge_figures(jobs, MERGE)["core_pct"]
    share_limit = 10 if share is None or share >= 0 else None  # on cheaper than off: below the noise
    return [
        ("recording share of client CPU <= 10 % (%)", share, share_limit, False),
        (f"worker RSS per connection @{MEM_CONNS} <= 20 KB (KB)", kb, 20, False),
        (f"worker RSS growth {span} <= 1 MB (MB)", growths[0]["growth_mb"] if growths else None, 1, False),
        ("collector merge, 64 workers, <= 5 % of a core (%)", merge, 5, False),
    ]


def all_rounds(j: Job) -> str:
    """Each round's req/s; * marks a round during which other processes were busy."""
    cells = [fmt(r.rps) + ("*" if (r.other_cpu_pct or 0) > NOISY_PCT else "") for r in j.rounds]
    return ", ".join(c if r.error is None else "failed" for c, r in zip(cells, j.rounds, strict=True))


def closed_table(jobs: list[Job]) -> list[str]:
    head = "| scenario | client | median req/s | all rounds | squall/wrk | squall/locust | squall/hey |"
    out = [head + " CPU µs/request | nginx CPU % |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for j in (j for j in jobs if j.scenario in (G64, G1000)):
        if j.skip:
            out.append(f"| {j.scenario} | {j.client} | — | {j.skip} | | | | | |")
            continue
        ratios = [fmt(ratio(jobs, j.scenario, j.client, o), ".2f", "x") for o in ("wrk", "locust", "hey")]
        ratios = ratios if j.client.startswith("squall") else ["", "", ""]
        cpu, rps = fmt(j.median(lambda r: r.cpu_us_per_request), ".1f"), fmt(j.median(lambda r: r.rps))
        ratios.append(f"{cpu} | {fmt(j.median(lambda r: r.target_cpu_pct), '.0f')}")
        out.append(f"| {j.scenario} | {j.client} | {rps} | {all_rounds(j)} | {' | '.join(ratios)} |")
    return out


def open_table(jobs: list[Job]) -> list[str]:
    head = "| client | target req/s | median achieved req/s | % of target | schedule-lag p99 ms |"
    out = [head + " rounds squall calls valid | all rounds |", "|---|---:|---:|---:|---:|---:|---|"]
    for j in (j for j in jobs if j.scenario == OPEN):
        if j.skip:
            out.append(f"| {j.client} | {OPEN_RATE:,} | — | — | — | — | {j.skip} |")
            continue
        rate, lag = j.median(lambda r: r.rps), j.median(lambda r: r.extra.get("schedule_lag_p99_ms"))
        pct, lag_s = fmt(rate / OPEN_RATE * 100 if rate else None, ".2f", " %"), fmt(lag, ".2f")
        valid = f"{sum(r.extra.get('valid') is True for r in j.rounds)}/{len(j.rounds)}"
        out.append(
            f"| {j.client} | {OPEN_RATE:,} | {fmt(rate)} | {pct} | {lag_s} | {valid} | {all_rounds(j)} |"
        )
    return out


def targets_table(jobs: list[Job]) -> list[str]:
    squalls = [c for c in ("squall-aiohttp", "squall-raw") if any(j.client == c and not j.skip for j in jobs)]
    out = ["| target | " + " | ".join(squalls) + " |", "|---|" + "---:|" * len(squalls)]
    for row in zip(*[verdicts(jobs, c) for c in squalls], strict=True):
        verdict = {True: "pass", False: "**FAIL**", None: "inconclusive"}
        cells = ["not measured" if v is None else f"{v:,.2f} {verdict[ok]}" for _, v, ok in row]
        out.append(f"| {row[0][0]} | " + " | ".join(cells) + " |")
    return out if squalls else ["(no squall client ran)"]


def markdown(jobs: list[Job], header: str) -> str:
    errs = [(j, i, r.error) for j in jobs for i, r in enumerate(j.rounds, 1) if r.error]
    fails = ["", "Failures:", "", *(f"- {j.scenario} {j.client} round {i}: {e}" for j, i, e in errs)]
    busy = max((r.other_cpu_pct or 0.0 for j in jobs for r in j.rounds), default=0.0)
    out = [header, "", *closed_table(jobs)]
    if any(j.scenario == OPEN for j in jobs):
        out += ["", f"Open model ({OPEN}, constant arrivals):", "", *open_table(jobs)]
    if any(j.scenario in (REC_ON, REC_OFF) for j in jobs):
        out += ["", "Recording cost (client CPU per request, recording on vs `--no-record`):", ""]
        out += extra.recording_table(jobs, REC_ON, REC_OFF)
    if any(j.scenario in (MEM_MANY, MEM_ONE) for j in jobs):
        out += ["", "Memory per connection (worker RSS at the end of the run):", ""]
        out += extra.memory_table(jobs, MEM_MANY, MEM_ONE)
    if any(j.scenario == MERGE for j in jobs):
        out += ["", "Collector merge cost (simulated, CPU per simulated second):", ""]
        out += extra.merge_table(jobs, MERGE)
    if soak := find(jobs, SOAK, "squall-raw"):
        out += ["", "Worker RSS over a soak (raw, c=64):", "", *extra.soak_table(soak)]
    out += ["", "Targets:", "", *targets_table(jobs), *(fails if errs else [])]
    if busy > NOISY_PCT:
        out += ["", f"\\* other processes used > {NOISY_PCT} % of a core in that round (up to {busy:.0f} %)."]
    return "\n".join(out) + "\n"


def results(jobs: list[Job], args: argparse.Namespace, machine: dict, target: dict) -> dict[str, object]:
    """Everything measured, every command line and the machine, for bench/results.json."""
    squalls = [c for c in ("squall-aiohttp", "squall-raw") if any(j.client == c and not j.skip for j in jobs)]
    costs = {
        c: extra.recording(jobs, REC_ON, REC_OFF, c) | extra.per_connection(jobs, MEM_MANY, MEM_ONE, c)
        for c in squalls
    }
    return {
        "command": args.command,
        "date": args.started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - args.t0, 1),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "open_rate": OPEN_RATE,
            "record_n": {t: max(1000, n * args.duration // 10) for t, n in RECORD_N.items()},
            "memory_connections": MEM_CONNS,
            "soak_minutes": args.soak_minutes,
            "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        },
        "machine": machine,
        "target": target,
        "jobs": [j.as_dict() for j in jobs],
        "own_costs": costs | {"collector_merge": extra.merge_figures(jobs, MERGE)},
        "targets": {c: verdicts(jobs, c) for c in squalls},
    }


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="3 s per run, 1 round (flags below still win)")
    p.add_argument("--rounds", type=int, help="rounds, in alternation A B C A B C (default 3)")
    p.add_argument("--duration", type=int, help="seconds per run (default 10)")
    p.add_argument("--only", help=f"comma-separated clients: {', '.join(CLIENTS)}, or squall for all three")
    p.add_argument("--soak-minutes", type=int, default=0, help="then a raw c=64 soak this long (check: 10)")
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (3 if a.quick else 10)
    if not (1 <= a.rounds <= 20 and 1 <= a.duration <= 300 and 0 <= a.soak_minutes <= 120):
        p.error("--rounds must be 1..20, --duration 1..300 seconds and --soak-minutes 0..120")
    names = set(a.only.split(",")) if a.only else set(CLIENTS)
    if unknown := names - set(CLIENTS) - {"squall"}:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CLIENTS)}, squall")
    a.clients = {c for c in CLIENTS if c in names or c.split("-")[0] in names}
    a.command = shlex.join(["python3", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    a.started, a.t0 = dt.datetime.now(dt.UTC), time.monotonic()
    return a


def cpu_now(pids: list[int]) -> tuple[float, float]:
    """CPU seconds so far: the whole host busy, and nginx's processes."""
    t, nginx_s = psutil.cpu_times(), 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            c = psutil.Process(pid).cpu_times()
            nginx_s += c.user + c.system
    return t.user + t.nice + t.system + t.irq + t.softirq, nginx_s


def wait_quiet(pids: list[int], limit_s: float = 30) -> None:
    """Wait (at most limit_s) until the host, nginx aside, has been near idle for half a second."""
    t0 = time.monotonic()
    while time.monotonic() < t0 + limit_s:
        host0, nginx0 = cpu_now(pids)
        time.sleep(0.5)
        host1, nginx1 = cpu_now(pids)
        if (host1 - host0 - (nginx1 - nginx0)) / 0.5 * 100 < NOISY_PCT:
            break
    if (waited := time.monotonic() - t0) > 1:
        print(f"(waited {waited:.0f} s for a quiet host)", end=" ", flush=True)


def run_rounds(jobs: list[Job], args: argparse.Namespace, target: dict[str, Any], work: Path) -> None:
    """Every active job once per round, in the same order each round (A B C A B C ...); then the soak."""
    for i in range(args.rounds):
        for j in (j for j in jobs if not j.skip and not j.once):
            run_one(j, f"round {i + 1}/{args.rounds}", args.duration, target, work)
    for j in (j for j in jobs if not j.skip and j.once):
        run_one(j, "once", args.duration, target, work)


def run_one(j: Job, label: str, duration: int, target: dict[str, Any], work: Path) -> None:
    """One round of one job, with nginx's CPU and the rest of the host's measured around it."""
    print(f"[bench] {label}: {j.scenario:<26} {j.client:<16}", end=" ", flush=True)
    wait_quiet(target["pids"])
    host0, nginx0 = cpu_now(target["pids"])
    r = j.fn(target["url"], work)
    host1, nginx1 = cpu_now(target["pids"])
    load_s = duration if j.timed and not j.once else r.wall_s
    r.target_cpu_pct = round((nginx1 - nginx0) / load_s * 100, 1)
    r.other_cpu_pct = round((host1 - host0 - r.cpu_s - (nginx1 - nginx0)) / r.wall_s * 100, 1)
    j.rounds.append(r)
    print(f"-> {fmt(r.rps)} req/s, {fmt(r.cpu_us_per_request, '.1f')} µs CPU/req, nginx", end=" ")
    print(f"{r.target_cpu_pct} % CPU, other {r.other_cpu_pct} % CPU {r.error or ''}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop nginx
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = max(soft, min(hard, 65536))  # inherited by the clients; nginx sets its own up to `hard`
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    skipped = ensure_tools(args.clients)
    if not raw_available():
        skipped["squall-raw"] = "not available: `squall run --help` has no raw transport"
    jobs = [j for j in plan(args.duration, skipped, args.soak_minutes) if j.client in args.clients]
    for j in (j for j in jobs if j.scenario == MEM_MANY and nofile < MEM_CONNS + 1000):
        j.skip = f"open-file limit {nofile} (hard {hard}) is below {MEM_CONNS + 1000}: raise `ulimit -Hn`"
    machine = machine_info()  # before the rounds: squall's git state is the one measured
    with nginx() as target, tempfile.TemporaryDirectory(prefix="squall-bench-") as tmp:
        print(f"[bench] nginx on {target['url']} (CPU {TARGET_CPU}); clients on CPU {GEN_CPU}", flush=True)
        run_rounds(jobs, args, target, Path(tmp))
    doc = results(jobs, args, machine, target)
    header = (
        f"{args.started:%Y-%m-%d %H:%M} UTC, `{args.command}`: {args.rounds} round(s) of {args.duration} s"
    )
    header += f"; {machine['cpu_model']}, {machine['nproc']} CPUs; squall {machine['squall_git']}."
    md = markdown(jobs, header)
    (BENCH / "results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (BENCH / "results.md").write_text(md)
    print(f"\n{md}\n[bench] done in {doc['elapsed_s']} s; wrote bench/results.json and bench/results.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"bench: {e}", file=sys.stderr)
        sys.exit(2)
