"""`squall py` runs: a channel is one virtual user, and one send() awaits one iteration of the workload.

The workload comes from `MODULE:FACTORY`, called once in each worker (with the --param values). It is an
async callable taking the user (or nothing), or an object with `async run(user)` and, optionally, `setup()` /
`teardown()` (once per worker) and `user_setup(user)` / `user_teardown(user)` (once per virtual user); each
may be sync or async. An iteration's duration is its latency; an exception is an error of its type's name,
with the first traceback of each type kept; `squall.sdk.timer/record` phases get their own histograms.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from time import perf_counter_ns
from typing import Any

from squall.engine.recorder import Recorder
from squall.engine.transport.base import Channel, Interrupted, Owner, TaskChannel
from squall.plan.plan import Plan
from squall.plan.py import load_factory
from squall.sdk import User, current
from squall.units import PlanError

PHASE = "phase"
MAX_SAMPLES = 20


def workload_entry(w: Any, target: str) -> tuple[Any, Any]:
    """(what one iteration calls, the object whose setup/teardown hooks apply, or None) for a workload.

    An object with `.run` is the full form; any other callable (an async function, a lambda returning a
    coroutine, an object with `async __call__`) is run as it is, with the hooks of an object that has them.
    """
    run = getattr(w, "run", None)
    if callable(run) and not inspect.isfunction(w) and not inspect.ismethod(w):
        return run, w
    if callable(w):
        plain = inspect.isfunction(w) or inspect.ismethod(w) or inspect.isbuiltin(w)
        return w, None if plain else w
    what = type(w).__name__
    raise PlanError(f"{target} returned {what}: expected an async callable or an object with .run()")


def takes_user(run: Any, target: str) -> bool:
    """Whether an iteration calls `run(user)` (it takes a parameter) or `run()`; PlanError when it can be
    called neither way (every call would fail with the same TypeError)."""
    try:
        sig = inspect.signature(run)
    except (TypeError, ValueError):  # no signature to read (a builtin): pass the user, as always
        return True
    for args in ((object(),), ()):
        try:
            sig.bind(*args)
        except TypeError:
            continue
        return bool(args)
    raise PlanError(
        f"{target}: the workload takes {sig}; squall py calls it with the user or with nothing: "
        "give it one parameter (user) or none"
    )


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Iteration:
    """squall.sdk's sink for one iteration: phases and counters to the workload, and whether squall is
    the one cancelling it (so a phase it cuts is not timed, while the workload's own cancellations are)."""

    __slots__ = ("ch", "deadline", "t")

    def __init__(self, t: PyWorkload, ch: _PyUser) -> None:
        self.t, self.ch = t, ch
        self.deadline: asyncio.Timeout | None = None

    def phase(self, name: str, ns: int, error: str | None = None) -> None:
        self.t.phase(name, ns, error)

    def count(self, name: str, n: int) -> None:
        self.t.count(name, n)

    def cancelled(self) -> bool:
        return self.ch.aborting or (self.deadline is not None and self.deadline.expired())


class _PyUser(TaskChannel):
    __slots__ = ("aborting", "t", "user")

    def __init__(self, t: PyWorkload, owner: Owner, uid: int) -> None:
        super().__init__(owner)
        self.t, self.user = t, User(uid)
        self.aborting = False

    def abort(self) -> None:
        self.aborting = True  # read by the iteration's sink: this cancellation is squall's
        super().abort()

    async def go(self) -> None:
        t = self.t
        self.aborting = False
        measured = self.start >= t.measure_start
        deadline: asyncio.Timeout | None = None
        sink = _Iteration(t, self) if measured else None
        current.set(sink)  # warmup iterations' phases and counters are not counted
        rec = t.rec
        try:
            if self.user not in t.ready:
                t.ready.add(self.user)
                if t.user_setup is not None:
                    await _maybe(t.user_setup(self.user))
            self.user.iteration += 1
            start = perf_counter_ns()
            async with asyncio.timeout(t.timeout_s) as deadline:
                if sink is not None:
                    sink.deadline = deadline
                pending = t.run(self.user) if t.takes_user else t.run()
                if not inspect.isawaitable(pending):
                    raise TypeError(
                        f"the workload returned {type(pending).__name__}, not an awaitable: squall py runs "
                        "an async function (or one returning a coroutine) once per iteration"
                    )
                await pending
            done = perf_counter_ns()
        except GeneratorExit:
            raise  # the coroutine itself is being closed: nothing to record, nothing to send
        except asyncio.CancelledError as e:
            task = asyncio.current_task()
            if self.aborting or (task is not None and task.cancelling()):  # squall's: the run is ending
                if measured:
                    rec.interrupted += 1
                self.busy = False
                self.owner.on_failure(self, Interrupted())
                return
            self._failed(measured, e, "CancelledError")  # raised by the workload itself
            return
        except BaseException as e:  # whatever the workload raises (SystemExit too) is data, never a crash
            # --timeout expiring is `timeout`; a TimeoutError the workload raised keeps its type's name.
            expired = isinstance(e, TimeoutError) and deadline is not None and deadline.expired()
            self._failed(measured, e, "timeout" if expired else type(e).__name__)
            return
        if measured:
            rec.response(200, self.start, start, done, done, 0)
        else:
            rec.warmup += 1
        self.busy = False
        self.owner.on_response(self, 0, done, done, 0)

    def _failed(self, measured: bool, exc: BaseException, kind: str) -> None:
        t = self.t
        if measured:
            t.rec.failure(kind)
            t.sample(kind, exc)
        else:
            t.rec.warmup += 1
        self.busy = False
        self.owner.on_response(self, 0, 0, 0, 0)


class PyWorkload:
    """Runs a Python workload in-process on the worker's loop."""

    name = "py"

    def __init__(self, plan: Plan, connections: int, worker: int, rec: Recorder) -> None:
        self.plan, self.worker, self.rec = plan, worker, rec
        self.measure_start = 0  # set by begin() once the run's t0 is known
        self.timeout_s = plan.client.timeout_s
        self.uids = plan.spread.user_ids(plan.load.connections, worker)
        self.channels: list[_PyUser] = []
        self.ready: set[User] = set()
        self.samples: dict[str, str] = {}
        self.custom: dict[str, int] = {}
        self.workload: Any = None

    async def open(self) -> None:
        spec = self.plan.py
        factory = load_factory(spec.target)
        try:
            self.workload = await _maybe(factory(**dict(spec.params)))
        except (Exception, SystemExit) as e:
            raise PlanError(f"{spec.target}(...) failed: {type(e).__name__}: {e}") from None
        self.run, hooks = workload_entry(self.workload, spec.target)
        self.takes_user = takes_user(self.run, spec.target)
        self.user_setup = getattr(hooks, "user_setup", None)
        self.user_teardown = getattr(hooks, "user_teardown", None)
        self.teardown = getattr(hooks, "teardown", None)
        setup = getattr(hooks, "setup", None)
        if setup is not None:
            try:
                await _maybe(setup())
            except Exception as e:
                raise PlanError(f"{spec.target}: setup() failed: {type(e).__name__}: {e}") from None
        self.rec.custom = self.custom
        if spec.tracemalloc:
            import tracemalloc

            tracemalloc.start(1)  # sites are grouped by the line that allocated: one frame is all they need
            # The first snapshot once the first measured window is over, so start-up allocations are left out.
            delay = self.plan.stop.warmup_s + self.plan.window_s + 1.0
            self.first: Any = None
            asyncio.get_running_loop().call_later(delay, self._first_snapshot)

    async def preconnect(self, channels: list[Channel], within_s: float) -> int:
        """Nothing: the workload opens its own connections."""
        return 0

    def begin(self, measure_start_ns: int) -> None:
        """Iterations that start from `measure_start_ns` on are measured."""
        self.measure_start = measure_start_ns

    def _first_snapshot(self) -> None:
        import tracemalloc

        if tracemalloc.is_tracing():
            self.first = tracemalloc.take_snapshot()

    def finish(self) -> None:
        """Before the last window ships: the allocation sites that grew the most since the first snapshot."""
        if not self.plan.py.tracemalloc:
            return
        import tracemalloc
        from fnmatch import fnmatch

        if getattr(self, "first", None) is None or not tracemalloc.is_tracing():
            self.rec.notes["tracemalloc"] = {"note": "the run ended before the first snapshot"}
            return
        ignore = ("*/squall/*", "*/hdrh/*", "*/asyncio/*", "*/uvloop/*", "*/msgpack/*", tracemalloc.__file__)
        ignore += ("<frozen *>",)
        # Filtering the sites, not the traces: Snapshot.filter_traces walks every block in Python and takes
        # seconds once the workload holds ~10^5 of them, silencing the worker long enough to look stalled.
        grew = [
            s
            for s in tracemalloc.take_snapshot().compare_to(self.first, "lineno")
            if s.size_diff > 0 and not any(fnmatch(s.traceback[0].filename, p) for p in ignore)
        ]
        top = sorted(grew, key=lambda s: s.size_diff, reverse=True)[:10]
        self.rec.notes["tracemalloc"] = {
            "top_growth": [
                {
                    "site": str(s.traceback[0]),
                    "size_diff_kb": round(s.size_diff / 1024, 1),
                    "count_diff": s.count_diff,
                }
                for s in top
            ]
        }
        tracemalloc.stop()

    def channel(self, owner: Owner) -> Channel:
        ch = _PyUser(self, owner, next(self.uids))
        self.channels.append(ch)
        return ch

    def classify(self, exc: BaseException) -> str:
        return type(exc).__name__

    # squall.sdk's sink
    def phase(self, name: str, ns: int, error: str | None = None) -> None:
        parts = self.rec.parts
        key = (PHASE, name)
        rec = parts.get(key)
        if rec is None:
            rec = parts[key] = Recorder(self.worker, 0, open_model=False, table=self.rec.table)
        if error is not None:  # the block raised: an error of its kind, and no time (as a failed request)
            rec.failure(error)
            return
        us = ns // 1000
        rec.response(200, 0, 0, us * 1000, us * 1000, 0)

    def count(self, name: str, n: int) -> None:
        self.custom[name] = self.custom.get(name, 0) + n

    def sample(self, kind: str, exc: BaseException) -> None:
        if kind not in self.samples and len(self.samples) < MAX_SAMPLES:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
            self.samples[kind] = text[-4000:]
            self.rec.notes.setdefault("error_samples", {})[kind] = self.samples[kind]

    async def close(self) -> None:
        w = self.workload
        if w is None:
            return
        if self.user_teardown is not None:
            for user in list(self.ready):
                try:
                    await asyncio.wait_for(_maybe(self.user_teardown(user)), 5)
                except Exception as e:  # a teardown failure is reported, never a crash
                    self.sample(f"user_teardown:{type(e).__name__}", e)
        teardown = self.teardown
        if teardown is not None:
            try:
                await asyncio.wait_for(_maybe(teardown()), 10)
            except Exception as e:
                self.sample(f"teardown:{type(e).__name__}", e)
