"""--dashboard: the live page and its JSON API, served by the collector on a thread while the run goes on.

Everything here runs on the collector's thread: each second (and whenever the phase changes) it publishes
a status, the series so far and, while a page is watching, the report's page data built from the result so
far; it applies the page's commands (stop, a change of users or rate) between two turns of its loop. The
server (dashboard_server.py) only hands out what was published.
"""

from __future__ import annotations

import errno
import queue
import secrets
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from time import monotonic
from typing import Any

import orjson

from squall.collector.dashboard_server import Board, DashboardServer, Refused
from squall.collector.sinks import Sink, Totals
from squall.hist import percentiles_ms
from squall.plan.load import check_steer
from squall.plan.plan import Dashboard, Plan
from squall.units import PlanError

STATUS_EVERY_S = 1.0  # a status at least this often, even with no new second (warmup, a stall)
PAGE_EVERY_S = 1.0  # the page data is built at most this often ...
PAGE_EVERY_LONG_S = 5.0  # ... and past LONG_RUN_S of measured time at most this often
LONG_RUN_S = 600.0
PAGE_COST_SHARE = 20  # and never more than 1/20 of the collector's time (its cost x this, at least)
REBIND_S = 5.0  # how long a hunt's later level waits for its port (the last level's collector ends)
WATCHED_S = 5.0  # the page data is built only while a page watches, or it was asked for this recently
SOAK_EVERY_S = 5.0  # a soak's slope so far is worked out this often (and at most 1/20 of the time)
SOAK_KEYS = ("rss_slope_mb_per_h", "rss_slope_ci_mb_per_h", "leak_suspected", "fd_growth")
DELIVER_S = 1.0  # at the end, how long the open event streams get to send the last status


class DashboardSink(Sink):
    """Serves GET / (the page), /api/status, /api/series, /api/events (SSE) and POST /api/stop, /api/load."""

    def __init__(self, plan: Plan, board: Board) -> None:
        self.plan = plan
        self.board = board
        self.server: DashboardServer | None = None
        self.study: dict[str, Any] = orjson.loads(plan.outputs.dashboard.study or "{}")  # type: ignore[union-attr]
        self.run_id = secrets.token_hex(4)  # tells the page a hunt's next level from this one
        self.html: bytes | None = None
        self.html_lock = threading.Lock()
        self.fresh = True  # a second (or a change) not yet in the published status
        self.seconds_paged = -1  # the seconds in the page data last built
        self.changes_paged = -1
        self.page_version = 0
        self.page_due = 0.0
        self.last_status = -1e9
        self.last_phase = ""
        self.stop_sent = False
        self.ended = False
        self.soak: dict[str, Any] | None = None  # the soak's verdict so far (a soak only)
        self.soak_due = 0.0

    @classmethod
    def for_plan(cls, plan: Plan, totals: Totals) -> DashboardSink | None:
        """With --dashboard; None (and a warning in the result) when its address cannot be listened on."""
        dash = plan.outputs.dashboard
        if dash is None:
            return None
        sink = cls(plan, Board())
        try:
            sink.server = sink._bind(dash)
        except OSError as e:
            totals.warn(
                f"--dashboard: cannot listen on {dash.host}:{dash.port}: {e.strerror or e}; "
                "the run went on without the dashboard"
            )
            return None
        sink.board.publish(sink._status(totals, "warmup"))
        if not sink.study.get("runs"):  # (a hunt prints it for its first level only)
            # sys.stderr as it is now: the live view's console, while it shows, prints it above its line.
            print(
                f"dashboard: {_printed_url(replace(dash, port=sink.server.port))}",
                file=sys.stderr,
                flush=True,
            )
        return sink

    # -- the server's threads ------------------------------------------------------------------------

    def page_html(self) -> bytes:
        """The live page, built once (plotly inlined: about 1.2 MB) on its first request."""
        with self.html_lock:
            if self.html is None:
                from squall.report.html import live_page

                self.html = live_page().encode()
            return self.html

    def check_load(self, body: dict[str, Any]) -> dict[str, Any]:
        """A POST /api/load body checked against the plan: {"users": N} or {"rate": R}; raises PlanError."""
        if self.study:
            raise Refused(409, "a hunt sets its own load: it cannot be changed from the dashboard")
        unknown = sorted(set(body) - {"users", "rate"})
        if unknown:
            raise PlanError(f'unknown field {unknown[0]!r}: send {{"users": N}} or {{"rate": R}}')
        users, rate = body.get("users"), body.get("rate")
        # (the values shown as they were sent: JSON, not Python's repr)
        if isinstance(users, bool) or (users is not None and not isinstance(users, int)):
            raise PlanError(f"users {_shown(users)}: users must be a whole number (e.g. 64)")
        if isinstance(rate, bool) or (rate is not None and not isinstance(rate, (int, float))):
            raise PlanError(f"rate {_shown(rate)}: rate must be a number of requests/s (e.g. 200)")
        check_steer(self.plan.load, users, rate)
        return {"users": users} if users is not None else {"rate": float(rate)}  # type: ignore[arg-type]

    # -- the collector's thread ----------------------------------------------------------------------

    def _bind(self, dash: Dashboard) -> DashboardServer:
        """The server on the dashboard's address; a hunt's later level waits up to REBIND_S for the port its
        last level's collector is still letting go."""
        patience = monotonic() + (REBIND_S if self.study.get("runs") else 0.0)
        while True:
            try:
                return DashboardServer(
                    dash.host, dash.port, dash.token, self.board, self.page_html, self.check_load
                )
            except OSError as e:
                if e.errno != errno.EADDRINUSE or monotonic() >= patience:
                    raise
                time.sleep(0.05)

    def on_second(self, entry: dict[str, Any], totals: Totals) -> None:
        self.fresh = True

    def on_tick(self, totals: Totals, final: bool) -> None:
        answers = self._commands(totals)
        if not final:  # (the last status goes out with the result: on_final)
            self._publish(totals)
        # Answered once the status shows what they did: a script that reads it next sees the change.
        for reply, outcome in answers:
            if isinstance(outcome, Exception):
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)

    def _publish(self, totals: Totals) -> None:
        """The status, when there is a new second, a change, a new phase, or a second has gone by; the
        page data along with a new second, when a page watches and it is due."""
        now = monotonic()
        phase = self._phase(totals)
        if not (self.fresh or phase != self.last_phase or now - self.last_status >= STATUS_EVERY_S):
            return
        page = self._page(totals, now) if self.fresh else None
        series = totals.series if self.fresh else None
        self.fresh, self.last_phase, self.last_status = False, phase, now
        self._soak(totals, now)
        self.board.publish(self._status(totals, phase), page, series)

    def on_final(self, doc: dict[str, Any]) -> None:
        from squall.report.html import page_data

        self.ended = True
        try:
            data = self._page_data(doc, page_data)
        except Exception as e:  # (the page is a view: the result must reach the supervisor regardless)
            data = {"pending": True, "error": str(e)}
        self.page_version += 1
        data["version"] = self.page_version
        status = self._final_status(doc, data)
        self.board.publish(status, orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), doc.get("timeseries"))
        self.board.close()
        self.board.wait_delivered(DELIVER_S)
        if self.server is not None:
            self.server.close()

    def _commands(self, totals: Totals) -> list[tuple[Future[dict[str, Any]], Any]]:
        """Apply what the page asked for since the last turn (stop, a change of load): each with its answer
        (or the exception to answer with)."""
        out: list[tuple[Future[dict[str, Any]], Any]] = []
        for _ in range(64):  # (bounded: the rest waits for the next turn)
            try:
                kind, args, reply = self.board.commands.get_nowait()
            except queue.Empty:
                break
            if not reply.set_running_or_notify_cancel():
                continue  # its asker gave up
            try:
                out.append((reply, self._stop(totals) if kind == "stop" else self._steer(totals, args)))
            except (Refused, PlanError) as e:
                out.append((reply, e))
        return out

    def _stop(self, totals: Totals) -> dict[str, Any]:
        if self.ended or totals.closing:
            raise Refused(409, "the run has ended")
        if not self.stop_sent:
            if not totals.stop_run("interrupted", by="dashboard"):
                raise Refused(409, "the run cannot be stopped from here: its main process is gone")
            self.stop_sent = True
            self.fresh = True
        return {"stopping": True, "reason": "interrupted"}

    def _steer(self, totals: Totals, args: dict[str, Any]) -> dict[str, Any]:
        phase = self._phase(totals)
        if phase == "warmup" and totals.t0 is None:
            raise Refused(409, "the run has not started yet: try again in a moment")
        if phase == "warmup":
            raise Refused(409, "the run is warming up: its load can be changed once the warmup is over")
        if phase != "running":
            raise Refused(409, f"the run is {phase}: its load cannot be changed now")
        change = totals.steer(by="dashboard", **args)
        self.fresh = True
        return {"change": change}

    def _phase(self, totals: Totals) -> str:
        if self.ended:
            return "done"
        elapsed, stop = totals.elapsed_s(), self.plan.stop
        if totals.closing or self.stop_sent or totals.stop_asked is not None:
            return "stopping"
        if stop.duration_s is not None and elapsed > stop.duration_s:
            return "stopping"  # (draining: what was sent in time completes)
        return "warmup" if totals.t0 is None or elapsed < 0 else "running"

    def _soak(self, totals: Totals, now: float) -> None:
        """A soak's slope so far, for the status: on its own cadence, whether or not a page watches."""
        spec = self.plan.soak
        if spec is None or now < self.soak_due or totals.t0 is None:
            return
        from squall.collector.leaks import verdicts

        got = verdicts(totals.series, spec, in_process=self.plan.py is not None)
        self.soak = {k: got.get(k) for k in SOAK_KEYS}
        self.soak_due = now + max(SOAK_EVERY_S, PAGE_COST_SHARE * (monotonic() - now))

    def _load_now(self, totals: Totals, elapsed: float) -> dict[str, Any]:
        """The users (closed model) or rate (open model) asked for now, after the changes so far."""
        plan, load = self.plan, self.plan.load
        kind, base = ("rate", load.rate) if plan.open_model else ("users", load.connections)
        shape = totals.shape  # (the collector's: steered at the changes' exact times)
        value = base if shape is None else shape.value_at(plan.stop.warmup_s + elapsed)
        if kind == "users":
            return {"users": round(value or 0), "rate": None}
        return {"users": None, "rate": None if value is None else round(value, 3)}

    def _status(self, totals: Totals, phase: str) -> bytes:
        plan, agg = self.plan, totals.agg
        elapsed = max(totals.elapsed_s(), 0.0)
        c = agg.counters
        figures: dict[str, Any] = {
            "requests": c.get("requests", 0),
            "ok": c.get("ok", 0),
            "errors": c.get("errors", 0),
            "rps": round(c.get("requests", 0) / elapsed, 3) if elapsed > 0 else 0.0,
        }
        for name, prefix in (("latency", ""), ("ttft", "ttft_")):
            if name in agg.hists or not prefix:
                got = percentiles_ms(agg.hists[name]) if name in agg.hists else {50.0: None, 99.0: None}
                figures[f"{prefix}p50"], figures[f"{prefix}p99"] = got[50.0], got[99.0]
        out: dict[str, Any] = {
            "run": self.run_id,
            "elapsed": round(elapsed, 3),
            "phase": phase,
            "model": "open" if plan.open_model else "closed",
            **self._load_now(totals, elapsed),
            "duration": plan.stop.duration_s,
            "warmup": plan.stop.warmup_s,
            "requests_asked": plan.stop.requests,
            "totals": figures,
            "last": _brief(totals.series[-1]) if totals.series else None,
            "seconds": len(totals.series),
            "changes": [dict(ch) for ch in totals.changes],
            "steerable": not self.study,
            "page": self.page_version,
        }
        if self.study:
            out["hunt"] = self._hunt_status()
        if self.soak is not None:
            out["soak"] = self.soak
        return orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)

    def _final_status(self, doc: dict[str, Any], data: dict[str, Any]) -> bytes:
        s = doc.get("summary") or {}
        lat = s.get("latency_ms") or {}
        series = doc.get("timeseries") or []
        figures = {k: s.get(k) for k in ("requests", "ok", "errors", "rps")}
        figures.update(p50=lat.get("p50"), p99=lat.get("p99"))
        ttft = (s.get("llm") or {}).get("ttft_ms")
        if ttft:
            figures.update(ttft_p50=ttft.get("p50"), ttft_p99=ttft.get("p99"))
        meta = doc.get("meta") or {}
        out: dict[str, Any] = {
            "run": self.run_id,
            "elapsed": s.get("duration_s"),
            "phase": "done",
            "stop_reason": meta.get("stop_reason"),
            "valid": doc.get("valid"),
            "model": "open" if self.plan.open_model else "closed",
            "users": None,
            "rate": None,
            "duration": self.plan.stop.duration_s,
            "warmup": self.plan.stop.warmup_s,
            "requests_asked": self.plan.stop.requests,
            "totals": figures,
            "last": _brief(series[-1]) if series else None,
            "seconds": len(series),
            "changes": meta.get("changes") or [],
            "steerable": False,
            "page": self.page_version,
            "page_data": data,  # (the run's last page, sent along: the server is about to go)
        }
        if doc.get("soak"):
            out["soak"] = {k: doc["soak"].get(k) for k in SOAK_KEYS}
        if self.study:
            out["hunt"] = self._hunt_status()
        return orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)

    def _hunt_status(self) -> dict[str, Any]:
        hunt = self.study.get("hunt") or {}
        keys = ("level", "rps", "p99_ms", "verdict", "ok")
        return {
            "mode": hunt.get("mode"),
            "level": self.study.get("level"),
            "levels": [{k: s.get(k) for k in keys} for s in hunt.get("steps") or []],
        }

    def _page(self, totals: Totals, now: float) -> bytes | None:
        """The page data on the result so far, when a page watches and there is something new to show."""
        board = self.board
        watched = board.streams > 0 or now - board.page_asked < WATCHED_S
        new = len(totals.series) != self.seconds_paged or len(totals.changes) != self.changes_paged
        if not (watched and new and now >= self.page_due) or totals.t0 is None:
            return None
        from squall.report.html import page_data

        data = self._page_data(totals.document(), page_data)
        cost = monotonic() - now
        every = PAGE_EVERY_LONG_S if totals.elapsed_s() > LONG_RUN_S else PAGE_EVERY_S
        # (due a little early: the next second, which comes about `every` from now, brings the next page)
        self.page_due = now + max(0.8 * every, PAGE_COST_SHARE * cost)
        self.seconds_paged, self.changes_paged = len(totals.series), len(totals.changes)
        self.page_version += 1
        data["version"] = self.page_version
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)

    def _page_data(self, doc: dict[str, Any], page_data: Any) -> dict[str, Any]:
        """The report's page data for `doc`; a hunt's finished levels shown above the level that runs."""
        hunt = self.study.get("hunt")
        if hunt and hunt.get("steps"):
            doc = {**doc, "hunt": hunt}
        data: dict[str, Any] = page_data(doc)
        if self.study:
            level = self.study.get("level")
            data["subtitle"] = f"hunt, level {level:g} · {data['subtitle']}"
        data["run"] = self.run_id
        return data


def _printed_url(dash: Dashboard) -> str:
    """The page's address as printed: one a browser can open (a wildcard address is not), with its token."""
    if dash.host not in ("0.0.0.0", "::"):
        return dash.url()
    name = socket.gethostname() or "this box's name"
    return f"{replace(dash, host='127.0.0.1').url()} (listening on all addresses: from elsewhere use {name})"


def _shown(value: Any) -> str:
    """A value from a request's body as JSON text, cut short."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:40] + "..."


def _brief(entry: dict[str, Any]) -> dict[str, Any]:
    """A series entry without its encoded histograms (the status is read once a second)."""
    return {k: v for k, v in entry.items() if not k.endswith("_hist")}
