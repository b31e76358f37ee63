"""The tables of the studies and comparisons: hunt levels, --param matrix cells, compare rows."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def fmt_ms(v: float | None) -> str:
    """A duration in ms as the tables show it: 1.23ms, or 1.23s from a second up; "—" for no data."""
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    return f"{v:.2f}ms"


def step_verdict(st: dict[str, Any], short: bool = False) -> str:
    """A hunt level's verdict in words: ok, FAIL and the SLOs, too few samples or undecided (not judged),
    or why it was not judged at all."""
    if st.get("interrupted"):
        return "interrupted (not judged)"
    if st.get("lost"):
        return "a worker was lost (not judged)"
    if st["limited"]:
        if short:
            return "generator limit"
        why = "; ".join(st.get("limited_why", ()))
        return "generator was the limit" + (f": {why.removeprefix('generator-limited: ')}" if why else "")
    verdict = st.get("verdict", "ok" if st["ok"] else "fail")
    if verdict == "fail":
        return "FAIL " + ", ".join(st["failed_slo"])
    if verdict == "too_few":
        return f"too few samples (n={st['samples']:,}, need {st['samples_needed']:,}): not judged"
    if verdict == "undecided":
        open_ = [c for c in (st.get("checks") or {}).values() if c["verdict"] == "undecided"]
        said = ", ".join(
            f"{c['expr']} (95% CI {c['bound'][0]:.2f}-{c['bound'][1]:.2f}%)" if "bound" in c else c["expr"]
            for c in open_
        )
        return f"undecided: {said}: not judged"
    return "ok"


_HUNT_STOPS = {
    "slo": "stopped: a level failed an SLO",
    "plateau": "stopped: throughput stopped rising",
    "max": "stopped: it reached --max",
    "generator": "stopped: squall itself was the limit at the last level; the box ran out, not the target "
    "(add workers or machines)",
    "interrupted": "stopped early by Ctrl-C: the levels above were not searched",
    "terminated": "stopped early by SIGTERM: the levels above were not searched",
    "worker_lost": "stopped: a worker process was lost at the last level; the run is not valid",
    "running": "not stopped: it was still running when this was written",
}
_HUNT_CUT = ("generator", "interrupted", "terminated", "worker_lost")  # (the console marks these in yellow)


def hunt_stopped(hunt: dict[str, Any]) -> str:
    """Why the hunt stopped, in the words the console and the HTML report both use."""
    reason = str(hunt.get("stop_reason") or "")
    return _HUNT_STOPS.get(reason, f"stopped: {reason or '—'}")


def level_text(level: float, mode: str) -> str:
    """`16 users`, `1 user` or `250 req/s`: a hunt level with its unit."""
    if mode != "concurrency":
        return f"{level:g} req/s"
    return f"{level:g} user" + ("" if level == 1 else "s")


def hunt_found(hunt: dict[str, Any]) -> tuple[str, str, list[str]]:
    """What the hunt found, as the console and the HTML both say it: the headline, its kind (ok, bad,
    unjudged, cut) and the lines under it (first failing level, knee, levels not judged)."""
    mode = str(hunt.get("mode"))
    best, first = hunt.get("best"), hunt.get("first_failing")
    if best is not None:
        rps = hunt.get("best_rps")
        said = f" ({rps:,.1f} req/s)" if isinstance(rps, (int, float)) else ""
        headline, kind = f"best: {level_text(best, mode)}{said} meets every SLO", "ok"
    elif hunt.get("stop_reason") in ("interrupted", "terminated", "worker_lost"):
        headline, kind = "no level passed before the hunt was cut short", "cut"
    elif first is None and hunt.get("unjudged"):
        headline, kind = "no level could be judged (see below)", "unjudged"
    else:
        headline, kind = "no level met the SLOs", "bad"
    lines = []
    if first is not None:
        if hunt.get("failed_slo"):
            lines.append(f"first failing: {level_text(first, mode)} ({', '.join(hunt['failed_slo'])})")
        else:  # it met the SLOs, but more load gave no more throughput
            lines.append(
                f"throughput stopped rising at {level_text(first, mode)} (it met the SLOs, with no gain)"
            )
    if hunt.get("knee") is not None:
        lines.append(f"knee of the throughput curve: {level_text(hunt['knee'], mode)}")
    if hunt.get("unjudged"):
        levels = ", ".join(f"{x:g}" for x in hunt["unjudged"])
        unit = "users" if mode == "concurrency" else "req/s"
        lines.append(
            "not judged (too few answers, or an error rate whose 95% interval straddles its limit): "
            f"{levels} {unit}; counted neither as passing nor as failing. To judge them: a longer "
            "--step-duration or --max-extend, a higher --start, or a looser percentile"
        )
    return headline, kind, lines


def print_hunt(hunt: dict[str, Any], console: Console | None = None) -> None:
    """The hunt's steps as a table (by level), then what it found."""
    console = console or Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    llm = any("ttft_p99_ms" in st for st in hunt["steps"])
    cols = (
        "level",
        "samples",
        "req/s",
        "p50",
        "p99",
        *(("TTFT p99", "tok/s") if llm else ()),
        "errors",
        "squall CPU",
        "verdict",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for st in sorted(hunt["steps"], key=lambda s: s["level"]):
        cpu = "" if st["generator_cpu_pct"] is None else f"{st['generator_cpu_pct']:.0f}%"
        bound = st.get("errors_bound_pct")
        errors = f"{100 * st['error_rate']:.2f}%" + (
            f" (≤{bound[1]:.2f}%)" if bound is not None and st["errors"] else ""
        )
        table.add_row(
            f"{st['level']:g}",
            f"{st['requests']:,}" + ("+" if st.get("extended") else ""),
            f"{st['rps']:,.1f}",
            fmt_ms(st["p50_ms"]),
            fmt_ms(st["p99_ms"]),
            *((fmt_ms(st.get("ttft_p99_ms", 0.0)), f"{st.get('tokens_per_s', 0.0):,.0f}") if llm else ()),
            errors,
            cpu,
            step_verdict(st),
        )
    console.print(f"[bold]squall hunt[/bold] ({hunt['mode']}; SLOs: {', '.join(hunt['slos'])})")
    console.print(table)
    headline, kind, lines = hunt_found(hunt)
    style = {"ok": "", "bad": "red", "unjudged": "yellow", "cut": ""}[kind]
    console.print(f"  [{style}]{headline}[/{style}]" if style else f"  {headline}")
    for line in lines:
        console.print(f"  [yellow]{line}[/yellow]" if line.startswith("not judged") else f"  {line}")
    if any(st.get("extended") for st in hunt["steps"]):
        console.print("  samples marked + come from a level run again for longer to have enough to judge")
    said = hunt_stopped(hunt)
    console.print(f"  [yellow]{said}[/yellow]" if hunt["stop_reason"] in _HUNT_CUT else f"  {said}")


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.3f}"


def print_compare(out: dict[str, Any], baseline: str, current: str, console: Console | None = None) -> None:
    """The comparison as a table, regressions marked."""
    console = console or Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    for col in ("metric", "baseline", "current", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for r in out["rows"]:
        change = "" if r["change_pct"] is None else f"{r['change_pct']:+.1f}%"
        verdict = r["verdict"]
        if r["regression"]:
            verdict = "[red]REGRESSION[/red]"
        elif verdict == "better":
            verdict = "[green]better[/green]"
        elif verdict in ("too few samples", "inconclusive", "not judged"):
            verdict = f"[yellow]{verdict}[/yellow]: {r.get('noise', '')}"
        table.add_row(r["metric"], _num(r["baseline"]), _num(r["current"]), change, verdict)
    console.print(f"[bold]squall compare[/bold] {baseline} -> {current}")
    console.print(table)
    for w in out.get("warnings", ()):
        console.print(f"  [yellow]warning:[/yellow] {w}", soft_wrap=True)
    for which, names in (out.get("keys_only") or {}).items():
        if names:
            console.print(f"  keys only in the {which} (not compared): {', '.join(names)}", soft_wrap=True)
    if out["regression"]:
        console.print(f"  [red]regression[/red] beyond {out['max_regression_pct']:g}%")
    else:
        console.print(f"  no regression beyond {out['max_regression_pct']:g}%")


def print_matrix(doc: dict[str, Any], console: Console | None = None) -> None:
    """A --param matrix: one row per cell, with each phase's p50 and p99, and whether it held."""
    if console is None:
        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal:  # a file or a pipe: no width to fit, so do not squeeze the table
            console = Console(highlight=False, soft_wrap=True, width=200)
    cells = doc["cells"]
    names = list(cells[0]["params"]) if cells else []
    phases = sorted({p for c in cells for p in c["summary"].get("phases", {})})
    table = Table(box=None, pad_edge=False)
    cols = [
        *names,
        "iterations",
        "it/s",
        "p50",
        "p99",
        "errors",
        *(f"{p} p50/p99" for p in phases),
        "verdict",
    ]
    for col in cols:
        table.add_column(col, justify="left" if col == "verdict" else "right", no_wrap=True)
    for c in cells:
        s = c["summary"]
        lat = s["latency_ms"]
        row = [str(c["params"][n]) for n in names]
        row += [
            f"{s['requests']:,}",
            f"{s['rps']:,.1f}",
            fmt_ms(lat["p50"]),
            fmt_ms(lat["p99"]),
            f"{s['errors']:,}",
        ]
        for p in phases:
            ph = s.get("phases", {}).get(p)
            row.append(f"{fmt_ms(ph['latency_ms']['p50'])} / {fmt_ms(ph['latency_ms']['p99'])}" if ph else "")
        failed = [t["expr"] for t in c.get("thresholds", []) if not t["ok"]]
        verdict = "not valid (see warnings)" if not c.get("valid", True) else "ok"
        if c.get("stop_reason") in ("interrupted", "terminated"):
            verdict = f"{c['stop_reason']} (cut short)"
        if failed:
            verdict = (
                "FAIL " + ", ".join(failed)
                if c.get("valid", True)
                else verdict + "; FAIL " + ", ".join(failed)
            )
        row.append(verdict)
        table.add_row(*row)
    console.print("[bold]squall py matrix[/bold]")
    console.print(table)
    skipped = doc.get("skipped", [])
    if skipped:
        console.print(f"  [yellow]stopped early: {len(skipped)} cell(s) not run[/yellow]")
