"""The final summary of a run on the terminal, in the spirit of wrk and oha."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from squall.report.invalid import why_not_valid
from squall.report.tables import fmt_ms


def _print_soak(console: Console, soak: dict[str, Any]) -> None:
    """Soak verdicts: leak, drift, FD growth."""
    if soak.get("rss_slope_mb_per_h") is None:
        console.print(f"  soak: {soak.get('note', 'no target samples')}")
    else:
        lo, hi = soak["rss_slope_ci_mb_per_h"]
        subject = "the workload's (squall workers')" if soak.get("subject") == "workers" else "target"
        verdict = "[red]LEAK SUSPECTED[/red]" if soak["leak_suspected"] else "[green]no leak[/green]"
        console.print(
            f"  soak: {verdict}: {subject} RSS {soak['rss_slope_mb_per_h']:+,.2f} MB/h "
            f"(95 % CI {lo:+,.2f} to {hi:+,.2f}; threshold {soak['leak_threshold_mb_per_h']:g} MB/h), "
            f"FD growth {'—' if soak.get('fd_growth') is None else soak['fd_growth']}"
        )
    d = soak.get("latency_drift")
    if d:
        e = soak["error_drift"]
        console.print(
            f"  drift (first vs last {d['stretch_s']} s): p50 {fmt_ms(d['p50_first_ms'])} -> "
            f"{fmt_ms(d['p50_last_ms'])}, p99 {fmt_ms(d['p99_first_ms'])} -> {fmt_ms(d['p99_last_ms'])}, "
            f"errors {e['first_pct']:.2f}% -> {e['last_pct']:.2f}%"
        )
    own = own_rss_text(soak)
    if own:
        console.print(f"  {own}")


def own_rss_text(soak: dict[str, Any]) -> str | None:
    """A soak's line on squall's own RSS once settled (console and HTML alike); None when it has none."""
    if soak.get("generator_rss_slope_mb_per_h") is not None:
        lo, hi = soak["generator_rss_slope_ci_mb_per_h"]
        return (
            f"squall's own RSS: {soak['generator_rss_slope_mb_per_h']:+,.2f} MB/h (95 % CI {lo:+,.2f} to "
            f"{hi:+,.2f}) from {soak['generator_rss_from_s']:g} s on, once settled"
        )
    if soak.get("generator_rss_growth_mb") is not None:
        span = f"from {soak['generator_rss_from_s']:g} s to {soak['generator_rss_to_s']:g} s"
        return (
            f"squall's own RSS: {soak['generator_rss_growth_mb']:+,.2f} MB {span}, once settled "
            "(too short a stretch for a per-hour slope)"
        )
    if soak.get("generator_rss_note"):
        return f"squall's own RSS: {soak['generator_rss_note']}"
    return None


def _print_steps(console: Console, s: dict[str, Any]) -> None:
    """Scenario runs: one row per journey, then one per step."""
    journeys = Table(box=None, pad_edge=False)
    for col in ("journey", "weight", "iterations", "completed", "failed", "p50", "p99", "failed at"):
        journeys.add_column(col, justify="left" if col in ("journey", "failed at") else "right")
    for name, j in s["scenarios"].items():
        at = ", ".join(f"{k}: {v:,}" for k, v in j["failed_at"].items())
        d = j["duration_ms"]
        row = (f"{j['weight']:g}", f"{j['iterations']:,}", f"{j['completed']:,}", f"{j['failed']:,}")
        journeys.add_row(name, *row, fmt_ms(d["p50"]), fmt_ms(d["p99"]), at)
    console.print(journeys)
    steps = Table(box=None, pad_edge=False)
    cols = ("step", "requests", "ok", "errors", "req/s", "p50", "p90", "p99", "ttft p50", "errors by kind")
    for col in cols:
        steps.add_column(col, justify="left" if col in ("step", "errors by kind") else "right")
    for name, st in s["steps"].items():
        lat = st["latency_ms"]
        ttft = fmt_ms(st["llm"]["ttft_ms"]["p50"]) if "llm" in st else ""
        kinds = ", ".join(f"{k}: {v:,}" for k, v in st["error_kinds"].items())
        counts = (f"{st['requests']:,}", f"{st['ok']:,}", f"{st['errors']:,}", f"{st['rps']:,.1f}")
        times = (fmt_ms(lat["p50"]), fmt_ms(lat["p90"]), fmt_ms(lat["p99"]), ttft)
        steps.add_row(name, *counts, *times, kinds)
    console.print(steps)


def print_summary(doc: dict[str, Any], console: Console | None = None) -> None:
    """Print the final summary of a result document."""
    if console is None:
        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal:  # a file or a pipe: no width to fit, so do not squeeze the table
            console = Console(highlight=False, soft_wrap=True, width=120)
    s, m = doc["summary"], doc["meta"]
    model = f"open, {m['rate']:g} req/s {m['arrival']}" if m["model"] == "open" else "closed"
    if trace := (m.get("llm") or {}).get("trace"):
        model = f"open, a trace of {trace['lines']:,} requests over {trace['span_s']:g} s"
    what = f"scenario {m['scenario']} at {m['url']}" if m.get("scenario") else f"{m['method']} {m['url']}"
    if m.get("py"):
        params = ", ".join(f"{k}={v}" for k, v in m["py"]["params"].items())
        what = f"py {m['py']['target']}" + (f" ({params})" if params else "")
    slots = "user" if m.get("scenario") or m.get("py") else "connection"
    llm_meta = m.get("llm") or {}
    if (llm_meta.get("turns") or 1) > 1 or llm_meta.get("max_inflight"):
        slots = "user"  # (conversations: each a session; --max-inflight lends them fewer connections)
    if llm_meta.get("max_inflight"):
        model += f", at most {llm_meta['max_inflight']:,} in flight"
    console.print(
        f"[bold]squall[/bold] {what}  ({m['transport']}, {_n(m['workers'], 'worker')}, "
        f"{_n(m['connections'], slots)}, {model})"
    )
    ok_pct = 100.0 * s["ok"] / s["requests"] if s["requests"] else 0.0
    # Failures count in req/s too (a refused connect is quick): what was ok, per second, stands beside it.
    ok_rps = s.get("ok_rps")
    ok = f" ({ok_rps:,.1f} ok/s)" if ok_rps is not None and s["errors"] else ""
    if m.get("py"):
        console.print(
            f"  {s['requests']:,} iterations in {s['duration_s']:.2f}s, {s['rps']:,.1f}/s{ok}, "
            f"{ok_pct:.2f}% ok, {s['errors']:,} errors"
        )
    else:
        console.print(
            f"  {s['requests']:,} requests in {s['duration_s']:.2f}s, {s['rps']:,.1f} req/s{ok}, "
            f"{ok_pct:.2f}% ok, {s['errors']:,} errors, {s['bytes_in']:,} bytes in"
        )
    stopped = {"interrupted": "Ctrl-C", "terminated": "SIGTERM", "supervisor lost": "the main process died"}
    why = stopped.get(m.get("stop_reason", ""))
    if why is not None:
        asked = f" of the {m['duration_s']:g}s asked for" if m.get("duration_s") else ""
        cut = f"; {s['interrupted']:,} in flight were not counted" if s.get("interrupted") else ""
        series = doc.get("timeseries") or [{}]
        ran = max(s["duration_s"], series[-1].get("t") or 0.0)  # (no answer at all: the seconds it ran)
        how = "from the dashboard" if m.get("stopped_by") == "dashboard" else f"by {why}"
        console.print(f"  [yellow]stopped early {how}, after {ran:.1f}s{asked}{cut}[/yellow]")
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    keys = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
    for k in keys:
        table.add_column(k, justify="right", no_wrap=True, min_width=8)
    for name in ("latency_ms", "service_ms", "ttfb_ms", "schedule_lag_ms"):
        if name in s and (name == "latency_ms" or not m.get("py")):
            label = "iteration" if m.get("py") else name[:-3]
            table.add_row(label, *(fmt_ms(s[name][k]) for k in keys))
    for name, ph in s.get("phases", {}).items():
        failed = f" ({ph['errors']:,} raised)" if ph.get("errors") else ""
        table.add_row(f"  {name}{failed}", *(fmt_ms(ph["latency_ms"][k]) for k in keys))
    llm = s.get("llm")
    if llm:
        # TTFAT (first answer token) differs from TTFT only when a reasoning phase came first: shown then.
        thought = bool(llm.get("reasoning_answers") or llm.get("reasoning_tokens"))
        for name in ("ttft_ms", "ttfat_ms", "ttft_from_intended_ms", "itl_ms", "tpot_ms", "e2e_ms"):
            if name in llm and (name != "ttfat_ms" or thought):
                table.add_row(name[:-3], *(fmt_ms(llm[name][k]) for k in keys))
    console.print(table)
    if llm:
        source = f", from {llm['token_source']}" if llm["token_source"] != "none" else ""  # (no answer)
        console.print(
            f"  tokens: {llm['output_tokens']:,} out ({llm['output_tokens_per_s']:,.1f}/s{source}), "
            f"{llm['input_tokens']:,} in; goodput {llm['goodput_rps']:,.2f} req/s"
            + (f"; {llm['bad_chunks']:,} unparseable events" if llm["bad_chunks"] else "")
        )
        if thought:
            console.print(
                f"  reasoning: {llm.get('reasoning_tokens', 0):,} tokens in "
                f"{_n(llm.get('reasoning_answers', 0), 'answer')} (part of the tokens out)"
            )
        if llm.get("unstreamed"):  # (TTFT, ITL and TPOT come from streamed answers only)
            console.print(
                f"  answers: {llm['streamed']:,} streamed, {llm['unstreamed']:,} read whole "
                "(these add e2e and tokens, no TTFT, ITL or TPOT)"
            )
        if llm.get("cancelled"):  # (--cancel-after/--cancel-rate)
            console.print(f"  cancelled: {llm['cancelled']:,} abandoned (not errors; TTFT kept)")
        d = llm.get("token_discrepancy_per_answer")
        if d is not None:
            check = (
                "squall's estimate agrees with the server's usage"
                if abs(d) < 0.005
                else f"squall's estimate differs from the server's usage by {d:+,.2f} tokens per answer"
            )
            console.print(f"  token count check: {check} ({llm['answers_with_usage']:,} answers with usage)")
        _print_by_turn(console, llm.get("by_turn") or {})
    _print_target(console, s.get("target"))
    if s.get("counters"):
        console.print("  counters: " + ", ".join(f"{k}: {v:,}" for k, v in s["counters"].items()))
    if s["status_codes"] and not m.get("py"):
        console.print("  status codes: " + ", ".join(f"{k}: {v:,}" for k, v in s["status_codes"].items()))
    if s["error_kinds"]:
        console.print("  errors: " + ", ".join(f"{k}: {v:,}" for k, v in s["error_kinds"].items()))
    _print_keys(console, s.get("by_key") or {})
    if s.get("recovery"):
        console.print(f"  recovery: {recovery_text(s['recovery'])}", soft_wrap=True)
    if "steps" in s:
        _print_steps(console, s)
    _print_tracemalloc(console, doc.get("tracemalloc"))
    if doc.get("soak"):
        _print_soak(console, doc["soak"])
    for t in doc.get("thresholds", ()):
        mark = "[green]pass[/green]" if t["ok"] else "[red]FAIL[/red]"
        value = "no data" if t["value"] is None else f"value {t['value']:,.3f}"
        console.print(f"  threshold {mark}  {t['expr']}  ({value})", soft_wrap=True)
    for w in doc["warnings"]:
        console.print(f"  [yellow]warning:[/yellow] {w}", soft_wrap=True)
    if not doc["valid"]:
        console.print("  [red]result not valid[/red] (see warnings)")
        for line in why_not_valid(doc):
            console.print(f"  [red]why:[/red] {line}", soft_wrap=True)


def _print_by_turn(console: Console, by_turn: dict[str, Any]) -> None:
    """Conversations: TTFT (and e2e, input tokens) by turn, the first and last five turns when more."""
    if len(by_turn) < 2:
        return
    table = Table(box=None, pad_edge=False, title="TTFT by turn", title_justify="left")
    cancels = any(t.get("cancelled") for t in by_turn.values())
    cols = ["turn", "requests", "errors", *(["cancelled"] if cancels else [])]
    for col in (*cols, "ttft p50", "ttft p99", "e2e p50", "e2e p99", "input tokens"):
        table.add_column(col, justify="right")
    names = list(by_turn)
    shown = names if len(names) <= 10 else [*names[:5], "", *names[-5:]]
    for name in shown:
        if not name:
            table.add_row("…", *[""] * (7 + cancels))
            continue
        t = by_turn[name]
        mean = t["input_tokens_mean"]
        table.add_row(
            name,
            f"{t['requests']:,}",
            f"{t['errors']:,}",
            *([f"{t.get('cancelled', 0):,}"] if cancels else []),
            fmt_ms(t["ttft_ms"]["p50"]),
            fmt_ms(t["ttft_ms"]["p99"]),
            fmt_ms(t["e2e_ms"]["p50"]),
            fmt_ms(t["e2e_ms"]["p99"]),
            "" if mean is None else f"{mean:,.0f}",
        )
    console.print(table)


def _print_keys(console: Console, by_key: dict[str, Any]) -> None:
    """The keys that got 429s (rate limited), by their short hash, most first; nothing when none did."""
    limited = sorted(
        ((name, k) for name, k in by_key.items() if k.get("rate_limited")),
        key=lambda nk: (-nk[1]["rate_limited"], nk[0]),
    )
    if not limited:
        return
    words = ", ".join(f"{name} {k['rate_limited']:,} of {k['requests']:,}" for name, k in limited)
    console.print(
        f"  429s by key (sha256, first 8 hex digits): {words} ({len(limited)} of {_n(len(by_key), 'key')})",
        soft_wrap=True,
    )


def recovery_text(r: dict[str, Any]) -> str:
    """summary.recovery in one line: the spike, the baseline and how long p99 (and TTFT p99) took."""

    def after(name: str, baseline: Any, got: Any) -> str:
        if baseline is None:
            return f"{name}: no baseline"
        back = f"back within 10% after {got:g}s" if got is not None else "never back within 10%"
        return f"{name} {back} (baseline {fmt_ms(baseline)})"

    parts = [after("p99", r.get("baseline_p99_ms"), r.get("p99_recovered_after_s"))]
    if r.get("ttft_baseline_p99_ms") is not None:
        parts.append(after("TTFT p99", r["ttft_baseline_p99_ms"], r.get("ttft_p99_recovered_after_s")))
    return f"spike {r['spike_start_s']:g}s-{r['spike_end_s']:g}s; " + ", ".join(parts)


def _print_target(console: Console, t: dict[str, Any] | None) -> None:
    """The sampled target process (--target-pid, soak's --target-cmd): the figures its thresholds judge."""
    if not t:
        return
    cpu = rss = "—"
    if t.get("cpu_mean_pct") is not None:
        cpu = f"{t['cpu_mean_pct']:,.1f}% mean, {t['cpu_max_pct']:,.1f}% max"
    if t.get("rss_max_mb") is not None:
        rss = f"{t['rss_max_mb']:,.1f} MB max, {t['rss_last_mb']:,.1f} MB last"
    console.print(f"  target process: CPU {cpu}; RSS {rss} ({t['samples']:,} samples)")


def _print_tracemalloc(console: Console, notes: dict[str, Any] | None) -> None:
    """--tracemalloc: each worker's allocation sites that grew most between the first and last snapshot."""
    if not notes:
        return
    for worker, found in sorted(notes.items()):
        if "note" in found:
            console.print(f"  tracemalloc (worker {worker}): {found['note']}")
            continue
        console.print(f"  tracemalloc (worker {worker}), allocation sites that grew most:")
        for site in found.get("top_growth", [])[:5] or [
            {"site": "none grew", "size_diff_kb": 0, "count_diff": 0}
        ]:
            console.print(
                f"    {site['size_diff_kb']:+,.1f} KB  {site['count_diff']:+,} blocks  {site['site']}",
                soft_wrap=True,
            )


def _n(count: int, noun: str) -> str:
    """'1 worker', '2 workers'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
