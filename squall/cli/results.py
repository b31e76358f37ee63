"""The commands over written results: report, merge, compare."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from squall.cli.options import Csv, Html, examples, fail, usage_errors


def register(app: typer.Typer) -> None:
    """Add report, merge and compare to `app`."""
    app.command(
        epilog=examples("squall report run.json --html run.html", "squall report run.json --csv run.csv")
    )(report)
    app.command(
        epilog=examples(
            "squall merge box0.json box1.json -o all.json",
            "squall merge shard-*.json -o all.json --html all.html",
        )
    )(merge)
    app.command(
        epilog=examples(
            "squall compare baseline.json current.json",
            "squall compare baseline.json current.json --max-regression 5% --json",
        )
    )(compare)


def report(
    result: Annotated[Path, typer.Argument(metavar="RESULT", help="A JSON result written by -o.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-second series (and FILE.summary.csv) here.")
    ] = None,
) -> None:
    """Turn a JSON result into a self-contained HTML report (summary cards, linked charts, distributions)
    and/or CSV files."""
    from squall.report.outputs import write_extras
    from squall.result.read import read_result
    from squall.units import PlanError, distinct

    with usage_errors():
        if html is None and csv_path is None:
            raise PlanError("say what to write: --html FILE and/or --csv FILE")
        _check_writable(html, csv_path)
        distinct({"RESULT": result, "--html": html, "--csv": csv_path})
        matrix = _matrix(result)
        if matrix is not None:
            if csv_path is not None:
                raise PlanError(f"{str(result)!r} is a --param matrix: it has no per-second series for --csv")
            from squall.report.html import write_html

            with _malformed_is_usage_error(f"{str(result)!r} cannot be reported"), _write_failed():
                write_html(matrix, html)  # type: ignore[arg-type]
            return
        doc = read_result(result)
    with _malformed_is_usage_error(f"{str(result)!r} cannot be reported"), _write_failed():
        write_extras(doc, html, csv_path)


def _matrix(path: Path) -> dict | None:
    """The --param matrix document at `path`, or None when it is not one (read_result then judges it)."""
    from squall.report.html import MATRIX_SCHEMA
    from squall.report.json import read_json

    try:
        with open(path, "rb") as f:  # (a result can be large: read it whole only when it names the schema)
            if MATRIX_SCHEMA.encode() not in f.read(4096):
                return None
        doc = read_json(str(path))
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("schema") == MATRIX_SCHEMA and isinstance(doc.get("cells"), list):
        return doc
    return None


def _check_writable(html: Path | None, csv_path: Path | None) -> None:
    from squall.units import check_writable

    for path, option in ((html, "--html"), (csv_path, "--csv")):
        if path is not None:
            check_writable(path, option)


@contextlib.contextmanager
def _write_failed() -> Iterator[None]:
    """An output that cannot be written after all (a full disk, /dev/full): one line and exit 2."""
    try:
        yield
    except OSError as e:
        where = f" {str(e.filename)!r}" if e.filename else ""
        raise fail(f"cannot write{where}: {e.strerror or e}") from None


@contextlib.contextmanager
def _malformed_is_usage_error(what: str) -> Iterator[None]:
    """A result whose inner fields have the wrong types: one line and exit 2, not a traceback."""
    import binascii

    from squall.units import PlanError

    try:
        yield
    except PlanError as e:  # (a ValueError, but one that names the problem itself)
        raise fail(str(e)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error) as e:
        why = f"{type(e).__name__}: {e}"
        raise fail(f"{what}: a field of the input has the wrong type or is missing ({why})") from None


def merge(
    results: Annotated[
        list[Path],
        typer.Argument(metavar="RESULT", help="Two or more JSON results (shards, boxes, runs)."),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Write the merged JSON result here.")] = Path(
        "merged.json"
    ),
    html: Html = None,
    csv_path: Csv = None,
) -> None:
    """Merge results exactly: counters add, histograms add bucket by bucket, seconds align on wall clock."""
    from squall.report.console import print_summary
    from squall.report.json import write_json
    from squall.report.outputs import write_extras
    from squall.result.merge import merge as merge_docs
    from squall.result.read import read_result
    from squall.units import PlanError, check_writable, distinct

    with usage_errors():
        check_writable(out)
        _check_writable(html, csv_path)
        distinct({"-o": out, "--html": html, "--csv": csv_path})
        for i, p in enumerate(results):
            distinct({f"result {i + 1}": p, "-o": out, "--html": html, "--csv": csv_path})
            if any(p.resolve() == q.resolve() for q in results[:i]):
                raise PlanError(f"{str(p)!r} is given twice: its requests would be counted twice")
        docs = [read_result(p) for p in results]
        with _malformed_is_usage_error("the results cannot be merged"):
            merged = merge_docs(docs, [str(p) for p in results])
    with _write_failed():
        write_json(merged, str(out))
    print_summary(merged)
    typer.echo(f"merged {len(docs)} results into {out}", err=True)
    with _write_failed():
        write_extras(merged, html, csv_path)
    raise typer.Exit(1 if any(not t["ok"] for t in merged.get("thresholds", ())) else 0)


def compare(
    baseline: Annotated[Path, typer.Argument(metavar="BASELINE", help="The baseline JSON result.")],
    current: Annotated[Path, typer.Argument(metavar="CURRENT", help="The JSON result to judge against it.")],
    max_regression: Annotated[
        str, typer.Option("--max-regression", help="A worse change beyond this fails (exit 1): 10%.")
    ] = "10%",
    noise: Annotated[
        str, typer.Option("--noise", help="Rates (req/s, tokens/s) changing less than this are the same.")
    ] = "5%",
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Per-metric deltas with a verdict (better, worse, same within noise, from the histograms); exit 1 on a
    regression beyond --max-regression, for CI."""
    import orjson

    from squall.report.tables import print_compare
    from squall.result.compare import compare as compare_docs
    from squall.result.read import read_result
    from squall.units import parse_percent

    with usage_errors():
        limit = parse_percent(max_regression, "--max-regression")
        noise_pct = parse_percent(noise, "--noise")
        docs = read_result(baseline), read_result(current)
        with _malformed_is_usage_error("the results cannot be compared"):
            out = compare_docs(*docs, limit, noise_pct)
    if json_out:
        typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        print_compare(out, str(baseline), str(current))
    raise typer.Exit(1 if out["regression"] else 0)
