"""The terminal: a live line per second on stderr, and the final summary in the spirit of wrk and oha."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from squall.collector.aggregate import Aggregate
    from squall.plan import Plan


class LiveView:
    """Progress once per second: elapsed/total, req/s, p50/p99, errors, in-flight, worker CPU."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.console = Console(file=sys.stderr, highlight=False)
        self.live: Live | None = None
        if self.console.is_terminal:
            self.live = Live(Text("starting…"), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def update(self, entry: dict[str, Any], agg: Aggregate, elapsed_s: float) -> None:
        plan = self.plan
        total = f"/{plan.duration_s:g}s" if plan.duration_s else ""
        done = f" {agg.counters['requests']}/{plan.requests}" if plan.requests else ""
        cpu = entry.get("worker_cpu") or {}
        cpus = " ".join(f"{v:.0f}%" for v in cpu.values() if v is not None)
        tokens = ""
        if "output_tokens_per_s" in entry:
            tokens = f"  {entry['output_tokens_per_s']:,.0f} tok/s  ttft p50 {entry['ttft_p50']:.1f} ms"
        line = (
            f"[{elapsed_s:6.1f}s{total}]{done} {entry['rps']:>10,.0f} req/s{tokens}  "
            f"p50 {entry['p50']:.2f} ms  p99 {entry['p99']:.2f} ms  errors {entry['errors']}  "
            f"in-flight {entry['inflight']}  cpu {cpus}"
        )
        if self.live is not None:
            self.live.update(Text(line))
        else:
            self.console.print(line, soft_wrap=True)

    def warn(self, text: str) -> None:
        self.console.print(f"warning: {text}", style="yellow", soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    return f"{v:.2f}ms"


def print_summary(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print the final summary of a result document."""
    if console is None:
        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal:  # a file or a pipe: no width to fit, so do not squeeze the table
            console = Console(highlight=False, soft_wrap=True, width=120)
    s, m = doc["summary"], doc["meta"]
    model = f"open, {m['rate']:g} req/s {m['arrival']}" if m["model"] == "open" else "closed"
    console.print(
        f"[bold]squall[/bold] {m['method']} {m['url']}  ({m['transport']}, {m['workers']} workers, "
        f"{m['connections']} connections, {model})"
    )
    ok_pct = 100.0 * s["ok"] / s["requests"] if s["requests"] else 0.0
    console.print(
        f"  {s['requests']:,} requests in {s['duration_s']:.2f}s, {s['rps']:,.1f} req/s, "
        f"{ok_pct:.2f}% ok, {s['errors']:,} errors, {s['bytes_in']:,} bytes in"
    )
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    keys = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
    for k in keys:
        table.add_column(k, justify="right", no_wrap=True, min_width=8)
    for name in ("latency_ms", "service_ms", "ttfb_ms", "schedule_lag_ms"):
        if name in s:
            table.add_row(name[:-3], *(_fmt_ms(s[name][k]) for k in keys))
    llm = s.get("llm")
    if llm:
        for name in ("ttft_ms", "ttft_from_intended_ms", "itl_ms", "tpot_ms", "e2e_ms"):
            if name in llm:
                table.add_row(name[:-3], *(_fmt_ms(llm[name][k]) for k in keys))
    console.print(table)
    if llm:
        console.print(
            f"  tokens: {llm['output_tokens']:,} out ({llm['output_tokens_per_s']:,.1f}/s, from "
            f"{llm['token_source']}), {llm['input_tokens']:,} in; goodput {llm['goodput_rps']:,.2f} req/s"
            + (f"; {llm['bad_chunks']:,} unparseable events" if llm["bad_chunks"] else "")
        )
    if s["status_codes"]:
        console.print("  status codes: " + ", ".join(f"{k}: {v:,}" for k, v in s["status_codes"].items()))
    if s["error_kinds"]:
        console.print("  errors: " + ", ".join(f"{k}: {v:,}" for k, v in s["error_kinds"].items()))
    for t in doc.get("thresholds", ()):
        mark = "[green]pass[/green]" if t["ok"] else "[red]FAIL[/red]"
        value = "missing" if t["value"] is None else f"{t['value']:,.3f}"
        console.print(f"  threshold {mark}  {t['expr']}  (value {value})", soft_wrap=True)
    for w in doc["warnings"]:
        console.print(f"  [yellow]warning:[/yellow] {w}", soft_wrap=True)
    if not doc["valid"]:
        console.print("  [red]result not valid[/red] (see warnings)")
