"""Workers whose windows stop arriving (a suspended process, a blocked event loop): pure bookkeeping over
arrival times (perf_counter ns), fed by the collector. It says who is stalled, and who is stuck (to kill)."""

from __future__ import annotations

from typing import Any

NS = 1_000_000_000


class Stalls:
    """When each worker was last heard from, which are stalled now, and the stalls that ended.

    A worker is stalled once it has sent nothing for `limit_ns`; its stall ends with its next window (or
    its end). If the watcher itself was not asked for half the limit, it could not have heard anyone: the
    clocks restart instead of calling every worker stalled.

    A worker is stuck (to be killed, so that no run waits on it forever) once it has sent nothing for
    `stuck_ns`, or for `alone_ns` when every other worker has ended: then the run waits on it alone.
    """

    def __init__(self, limit_ns: int, stuck_ns: int | None = None, alone_ns: int | None = None) -> None:
        self.limit_ns = limit_ns
        self.stuck_ns = stuck_ns
        self.alone_ns = alone_ns
        self.doomed: set[int] = set()  # the workers found stuck (each once)
        self.heard: dict[int, int] = {}  # worker -> its last window's (or the start's) arrival
        self.stalling: dict[int, int] = {}  # stalled workers -> since when (their last arrival)
        self.ended: list[tuple[int, int, int]] = []  # (worker, since, until)
        self.last_turn: int | None = None

    def start(self, workers: set[int], now: int) -> None:
        """The run starts at `now` (t0): every worker's clock starts."""
        self.heard = dict.fromkeys(workers, now)

    def heard_from(self, worker: int, now: int) -> None:
        """A window from `worker` arrived; ends its stall if it had one."""
        self.end(worker, now)
        if worker in self.heard:
            self.heard[worker] = now

    def end(self, worker: int, now: int) -> None:
        """The stall of `worker`, if any, ends at `now` (its window came, or it finished or was lost)."""
        since = self.stalling.pop(worker, None)
        if since is not None:
            self.ended.append((worker, since, now))

    def watch(self, live: set[int], now: int) -> list[int]:
        """The live workers newly stalled at `now` (each named once a stall)."""
        last, self.last_turn = self.last_turn, now
        if last is not None and now - last > self.limit_ns // 2:
            self.heard = dict.fromkeys(self.heard, now)
        new = [
            w
            for w, t in self.heard.items()
            if w in live and w not in self.stalling and now >= t and now - t >= self.limit_ns
        ]
        for w in new:
            self.stalling[w] = self.heard[w]
        return new

    def stuck(self, live: set[int], now: int) -> list[tuple[int, int, bool]]:
        """The live workers newly stuck at `now`, each once: (worker, silent for ns, the others had ended)."""
        alone = len(live) == 1 and len(self.heard) > 1
        found = []
        for w in sorted(live - self.doomed):
            t = self.heard.get(w)
            if t is None or now < t:
                continue
            silent = now - t
            if self.stuck_ns is not None and silent >= self.stuck_ns:
                found.append((w, silent, False))
            elif alone and self.alone_ns is not None and silent >= self.alone_ns:
                found.append((w, silent, True))
        self.doomed.update(w for w, _, _ in found)
        return found

    def doc(self, pids: dict[int, int], measure_start: int) -> list[dict[str, Any]]:
        """The stalls that ended, for the result: {worker, pid, at_s, for_s}, at_s from the load's start."""
        return [
            {
                "worker": w,
                "pid": pids.get(w),
                "at_s": round((since - measure_start) / NS, 3),
                "for_s": round((until - since) / NS, 3),
            }
            for w, since, until in sorted(self.ended, key=lambda s: (s[1], s[0]))
        ]
