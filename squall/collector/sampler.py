"""psutil sampling of the workers, the collector itself, the host and an optional target process."""

from __future__ import annotations

from typing import Any

import psutil

MB = 1024 * 1024


def _proc(pid: int) -> psutil.Process | None:
    try:
        p = psutil.Process(pid)
        p.cpu_percent()  # primes the counter; the next call measures since now
        return p
    except psutil.Error:
        return None


class Sampler:
    """Samples CPU % (since the previous sample) and memory once per call."""

    def __init__(self, worker_pids: dict[int, int], target_pid: int | None) -> None:
        self.workers = {w: _proc(pid) for w, pid in worker_pids.items()}
        self.me = psutil.Process()
        self.me.cpu_percent()
        self.target_pid = target_pid
        self.target = _proc(target_pid) if target_pid else None
        self.target_lost = target_pid is not None and self.target is None
        psutil.cpu_percent()

    def sample(self) -> dict[str, Any]:
        """One sample: per-worker CPU % and RSS MB, collector, host and target."""
        cpu: dict[int, float | None] = {}
        rss: dict[int, float | None] = {}
        for w, p in self.workers.items():
            try:
                if p is None:
                    raise psutil.NoSuchProcess(0)
                with p.oneshot():
                    cpu[w] = round(p.cpu_percent(), 1)
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
