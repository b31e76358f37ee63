"""The HTML report of a `--param` matrix: one table of the cells by figure, and one chart per figure."""

from __future__ import annotations

from typing import Any

from squall.report.sections import Table, text_count, text_ms, text_share


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(no parameters)"


def _target(doc: dict[str, Any]) -> str:
    """The workload (MODULE:FACTORY) from the matrix's command line, or ''."""
    words = str(doc.get("command") or "").split()
    after = words[words.index("py") + 1 :] if "py" in words else []
    return next((w for w in after if ":" in w and not w.startswith("-")), "")


def cell_verdict(cell: dict[str, Any]) -> list[str]:
    """A cell's verdict as the console's matrix table says it, and its class."""
    failed = [str(t.get("expr")) for t in cell.get("thresholds") or [] if not t.get("ok")]
    valid = cell.get("valid", True)
    verdict = "ok" if valid else "not valid (see warnings)"
    if cell.get("stop_reason") in ("interrupted", "terminated"):
        verdict = f"{cell['stop_reason']} (cut short)"
    if failed:
        verdict = ("" if valid else verdict + "; ") + "FAIL " + ", ".join(failed)
    return [verdict, "ok" if verdict == "ok" else "bad"]


def _figures(cells: list[dict[str, Any]], phases: list[str]) -> list[tuple[str, str, list[Any]]]:
    """(figure, unit, value per cell) for every figure of the cells."""
    s = [c.get("summary") or {} for c in cells]
    lat = [x.get("latency_ms") or {} for x in s]
    out: list[tuple[str, str, list[Any]]] = [
        ("iterations/s", "iterations/s", [x.get("rps") for x in s]),
        ("p50", "ms", [d.get("p50") for d in lat]),
        ("p99", "ms", [d.get("p99") for d in lat]),
        ("errors", "errors", [x.get("errors") for x in s]),
    ]
    for p in phases:
        for k in ("p50", "p99"):
            values = [(((x.get("phases") or {}).get(p) or {}).get("latency_ms") or {}).get(k) for x in s]
            out.append((f"{p} {k}", "ms", values))
    return out


def matrix_data(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows for a matrix document, ready to draw."""
    cells = [c for c in doc.get("cells") or [] if isinstance(c, dict)]
    names = list((cells[0].get("params") or {}) if cells else [])
    phases = sorted({p for c in cells for p in (c.get("summary") or {}).get("phases") or {}})
    head = [*names, "iterations", "iterations/s", "ok", "errors", "p50", "p90", "p99", "max"]
    head += [f"{p} p50 / p99" for p in phases] + ["verdict"]
    rows = []
    for c in cells:
        s = c.get("summary") or {}
        lat = s.get("latency_ms") or {}
        row: list[Any] = [str((c.get("params") or {}).get(n, "")) for n in names]
        row += [
            text_count(s.get("requests")),
            f"{s.get('rps', 0):,.1f}",
            text_share(s.get("ok"), s.get("requests")),
        ]
        row += [text_count(s.get("errors"))] + [text_ms(lat.get(k)) for k in ("p50", "p90", "p99", "max")]
        for p in phases:
            ph = ((s.get("phases") or {}).get(p) or {}).get("latency_ms") or {}
            row.append(f"{text_ms(ph.get('p50'))} / {text_ms(ph.get('p99'))}" if ph else "")
        rows.append([*row, cell_verdict(c)])
    tables: list[Table] = [{"id": "cells", "title": "Cells", "head": head, "rows": rows, "note": ""}]
    skipped = doc.get("skipped") or []
    warnings = [f"{_label(c.get('params') or {})}: {w}" for c in cells for w in c.get("warnings") or []]
    if skipped:
        warnings.insert(
            0, f"stopped early: {len(skipped)} cell(s) not run ({'; '.join(map(_label, skipped))})"
        )
    grid: dict[str, list[str]] = {}
    for c in [*cells, *skipped]:
        for k, v in (c.get("params") if "params" in c else c).items():
            grid.setdefault(k, [])
            if str(v) not in grid[k]:
                grid[k].append(str(v))
    config = [["command", str(doc.get("command") or "")]] + [
        [f"--param {k}", ", ".join(v)] for k, v in grid.items()
    ]
    config.append(["cells run", f"{len(cells)} of {len(cells) + len(skipped)}"])
    tables.append(
        {"id": "config", "title": "Configuration", "head": ["setting", "value"], "rows": config, "note": ""}
    )
    return {
        "kind": "matrix",
        "title": "squall py matrix" + (f" — {_target(doc)}" if _target(doc) else ""),
        "subtitle": f"{len(cells)} cells · "
        + ("all valid" if all(c.get("valid", True) for c in cells) else "NOT all valid"),
        "valid": all(c.get("valid", True) for c in cells),
        "warnings": warnings,
        "cards": [],
        "verdicts": [],
        "tables": tables,
        "matrix": {
            "x_name": names[0] if names else "",
            "x": [str((c.get("params") or {}).get(names[0], "")) if names else "" for c in cells],
            "group": [
                _label({n: (c.get("params") or {}).get(n) for n in names[1:]}) if len(names) > 1 else ""
                for c in cells
            ],
            "figures": [{"name": n, "unit": u, "values": v} for n, u, v in _figures(cells, phases)],
        },
    }
