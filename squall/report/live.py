"""The live line: progress once per second on stderr while a run goes on."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from squall.redact import redact_text

if TYPE_CHECKING:
    from squall.collector.aggregate import Aggregate
    from squall.plan.plan import Plan


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
        """Show one measured second (its series entry) with the run's totals so far."""
        if entry.get("partial"):
            return  # a sliver of a second (the drain at the end): its rate would read as a spike
        plan = self.plan
        total = f"/{plan.stop.duration_s:g}s" if plan.stop.duration_s else ""
        if plan.stop.duration_s and elapsed_s > plan.stop.duration_s + 0.5:
            total += " draining"  # past --duration: only requests sent in time are still completing
        done = f" {agg.counters['requests']}/{plan.stop.requests}" if plan.stop.requests else ""
        cpu = entry.get("worker_cpu") or {}
        cpus = " ".join(f"{v:.0f}%" for v in cpu.values() if v is not None) or "-"
        tokens = ""
        if "output_tokens_per_s" in entry:
            tokens = f"  {entry['output_tokens_per_s']:,.0f} tok/s  ttft p50 {_ms(entry.get('ttft_p50'), 1)}"
        line = (
            f"[{elapsed_s:6.1f}s{total}]{done} {entry['rps']:>10,.0f} req/s{tokens}  "
            f"p50 {_ms(entry.get('p50'))}  p99 {_ms(entry.get('p99'))}  errors {entry['errors']}  "
            f"in-flight {entry['inflight']}  cpu {cpus}"
        )
        if self.live is not None:
            self.live.update(Text(line))
        else:
            self.console.print(line, soft_wrap=True)

    def warn(self, text: str) -> None:
        """Print a warning above the live line."""
        self.console.print(f"warning: {redact_text(text)}", style="yellow", soft_wrap=True)

    def note(self, text: str) -> None:
        """Print a line above the live line."""
        self.console.print(redact_text(text), soft_wrap=True)

    def close(self) -> None:
        """Take the live line away (the run has ended)."""
        if self.live is not None:
            self.live.stop()


def _ms(value: float | None, places: int = 2) -> str:
    """`12.34 ms`, or "—" for a second in which nothing was answered."""
    return "—" if value is None else f"{value:.{places}f} ms"
