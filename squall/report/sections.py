"""The HTML report's tables and verdict cards, as text: what the page shows, decided here and tested here.

A table is {"id", "title", "head": [column], "rows": [[cell]], "note"}; a cell is its text, or [text, class]
("ok", "bad") for a verdict. A verdict card is {"id", "title", "verdict", "class", "lines": [text]}.
"""

from __future__ import annotations

from typing import Any

Cell = list[str]
Table = dict[str, Any]
PERCENTILE_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
_FIRST_TIMES = ("latency_ms", "service_ms", "ttfb_ms", "schedule_lag_ms")
_LLM_TIMES = ("ttft_ms", "ttfat_ms", "ttft_from_intended_ms", "itl_ms", "tpot_ms", "e2e_ms")
_REASONING = ("reasoning_tokens", "reasoning_answers")  # (and ttfat_ms: shown when an answer reasoned)
_SHOWN_ELSEWHERE = {"error_kinds", "status_codes", "steps", "scenarios", "phases", "counters", "llm"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def text_ms(v: Any) -> str:
    """A duration in ms as the report shows it: '5.47 ms', '1.23 s' from a second up, '—' for none."""
    if not _number(v):
        return "—"
    return f"{v / 1000:,.2f} s" if v >= 1000 else f"{v:,.2f} ms"


def text_count(v: Any) -> str:
    """A count with thousands separators ('—' for none; a mean of counts with one decimal)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:,.1f}" if _number(v) else _value(v)


def text_share(part: Any, whole: Any) -> str:
    """part of whole in %, two decimals ('—' when whole is 0 or missing)."""
    return f"{100 * part / whole:.2f} %" if _number(part) and _number(whole) and whole else "—"


def _label(key: str) -> str:
    return key.replace("_", " ")


def _value(v: Any) -> str:
    """Any scalar of the result as text."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) if v else "—"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) if v else "—"
    return "—" if v is None else str(v)


def _table(tid: str, title: str, head: list[str], rows: list[list[Any]], note: str = "") -> Table:
    return {"id": tid, "title": title, "head": head, "rows": rows, "note": note}


def totals_table(summary: dict[str, Any], py: bool) -> Table:
    """Every scalar figure of the summary: counts, rates, bytes, and whatever else it carries."""
    n = summary.get("requests")
    unit = "iterations" if py else "requests"
    known = [
        ("requests", unit, text_count(n)),
        ("ok", "ok", f"{text_count(summary.get('ok'))} ({text_share(summary.get('ok'), n)})"),
        ("errors", "errors", f"{text_count(summary.get('errors'))} ({text_share(summary.get('errors'), n)})"),
        (
            "duration_s",
            "measured time",
            f"{summary['duration_s']:,.2f} s" if _number(summary.get("duration_s")) else "—",
        ),
        ("rps", f"{unit}/s", f"{summary['rps']:,.1f}" if _number(summary.get("rps")) else "—"),
        ("ok_rps", f"ok {unit}/s", f"{summary['ok_rps']:,.1f}" if _number(summary.get("ok_rps")) else "—"),
    ]
    labels = {
        "bytes_in": "bytes in",
        "bytes_out": "bytes out",
        "warmup_requests": f"{unit} in the warm-up (not counted)",
        "dropped": "dropped (the backlog was full)",
        "unsent": "due requests never sent",
        "interrupted": "in flight at the stop (not counted)",
        "overflow": "latencies beyond the histogram's range",
    }
    rows = [[label, text] for key, label, text in known if key in summary]
    for key, v in summary.items():
        if key in {k for k, _, _ in known} or key in _SHOWN_ELSEWHERE or isinstance(v, dict):
            continue
        rows.append([labels.get(key, _label(key)), text_count(v) if _number(v) else _value(v)])
    if isinstance(summary.get("target"), dict):
        rows += target_rows(summary["target"])
    return _table("totals", "Totals", ["figure", "value"], rows)


def target_rows(t: dict[str, Any]) -> list[list[Any]]:
    """The sampled target process (--target-pid, soak's --target-cmd): the console's "target process" line."""
    cpu = rss = "—"
    if _number(t.get("cpu_mean_pct")):
        cpu = f"{t['cpu_mean_pct']:,.1f} % mean, {t.get('cpu_max_pct') or 0:,.1f} % max"
    if _number(t.get("rss_max_mb")):
        rss = f"{t['rss_max_mb']:,.1f} MB max, {t.get('rss_last_mb') or 0:,.1f} MB last"
    return [
        ["target process CPU", cpu],
        ["target process RSS", rss],
        ["target process samples", text_count(t.get("samples"))],
    ]


def times_table(summary: dict[str, Any], py: bool) -> Table:
    """Every timing the summary carries (latency, service, TTFB, schedule lag, LLM timings), by percentile."""
    rows = []
    names = [*_FIRST_TIMES, *(k for k in summary if k.endswith("_ms") and k not in _FIRST_TIMES)]
    for name in names:
        d = summary.get(name)
        if isinstance(d, dict) and (name == "latency_ms" or not py):
            rows.append(["iteration" if py and name == "latency_ms" else _label(name[:-3]), *_row_ms(d)])
    llm = summary.get("llm")
    if isinstance(llm, dict):
        for name in [*_LLM_TIMES, *(k for k in llm if k.endswith("_ms") and k not in _LLM_TIMES)]:
            if isinstance(llm.get(name), dict) and (name != "ttfat_ms" or _reasoned(llm)):
                rows.append([_label(name[:-3]), *_row_ms(llm[name])])
    return _table("times", "Latency by percentile", ["", *PERCENTILE_KEYS], rows)


def _row_ms(d: dict[str, Any]) -> list[str]:
    # A timing no answer gave (all zeros in an older result, or null) reads "—", as on the console.
    empty = not any(_number(d.get(k)) and d.get(k) for k in PERCENTILE_KEYS)
    return ["—" if empty else text_ms(d.get(k)) for k in PERCENTILE_KEYS]


def _reasoned(llm: dict[str, Any]) -> bool:
    """Whether any answer had a reasoning phase (TTFAT then differs from TTFT)."""
    return any(_number(llm.get(k)) and llm.get(k) for k in _REASONING)


def llm_table(llm: dict[str, Any]) -> Table:
    """Tokens, goodput and the token count check: every scalar of summary.llm (the reasoning figures when an
    answer reasoned)."""
    labels = {
        "output_tokens": "output tokens",
        "output_tokens_per_s": "output tokens/s",
        "input_tokens": "input tokens",
        "input_tokens_per_s": "input tokens/s",
        "reasoning_tokens": "reasoning tokens (part of the output tokens)",
        "reasoning_answers": "answers with a reasoning phase",
        "token_source": "tokens counted from",
        "goodput_rps": "goodput (req/s)",
        "bad_chunks": "unparseable events",
        "token_discrepancy_per_answer": "squall's estimate minus the server's usage (tokens per answer)",
        "answers_with_usage": "answers with usage",
        "answers_estimated": "answers with estimated tokens",
        "bad_usage": "usage fields that were not numbers",
        "retry_after": "429s with Retry-After (max s)",
        "retry_after_clamped": "Retry-After clamped to 1 h",
    }
    rows = []
    skip = () if _reasoned(llm) else _REASONING
    for key in [*labels, *(k for k in llm if k not in labels)]:
        if key in skip:
            continue
        if key == "retry_after" and isinstance(llm.get(key), dict):
            ra = llm[key]
            most = f" ({ra['max_s']:,g})" if _number(ra.get("max_s")) and ra.get("count") else ""
            rows.append([labels[key], text_count(ra.get("count")) + most])
        elif key in llm and not isinstance(llm[key], dict):
            v = llm[key]
            text = f"{v:,.2f}" if isinstance(v, float) else text_count(v) if _number(v) else _value(v)
            rows.append([labels.get(key, _label(key)), text])
    return _table("llm", "LLM", ["figure", "value"], rows)


def by_turn_table(by_turn: dict[str, Any]) -> Table:
    """Conversations: each turn's requests, errors, cancelled, TTFT and e2e p50/p99 and mean input tokens."""
    rows = []
    for name, t in by_turn.items():
        ttft, e2e = t.get("ttft_ms") or {}, t.get("e2e_ms") or {}
        rows.append(
            [name, text_count(t.get("requests")), text_count(t.get("errors")),
             text_count(t.get("cancelled", 0)), text_ms(ttft.get("p50")), text_ms(ttft.get("p99")),
             text_ms(e2e.get("p50")), text_ms(e2e.get("p99")), text_count(t.get("input_tokens_mean"))]
        )  # fmt: skip
    head = [
        "turn",
        "requests",
        "errors",
        "cancelled",
        "TTFT p50",
        "TTFT p99",
        "e2e p50",
        "e2e p99",
        "input tokens (mean)",
    ]
    note = "turns from 64 on are pooled in 64+" if "64+" in by_turn else ""
    return _table("by_turn", "TTFT by turn", head, rows, note)


def by_key_table(by_key: dict[str, Any]) -> Table:
    """Per API key (by its short hash): requests, ok, errors, the 429s apart, latency, TTFT and tokens."""
    llm = any("ttft_ms" in k for k in by_key.values())
    rows = []
    for name, k in by_key.items():
        lat, ttft = k.get("latency_ms") or {}, k.get("ttft_ms") or {}
        others = {kind: n for kind, n in (k.get("error_kinds") or {}).items() if kind != "http_429"}
        counts = [text_count(k.get(n, 0)) for n in ("requests", "ok", "errors", "rate_limited")]
        row = [name, *counts, text_ms(lat.get("p50")), text_ms(lat.get("p99"))]
        if llm:
            row += [text_ms(ttft.get("p50")), text_ms(ttft.get("p99")), text_count(k.get("input_tokens")),
                    text_count(k.get("output_tokens"))]  # fmt: skip
        rows.append([*row, _kinds(others)])
    head = ["key (sha256)", "requests", "ok", "errors", "429 (rate limited)", "p50", "p99"]
    if llm:
        head += ["TTFT p50", "TTFT p99", "input tokens", "output tokens"]
    note = "keys are shown as the first 8 hex digits of their SHA-256, never in clear"
    return _table("by_key", "By key", [*head, "other errors by kind"], rows, note)


def recovery_table(r: dict[str, Any]) -> Table:
    """summary.recovery: the spike, the baselines, and the seconds until p99 (and TTFT p99) came back."""

    def back(v: Any) -> str:
        return "never (within the run)" if v is None else f"{v:g} s"

    rows = [
        ["spike", f"{r.get('spike_start_s', 0):g} s to {r.get('spike_end_s', 0):g} s"],
        ["baseline p99", text_ms(r.get("baseline_p99_ms"))],
        ["p99 back within 10% after", back(r.get("p99_recovered_after_s"))],
    ]
    if r.get("ttft_baseline_p99_ms") is not None:
        rows.append(["baseline TTFT p99", text_ms(r.get("ttft_baseline_p99_ms"))])
        rows.append(["TTFT p99 back within 10% after", back(r.get("ttft_p99_recovered_after_s"))])
    rows.append(["recovered", "yes" if r.get("recovered") else "no"])
    note = "recovered: 3 seconds in a row within 10% of the median p99 before the spike"
    if r.get("note"):
        note += f"; {r['note']}"
    return _table("recovery", "Recovery after the spike", ["figure", "value"], rows, note)


def by_turn_chart(llm: Any) -> dict[str, Any] | None:
    """The "TTFT by turn" chart's data: turn names, TTFT p50/p99 and mean input tokens (None: no chart)."""
    by_turn = llm.get("by_turn") if isinstance(llm, dict) else None
    if not isinstance(by_turn, dict) or len(by_turn) < 2:
        return None
    turns = list(by_turn.values())
    return {
        "turn": list(by_turn),
        "ttft_p50": [(t.get("ttft_ms") or {}).get("p50") for t in turns],
        "ttft_p99": [(t.get("ttft_ms") or {}).get("p99") for t in turns],
        "input_tokens": [t.get("input_tokens_mean") for t in turns],
    }


def counts_table(tid: str, title: str, head: str, counts: dict[str, int], requests: Any) -> Table:
    """A count per name (status code, error kind), with its share of all requests, largest first."""
    errors = sum(v for v in counts.values() if _number(v))
    rows = [
        [str(k), text_count(v), text_share(v, requests)]
        + ([text_share(v, errors)] if tid == "error_kinds" else [])
        for k, v in sorted(counts.items(), key=lambda kv: -kv[1] if _number(kv[1]) else 0)
    ]
    share = ["share of requests"] + (["share of errors"] if tid == "error_kinds" else [])
    return _table(tid, title, [head, "count", *share], rows, "" if rows else "none")


def thresholds_table(thresholds: list[dict[str, Any]]) -> Table:
    rows = [
        [
            str(t.get("expr")),
            ["pass", "ok"] if t.get("ok") else ["FAIL", "bad"],
            "no data" if t.get("value") is None else f"{t['value']:,.3f}",
        ]
        for t in thresholds
    ]
    return _table("thresholds", "Thresholds", ["threshold", "result", "value"], rows)


def _kinds(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {text_count(v)}" for k, v in (d or {}).items())


def figure_tables(doc: dict[str, Any]) -> list[Table]:
    """The tables of every figure the console prints, in its order."""
    s, meta = doc.get("summary") or {}, doc.get("meta") or {}
    py = bool(meta.get("py"))
    out = [totals_table(s, py), times_table(s, py)]
    if isinstance(s.get("llm"), dict):
        out.append(llm_table(s["llm"]))
        if isinstance(s["llm"].get("by_turn"), dict) and len(s["llm"]["by_turn"]) > 1:
            out.append(by_turn_table(s["llm"]["by_turn"]))
    if not py:
        out.append(
            counts_table(
                "status_codes", "Status codes", "status", s.get("status_codes") or {}, s.get("requests")
            )
        )
    out.append(
        counts_table("error_kinds", "Errors by kind", "kind", s.get("error_kinds") or {}, s.get("requests"))
    )
    if isinstance(s.get("by_key"), dict) and s["by_key"]:
        out.append(by_key_table(s["by_key"]))
    if isinstance(s.get("recovery"), dict):
        out.append(recovery_table(s["recovery"]))
    if doc.get("thresholds"):
        out.append(thresholds_table(doc["thresholds"]))
    if s.get("scenarios"):
        rows = [
            [n, f"{j.get('weight', 0):g}", text_count(j.get("iterations")), text_count(j.get("completed")),
             text_count(j.get("failed")), text_ms((j.get("duration_ms") or {}).get("p50")),
             text_ms((j.get("duration_ms") or {}).get("p99")), _kinds(j.get("failed_at"))]
            for n, j in s["scenarios"].items()
        ]  # fmt: skip
        head = ["journey", "weight", "iterations", "completed", "failed", "p50", "p99", "failed at"]
        out.append(_table("journeys", "Journeys", head, rows))
    if s.get("steps"):
        rows = []
        for n, st in s["steps"].items():
            lat = st.get("latency_ms") or {}
            ttft = text_ms(((st.get("llm") or {}).get("ttft_ms") or {}).get("p50")) if st.get("llm") else ""
            rows.append(
                [n, text_count(st.get("requests")), text_count(st.get("ok")), text_count(st.get("errors")),
                 f"{st.get('rps', 0):,.1f}", text_ms(lat.get("p50")), text_ms(lat.get("p90")),
                 text_ms(lat.get("p99")), ttft, _kinds(st.get("error_kinds"))]
            )  # fmt: skip
        head = [
            "step",
            "requests",
            "ok",
            "errors",
            "req/s",
            "p50",
            "p90",
            "p99",
            "TTFT p50",
            "errors by kind",
        ]
        out.append(_table("steps", "Steps", head, rows))
    if s.get("phases"):
        rows = [
            [n, text_count(ph.get("requests")), text_count(ph.get("errors"))]
            + [text_ms((ph.get("latency_ms") or {}).get(k)) for k in ("p50", "p90", "p99", "max")]
            + [_kinds(ph.get("error_kinds"))]
            for n, ph in s["phases"].items()
        ]
        head = ["phase", "count", "raised", "p50", "p90", "p99", "max", "raised by kind"]
        out.append(_table("phases", "Phases", head, rows))
    if s.get("counters"):
        per_s = s.get("duration_s")
        rows = [
            [n, text_count(v), f"{v / per_s:,.2f}" if _number(per_s) and per_s else ""]
            for n, v in s["counters"].items()
        ]
        out.append(_table("counters", "Counters", ["counter", "total", "per second"], rows))
    for worker, found in sorted((doc.get("tracemalloc") or {}).items()):
        rows = [
            [g.get("site", ""), f"{g.get('size_diff_kb', 0):+,.1f}", f"{g.get('count_diff', 0):+,}"]
            for g in found.get("top_growth") or []
        ]
        title = f"Allocation sites that grew most (tracemalloc, worker {worker})"
        out.append(
            _table(
                f"tracemalloc_{worker}",
                title,
                ["site", "KB grown", "blocks grown"],
                rows,
                found.get("note", ""),
            )
        )
    return out


def _stages(shape: dict[str, Any]) -> str:
    stages = ", ".join(
        f"{st.get('duration_s', 0):g} s to {st.get('target')}" for st in shape.get("stages") or []
    )
    return f"{shape.get('kind', '')}: {stages}".strip(": ")


def config_table(doc: dict[str, Any]) -> Table:
    """The run's configuration: what was asked for (the command line, secrets redacted) and where it ran."""
    m = doc.get("meta") or {}
    py = m.get("py") or {}
    rows: list[list[Any]] = []

    def add(label: str, v: Any) -> None:
        if v is not None and v != "" and v != []:
            rows.append([label, v if isinstance(v, str) else _value(v)])

    add("command", m.get("command"))
    add("squall version", m.get("version"))
    add("started", m.get("started_at"))
    add("target", m.get("url"))
    journeys = bool(m.get("scenario") or py)  # (the steps name their own methods; -n counts iterations)
    add("method", None if journeys else m.get("method"))
    add("scenario", m.get("scenario"))
    add("py workload", py.get("target"))
    add("py parameters", py.get("params") or None)
    model = m.get("model")
    if model == "open":
        burst = f", burstiness {m['burstiness']:g}" if _number(m.get("burstiness")) else ""
        add("load model", f"open: {m.get('rate', 0):g} req/s, {m.get('arrival')} arrivals{burst}")
    elif model:
        add("load model", "closed: each user sends its next request when the last one is answered")
    add("users" if journeys else "connections", m.get("connections"))
    add("stages", _stages(m["shape"]) if isinstance(m.get("shape"), dict) else None)
    add("think time", m.get("think"))
    add("duration", f"{m['duration_s']:g} s" if _number(m.get("duration_s")) else None)
    add("iterations (-n)" if journeys else "request budget (-n)", m.get("requests"))
    add("warm-up", f"{m['warmup_s']:g} s" if m.get("warmup_s") else None)
    add("timeout", f"{m['timeout_s']:g} s" if _number(m.get("timeout_s")) else None)
    add("workers", m.get("workers"))
    add("transport", m.get("transport"))
    add("shard", "/".join(str(x) for x in m["shard"]) if m.get("shard") else None)
    add("source addresses", m.get("source_ips"))
    llm = m.get("llm") or {}
    for key in ("api", "model", "stream", "max_tokens", "prompts", "api_keys", "goodput"):
        add(f"LLM {_label(key)}", llm.get(key))
    add("thresholds", [t.get("expr") for t in doc.get("thresholds") or []])
    add("stopped by", m.get("stop_reason"))
    add("set-up before the load", f"{m['setup_s']:g} s" if _number(m.get("setup_s")) else None)
    host = doc.get("host") or {}
    if host:
        mem = f", {host['memory_mb']:,} MB" if _number(host.get("memory_mb")) else ""
        where = f"{host.get('hostname', '')}: {host.get('cpus', '?')} CPUs{mem}, {host.get('platform', '')}"
        add("host", f"{where}, Python {host.get('python', '')}")
    return _table("config", "Configuration", ["setting", "value"], rows)


def hunt_card(hunt: dict[str, Any]) -> dict[str, Any]:
    """The hunt's verdict: the best level, the knee, the first failing level, and why it stopped."""
    from squall.report.tables import hunt_found, hunt_stopped

    verdict, kind, found = hunt_found(hunt)
    lines = ["SLOs: " + (", ".join(hunt.get("slos") or []) or "—"), *found, hunt_stopped(hunt)]
    return {
        "id": "hunt",
        "title": "Hunt",
        "verdict": verdict,
        "class": {"ok": "ok", "bad": "bad"}.get(kind, ""),
        "lines": lines,
    }


def _step_verdict(st: dict[str, Any]) -> Any:
    """The level's verdict as the console words it: a pass or a fail is coloured."""
    from squall.report.tables import step_verdict

    said = step_verdict(st)
    if said == "ok":
        return ["ok", "ok"]
    return [said, "bad"] if said.startswith("FAIL") else said


# The target's series a hunt's levels show (--scrape), by the end of their name: what a user looks for first.
_SERVER_SERIES = (
    ("waiting", ("num_requests_waiting",)),
    ("running", ("num_requests_running",)),
    ("KV cache", ("kv_cache_usage_perc", "gpu_cache_usage_perc")),
)


def _server_series(steps: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(column, series) for the queue (waiting, running) and KV-cache series the levels scraped: the first
    series by name for each, with or without labels; none when nothing was scraped."""
    names = sorted({n for st in steps for n in (st.get("target_metrics") or {})})
    picked = []
    for column, ends in _SERVER_SERIES:
        for end in ends:
            found = [n for n in names if n.partition("{")[0].endswith(end)]
            if found:
                picked.append((column, found[0]))
                break
    return picked


def _mean_max(v: Any) -> str:
    if not isinstance(v, dict) or not _number(v.get("mean")):
        return "—"
    return f"{_value(round(v['mean'], 2))} / {_value(v.get('max'))}"


def hunt_table(hunt: dict[str, Any]) -> Table:
    """Every level of the hunt, by level (with the target's queue and KV cache when --scrape read them)."""
    steps = sorted(hunt.get("steps") or [], key=lambda s: s.get("level", 0))
    llm = any("ttft_p99_ms" in st for st in steps)
    server = _server_series(steps)
    head = [
        "level",
        "req/s",
        "p50",
        "p99",
        *(("TTFT p99", "tokens/s") if llm else ()),
        "requests",
        "errors",
        "squall CPU",
        *(f"server {column} (mean / max)" for column, _ in server),
        "verdict",
    ]
    rows = []
    for st in steps:
        cpu = st.get("generator_cpu_pct")
        row = [f"{st.get('level', 0):g}", f"{st.get('rps', 0):,.1f}"]
        row += [text_ms(st.get("p50_ms")), text_ms(st.get("p99_ms"))]
        if llm:
            row += [text_ms(st.get("ttft_p99_ms")), f"{st.get('tokens_per_s') or 0:,.0f}"]
        errors = f"{text_count(st.get('errors'))} ({100 * (st.get('error_rate') or 0):.2f} %)"
        row += [text_count(st.get("requests")), errors, "" if cpu is None else f"{cpu:.0f} %"]
        row += [_mean_max((st.get("target_metrics") or {}).get(name)) for _, name in server]
        rows.append([*row, _step_verdict(st)])
    note = "server: the target's own metrics (--scrape), over each level's seconds: " if server else ""
    note += ", ".join(name for _, name in server)
    return _table("hunt_levels", "Hunt levels", head, rows, note)


def soak_card(soak: dict[str, Any]) -> dict[str, Any]:
    """The soak's verdicts: the leak (RSS slope, 95 % interval), FD growth, drift, squall's own RSS."""
    who = "the workload's (squall workers')" if soak.get("subject") == "workers" else "the target's"
    slope, lines = soak.get("rss_slope_mb_per_h"), []
    if not _number(slope):
        verdict, cls = "leak not judged", ""
        lines.append(str(soak.get("note") or "no target samples"))
    else:
        lo, hi = (soak.get("rss_slope_ci_mb_per_h") or [None, None])[:2]
        verdict, cls = ("LEAK SUSPECTED", "bad") if soak.get("leak_suspected") else ("no leak", "ok")
        ci = f" (95 % CI {lo:+,.2f} to {hi:+,.2f})" if _number(lo) and _number(hi) else ""
        lines.append(
            f"{who} RSS {slope:+,.2f} MB/h{ci}; threshold {soak.get('leak_threshold_mb_per_h', 0):g} MB/h"
        )
    fds = soak.get("fd_growth")
    lines.append(
        f"file descriptors: {fds:+,} over the run" if _number(fds) else "file descriptors: not sampled"
    )
    d, e = soak.get("latency_drift"), soak.get("error_drift")
    if isinstance(d, dict):
        lines.append(
            f"drift (first vs last {d.get('stretch_s')} s): p50 {text_ms(d.get('p50_first_ms'))} → "
            f"{text_ms(d.get('p50_last_ms'))}, p99 {text_ms(d.get('p99_first_ms'))} → "
            f"{text_ms(d.get('p99_last_ms'))}"
        )
    if isinstance(e, dict):
        lines.append(f"errors {e.get('first_pct', 0):.2f} % → {e.get('last_pct', 0):.2f} %")
    from squall.report.console import own_rss_text

    own = own_rss_text(soak)
    if own:
        lines.append(own)
    return {"id": "soak", "title": "Soak", "verdict": verdict, "class": cls, "lines": lines}
