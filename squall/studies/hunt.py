"""`squall hunt`: the highest load that still meets the SLOs, found by real runs on the same engine.

Grow the load geometrically until an SLO breaks or throughput stops rising, then bisect between the last
good and the first bad level to the asked resolution. A step where squall itself was the limit is not a
verdict on the target: the hunt stops there and says so.

A level is judged only on enough answers: a percentile SLO needs about ten answers beyond its percentile,
an error-rate SLO is judged on the 95 % Wilson interval of the rate (pass when its upper end is under the
limit, fail when its lower end is over it). A level short of answers, or whose interval straddles the
limit, runs again for longer (at most `max_extend` x the step); still short, it is reported as not judged,
never as a pass or a fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from squall.plan.load import MAX_CONNECTIONS, Closed, Open
from squall.plan.plan import Plan
from squall.plan.thresholds import Threshold
from squall.result.document import EXIT_INVALID, STOPPED_BY_SIGNAL, Result
from squall.studies.judge import check_slo, decisive, level_verdict
from squall.units import PlanError

MODES = ("concurrency", "rate")


@dataclass(frozen=True, slots=True)
class HuntSpec:
    """How to search: over users (concurrency) or requests/s (rate), from `start` up to `max`."""

    mode: str = "concurrency"
    start: float = 8
    max: float = 10_000
    growth: float = 2.0
    resolution: float = 0.05  # stop bisecting when (bad - good) / good is at most this
    step_s: float = 10.0
    warmup_s: float = 2.0
    plateau: float = 0.05  # growing the load must raise throughput by at least this share
    min_samples: int = 20  # answers every level needs before any verdict
    max_extend: float = 4.0  # a level short of answers runs again for at most this many step durations

    def validate(self) -> None:
        if self.mode not in MODES:
            raise PlanError(f"--mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not math.isfinite(self.max) or not math.isfinite(self.start):
            raise PlanError(f"--start and --max must be finite numbers (got {self.start:g}, {self.max:g})")
        if not 0 < self.start <= self.max:
            raise PlanError(f"--start must be greater than 0 and at most --max (got {self.start:g})")
        if self.mode == "concurrency" and (self.start != int(self.start) or self.max != int(self.max)):
            raise PlanError("--start and --max count users in concurrency mode: whole numbers")
        if not 1.1 <= self.growth <= 100:
            raise PlanError(f"--growth must be from 1.1 to 100 (got {self.growth:g})")
        if not 0.001 <= self.resolution <= 1:
            raise PlanError(f"--resolution must be from 0.001 to 1 (got {self.resolution:g})")
        if self.mode == "rate" and self.start < 0.001:
            raise PlanError("--start in rate mode must be at least 0.001 requests/s")
        if self.mode == "concurrency" and self.max > MAX_CONNECTIONS:
            raise PlanError(f"--max in concurrency mode must be at most {MAX_CONNECTIONS:,} users")
        if self.step_s <= 0 or self.warmup_s < 0:
            raise PlanError("--step-duration must be greater than 0 and --warmup not negative")
        if not 0 <= self.min_samples <= 10_000_000:
            raise PlanError(f"--min-samples must be from 0 to 10,000,000 (got {self.min_samples})")
        if not 1 <= self.max_extend <= 100:
            raise PlanError(f"--max-extend must be from 1 to 100 step durations (got {self.max_extend:g})")


def step_summary(
    level: float, res: Result, slos: tuple[Threshold, ...] = (), floor: int = 0
) -> dict[str, Any]:
    """One step of the hunt, as the console table and the result's `hunt.steps` show it: each SLO judged
    with its sample count (`checks`), the level's `verdict` (ok, fail, too_few, undecided), and `ok` only
    when it passed."""
    doc, s = res.doc, res.summary
    cpu = [v for e in doc.get("timeseries", ()) for v in (e.get("worker_cpu") or {}).values() if v]
    if slos:
        checks = [check_slo(doc, t, floor) for t in slos]
    else:  # no SLOs given here: the run's own threshold verdicts
        checks = [
            {"expr": t["expr"], "value": t["value"], "verdict": "ok" if t["ok"] else "fail"}
            for t in doc.get("thresholds", ())
        ]
    verdict = level_verdict(checks)
    failed = [c["expr"] for c in checks if c["verdict"] == "fail"]
    counted = [c for c in checks if "n" in c]
    short = min(counted, key=lambda c: c["n"] - c["need"]) if counted else None
    errors_bound = next((c["bound"] for c in checks if "bound" in c), None)
    cut = doc["meta"].get("stop_reason") in ("interrupted", "terminated")
    out: dict[str, Any] = {
        "level": level,
        "rps": s["rps"],
        "p50_ms": s["latency_ms"]["p50"],
        "p99_ms": s["latency_ms"]["p99"],
        "requests": s["requests"],
        "errors": s["errors"],
        "error_rate": round(s["errors"] / s["requests"], 6) if s["requests"] else 0.0,
        "generator_cpu_pct": round(max(cpu), 1) if cpu else None,
        "limited": bool(doc["generator_limited"]) and not doc["workers_lost"],
        "lost": bool(doc["workers_lost"]),
        "limited_why": limited_why(doc)
        + [f"worker {w} lost: {why}" for w, why in doc.get("workers_lost", {}).items()],
        "interrupted": cut,
        "ok": verdict == "ok" and not doc["workers_lost"] and not cut,
        "verdict": verdict,
        "failed_slo": failed,
        "samples": short["n"] if short else s["requests"],
        "samples_needed": short["need"] if short else 0,
        "errors_bound_pct": errors_bound,
        "duration_s": doc["meta"].get("duration_s"),
        "checks": {c["expr"]: c for c in checks},  # (a dict: the CSV of the steps leaves it out)
    }
    if "llm" in s:
        out["ttft_p99_ms"] = s["llm"]["ttft_ms"]["p99"]
        out["tokens_per_s"] = s["llm"]["output_tokens_per_s"]
    scraped = target_means(doc)
    if scraped is not None:
        out["target_metrics"] = scraped
    return out


def target_means(doc: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A run's --scrape series as {series: {mean, max}} (each level is a run of its own, so a level keeps
    its own); None when nothing was scraped."""
    tm = doc.get("target_metrics")
    if not isinstance(tm, dict):
        return None
    series = tm.get("series") or {}
    return {name: {"mean": v.get("mean"), "max": v.get("max")} for name, v in series.items()}


def limited_why(doc: dict[str, Any]) -> list[str]:
    """Why squall itself was the limit of a run: the self-check's reasons (empty when it was not)."""
    if not doc.get("generator_limited"):
        return []
    return list((doc.get("self_check") or {}).get("reasons") or ())


KNEE_MIN = 0.1  # how far above the chord (in normalised units) a point must be to be a knee


def knee(steps: list[dict[str, Any]]) -> float | None:
    """The level where throughput stops growing in step with load: the point of the (level, rps) curve
    farthest above the chord between its ends, both axes normalised (the Kneedle idea). None while the
    curve is still about straight (no point a tenth of the range above the chord): no knee yet."""
    pts = sorted({s["level"]: s["rps"] for s in steps if not s["limited"] and not s["interrupted"]}.items())
    if len(pts) < 3:
        return None
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    span_x, span_y = (x1 - x0) or 1.0, (max(y for _, y in pts) - min(y for _, y in pts)) or 1.0
    best, best_d = pts[0][0], -1.0
    for x, y in pts:
        u, v = (x - x0) / span_x, (y - y0) / span_y
        chord = (y1 - y0) / span_y * u
        if v - chord > best_d:
            best, best_d = x, v - chord
    return best if best_d >= KNEE_MIN else None


class Hunter:
    """Runs the search; `run` executes one plan (the engine's, or a stand-in in tests)."""

    def __init__(
        self,
        base: Plan,
        spec: HuntSpec,
        run: Callable[[Plan], Result],
        on_step: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        spec.validate()
        if not base.thresholds:
            raise PlanError("a hunt needs at least one --slo, e.g. --slo 'p99<300ms'")
        self.base, self.spec, self.run_plan, self.on_step = base, spec, run, on_step
        self.steps: list[dict[str, Any]] = []
        self.results: dict[float, Result] = {}
        self.interrupt = ""  # set (to "interrupted" or "terminated") by a signal between levels
        self.runs = 0  # levels run so far (a level run again for longer counts twice)

    def _level(self, x: float) -> float:
        if self.spec.mode == "concurrency":
            return float(max(1, round(x)))
        return round(x, 3)

    def _plan(self, level: float, duration_s: float | None = None) -> Plan:
        """The base plan at `level` (for `duration_s`, else a step): users (Closed) or a rate (Open) over the
        base's connections."""
        base = self.base
        duration = duration_s if duration_s is not None else self.spec.step_s
        stop = replace(base.stop, duration_s=duration, warmup_s=self.spec.warmup_s, requests=None)
        load: Closed | Open
        if self.spec.mode == "concurrency":
            load = Closed(connections=int(level), think=base.load.think)
        elif base.load.think is not None:
            raise PlanError("--think paces users in the closed model; with a rate the schedule sets the pace")
        else:
            load = Open(rate=level, connections=base.load.connections)
        outputs = replace(base.outputs, out_path=None, quiet=True)
        if outputs.dashboard is not None:  # the same address and token for every level; the levels so far
            study = {"level": level, "runs": self.runs, "hunt": self.partial()}
            outputs = replace(outputs, dashboard=replace(outputs.dashboard, study=_json(study)))
        self.runs += 1
        return replace(base, load=load, stop=replace(stop, abort_on_fail=False), outputs=outputs).validate()

    def _judged(self, level: float, duration_s: float | None = None) -> tuple[dict[str, Any], Result]:
        res = self.run_plan(self._plan(level, duration_s))
        return step_summary(level, res, self.base.thresholds, self.spec.min_samples), res

    def _longer(self, step: dict[str, Any]) -> float | None:
        """How long to run a level again to judge it (at most `max_extend` steps), or None: no use."""
        spec = self.spec
        if step["verdict"] not in ("too_few", "undecided") or step["limited"] or step["interrupted"]:
            return None
        if step["lost"] or spec.max_extend <= 1:
            return None
        ran = step["duration_s"] or spec.step_s
        share = 1.0
        for c in step["checks"].values():
            if c["verdict"] == "too_few":
                share = max(share, c["need"] / c["n"] if c["n"] else math.inf)
            elif c["verdict"] == "undecided":  # the count whose 95 % interval at this rate misses the limit
                share = max(share, decisive(c, self._limit(c["expr"]), spec.max_extend * 1.25))
        return min(spec.max_extend * spec.step_s, max(ran * 1.5, ran * share * 1.2))

    def _limit(self, expr: str) -> float:
        return next(t.limit for t in self.base.thresholds if t.expr == expr)

    def _step(self, level: float) -> tuple[dict[str, Any], str]:
        """Run one level, again for longer when it had too few answers to judge: (its summary, why the hunt
        must stop before judging it, or "")."""
        if self.interrupt:  # a signal between two levels
            return {}, self.interrupt
        step, res = self._judged(level)
        step["extended"] = False
        longer = self._longer(step)
        if longer is not None and longer > (step["duration_s"] or 0) and not self.interrupt:
            step, res = self._judged(level, longer)
            step["extended"] = True
        self.steps.append(step)
        self.results[level] = res
        if self.on_step is not None:
            self.on_step(step)
        if step["interrupted"]:
            return step, str(res.doc["meta"]["stop_reason"])  # interrupted or terminated
        return step, "worker_lost" if step["lost"] else self.interrupt

    def hunt(self) -> dict[str, Any]:
        spec = self.spec
        good: dict[str, Any] | None = None
        bad: dict[str, Any] | None = None
        box_limited = False
        reason = ""
        level = self._level(spec.start)
        while True:  # grow
            step, cut = self._step(level)
            if cut:
                reason = cut
                break
            if step["limited"]:
                box_limited, reason = True, "generator"
                break
            if step["verdict"] == "fail":
                bad, reason = step, "slo"
                break
            if step["verdict"] != "ok":  # not judged (too few answers, or undecided): neither good nor bad
                pass
            elif good is not None and step["rps"] < good["rps"] * (1 + spec.plateau):
                bad, reason = step, "plateau"
                break
            else:
                good = step
            if level >= spec.max:
                reason = "max"
                break
            nxt = self._level(min(spec.max, level * spec.growth))
            level = nxt if nxt > level else level + 1
        while (
            good is not None and bad is not None and not box_limited and reason in ("slo", "plateau")
        ):  # bisect
            lo, hi = good["level"], bad["level"]
            if (hi - lo) / lo <= spec.resolution:
                break
            mid = self._level((lo + hi) / 2)
            if mid in (lo, hi):
                break
            step, cut = self._step(mid)
            if cut:
                reason = cut
                break
            if step["limited"]:
                box_limited = True
                break
            if step["verdict"] not in ("ok", "fail"):  # not judged: no side to bisect towards
                break
            # While bisecting, a level passes on its SLOs; throughput within the plateau share of the best
            # good level's counts as not rising.
            if step["ok"] and (reason != "plateau" or step["rps"] >= good["rps"] * (1 + spec.plateau / 2)):
                good = step
            else:
                bad = step
        return self._outcome(good, bad, box_limited, reason)

    def partial(self, reason: str = "running") -> dict[str, Any]:
        """The outcome of the levels run so far (written after every level, and when a hunt is cut)."""
        ok = [s for s in self.steps if s["ok"]]
        good = max(ok, key=lambda s: s["level"]) if ok else None
        judged = [
            s
            for s in self.steps
            if s["verdict"] == "fail"
            and not (s["limited"] or s["lost"] or s["interrupted"])
            and (good is None or s["level"] > good["level"])
        ]
        bad = min(judged, key=lambda s: s["level"]) if judged else None
        return self._outcome(good, bad, False, reason)

    def _outcome(
        self, good: dict[str, Any] | None, bad: dict[str, Any] | None, box_limited: bool, reason: str
    ) -> dict[str, Any]:
        spec = self.spec
        return {
            "mode": spec.mode,
            "slos": [t.expr for t in self.base.thresholds],
            "best": good["level"] if good else None,
            "best_rps": good["rps"] if good else None,
            "first_failing": bad["level"] if bad else None,
            "failed_slo": bad["failed_slo"] if bad else [],
            "stop_reason": "generator" if box_limited else reason,
            "box_limited": box_limited,
            "knee": knee(self.steps),
            "resolution": spec.resolution,
            "min_samples": spec.min_samples,
            "max_extend": spec.max_extend,
            "unjudged": sorted(
                s["level"]
                for s in self.steps
                if s["verdict"] in ("too_few", "undecided")
                and not (s["limited"] or s["lost"] or s["interrupted"])
            ),
            "steps": self.steps,
        }

    def document(self, hunt: dict[str, Any]) -> dict[str, Any]:
        """The result document: the best level's run (else the last one's), with `hunt` added."""
        level = hunt["best"] if hunt["best"] is not None else self.steps[-1]["level"]
        doc = dict(self.results[level].doc)
        doc["hunt"] = hunt
        return doc


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def exit_code(hunt: dict[str, Any]) -> int:
    """3 when a worker was lost; 130/143 when Ctrl-C/SIGTERM cut the hunt; 0 when a passing level was
    found; 3 when the generator gave out first; else 1 (nothing passed)."""
    if hunt["stop_reason"] == "worker_lost":
        return EXIT_INVALID
    if hunt["stop_reason"] in STOPPED_BY_SIGNAL:
        return STOPPED_BY_SIGNAL[hunt["stop_reason"]]
    if hunt["best"] is not None:
        return 0
    return EXIT_INVALID if hunt["box_limited"] else 1


def hunt_until_stopped(hunter: Hunter) -> dict[str, Any]:
    """Run the hunt; Ctrl-C/SIGTERM between levels end it like one during a level: the levels run are kept.

    A level the plan rules refuse raises PlanError naming it; a failed run raises the engine's RunError."""
    from squall.engine.supervisor import trap_stops

    def stop(reason: str) -> None:
        hunter.interrupt = reason

    try:
        with trap_stops(stop):
            return hunter.hunt()
    except KeyboardInterrupt:
        return hunter.partial("interrupted")
    except PlanError as e:  # too many connections, a rate too low...
        raise PlanError(f"hunt stopped at a level it cannot run: {e}") from None
