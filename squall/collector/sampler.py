"""psutil sampling of the workers, the collector itself, the host and an optional target process."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

MB = 1024 * 1024
TOP_OTHERS = 3  # the other processes a busy box's warning names
TOP_OTHERS_MIN_PCT = 1.0  # ... each at least this share of one core


def _proc(pid: int) -> psutil.Process | None:
    try:
        p = psutil.Process(pid)
        p.cpu_percent()  # primes the counter; the next call measures since now
        return p
    except psutil.Error:
        return None


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


class Sampler:
    """Samples CPU % (since the previous sample) and memory once per call.

    `worker_pids` is the collector's own map, read at every sample: a worker whose hello arrives after the
    run started (a busy box delays it) is sampled from then on, never left out of the self-check.
    """

    def __init__(self, worker_pids: dict[int, int], target_pid: int | None) -> None:
        self.pids = worker_pids
        self.workers: dict[int, psutil.Process | None] = {w: _proc(pid) for w, pid in worker_pids.items()}
        self.me = psutil.Process()
        self.me.cpu_percent()
        self.target_pid = target_pid
        self.target = _proc(target_pid) if target_pid else None
        self.target_lost = target_pid is not None and self.target is None
        psutil.cpu_percent()
        self.others_t0 = time.monotonic()
        self.others: dict[int, tuple[psutil.Process, float]] = self._processes()

    @staticmethod
    def _processes() -> dict[int, tuple[psutil.Process, float]]:
        """Every process on the box with its CPU seconds so far (read once at the start, once at the end)."""
        out = {}
        for p in psutil.process_iter():
            try:
                out[p.pid] = (p, _cpu_s(p))
            except psutil.Error:
                continue
        return out

    def sample(self) -> dict[str, Any]:
        """One sample: per-worker CPU % and RSS MB, collector, host and target."""
        cpu: dict[int, float | None] = {}
        rss: dict[int, float | None] = {}
        for w, pid in self.pids.items():
            if w not in self.workers:  # heard from after the start: its CPU counts from the next sample
                self.workers[w] = _proc(pid)
                cpu[w] = None
        for w, p in self.workers.items():
            try:
                if p is None:
                    raise psutil.NoSuchProcess(0)
                with p.oneshot():
                    cpu.setdefault(w, round(p.cpu_percent(), 1))
                    rss[w] = round(p.memory_info().rss / MB, 2)
            except psutil.Error:
                self.workers[w] = None
                cpu[w] = rss[w] = None
        vm = psutil.virtual_memory()
        out: dict[str, Any] = {
            "worker_cpu": cpu,
            "worker_rss_mb": rss,
            "collector_cpu": round(self.me.cpu_percent(), 1),
            "collector_rss_mb": round(self.me.memory_info().rss / MB, 2),
            "host_cpu": round(psutil.cpu_percent(), 1),
            "host_mem_pct": round(vm.percent, 1),
        }
        if self.target is not None:
            try:
                with self.target.oneshot():
                    out["target"] = {
                        "cpu": round(self.target.cpu_percent(), 1),
                        "rss_mb": round(self.target.memory_info().rss / MB, 2),
                        "fds": self.target.num_fds(),
                        "threads": self.target.num_threads(),
                    }
            except psutil.Error:
                self.target = None
                self.target_lost = True
        return out

    def top_others(self, n: int = TOP_OTHERS) -> list[dict[str, Any]]:
        """The processes other than squall's and the target's that used the most CPU since the run
        started (% of one core, as `worker_cpu`), at most `n` of them: [{name, pid, cpu_pct}].

        Reads the process table once more (a few ms); only processes seen at the start are counted.
        """
        span = time.monotonic() - self.others_t0
        if span <= 0:
            return []
        ours = {self.me.pid, os.getppid(), self.target_pid, *self.pids.values()}
        found = []
        for pid, (p, before) in self.others.items():
            if pid in ours:
                continue
            try:
                used = 100.0 * (_cpu_s(p) - before) / span
                if used >= TOP_OTHERS_MIN_PCT and p.is_running():
                    found.append({"name": p.name(), "pid": pid, "cpu_pct": round(used, 1)})
            except psutil.Error:
                continue
        found.sort(key=lambda e: (-e["cpu_pct"], e["pid"]))
        return found[:n]
