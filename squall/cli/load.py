"""The load commands over one target: run, llm, scenario, py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from squall.cli.options import (
    Body,
    Header,
    Iterations,
    Method,
    Param,
    Requests,
    Tracemalloc,
    bundled,
    load_command,
    usage_errors,
)
from squall.plan.build import LoadFlags
from squall.plan.llm import LlmFlags

if TYPE_CHECKING:
    from squall.plan.plan import Plan


def register(app: typer.Typer) -> None:
    """Add run, llm, scenario and py to `app`."""
    load_command(app, "run")(run)
    load_command(app, "llm", defaults={"timeout": "120s"})(bundled("opts", LlmFlags, LLM_OPTIONS)(llm))
    load_command(
        app,
        "scenario",
        omit=("burstiness",),
        declared={
            "duration": Annotated[
                str | None,
                typer.Option("-d", "--duration", help="How long (default: the file's duration, else 10s)."),
            ],
            "threshold": Annotated[
                list[str] | None,
                typer.Option(
                    "--threshold", help="Added to the file's thresholds: 'p99<300ms', 'step.NAME.p99<1s'."
                ),
            ],
        },
    )(scenario)
    load_command(
        app, "py", omit=("burstiness", "insecure", "target_pid", "transport"), defaults={"timeout": "60s"}
    )(py)


def _execute(plan: Plan, flags: LoadFlags) -> typer.Exit:
    from squall.cli.execute import execute

    return typer.Exit(execute(plan, flags.junit, flags.html, flags.csv_path))


def run(
    url: Annotated[str, typer.Argument(metavar="URL", help="The endpoint, e.g. http://127.0.0.1:8080/")],
    connections: Annotated[
        int | None, typer.Option("-c", "--connections", help="Connections, split over workers (default 64).")
    ] = None,
    requests: Requests = None,
    method: Method = "GET",
    header: Header = None,
    body: Body = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the request body from a file.")
    ] = None,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", hidden=True, help="Record stats (off only to measure cost)."),
    ] = True,
    *,
    flags: LoadFlags,
) -> None:
    """Load-test one HTTP endpoint (closed model by default; open model with --rate)."""
    from squall.plan import build
    from squall.plan.specs import RequestSpec
    from squall.units import parse_header

    with usage_errors():
        request = RequestSpec(
            url=url,
            method=method.upper(),
            headers=tuple(parse_header(h) for h in header or ()),
            body=build.body(body, body_file),
        )
        plan = build.build(request, flags, connections=connections, requests=requests, record=record)
    raise _execute(plan, flags)


LLM_OPTIONS: dict[str, Any] = {
    "api": Annotated[
        str | None,
        typer.Option("--api", help="chat, completions, dify or sse (default: guessed from the path)."),
    ],
    "no_stream": Annotated[bool, typer.Option("--no-stream", help="Ask for plain JSON answers.")],
    "model": Annotated[str, typer.Option("--model", help="The model field of each request.")],
    "max_tokens": Annotated[int | None, typer.Option("--max-tokens", help="max_tokens of each request.")],
    "temperature": Annotated[float | None, typer.Option("--temperature", help="Sampling temperature.")],
    "body_json": Annotated[
        str | None, typer.Option("--body-json", help="Extra JSON object merged into every request body.")
    ],
    "prompts": Annotated[
        Path | None, typer.Option("--prompts", help=".txt (one per line) or .jsonl (prompt or messages).")
    ],
    "input_tokens": Annotated[
        str | None, typer.Option("--input-tokens", help="Synthetic prompts of N[:stddev] tokens.")
    ],
    "output_tokens": Annotated[
        str | None, typer.Option("--output-tokens", help="max_tokens drawn from N[:stddev] per prompt.")
    ],
    "shuffle": Annotated[bool, typer.Option("--shuffle", help="Prompts in a seeded random order.")],
    "api_key": Annotated[
        list[str] | None,
        typer.Option("--api-key", help="API key (repeatable; or SQUALL_API_KEY/OPENAI_API_KEY)."),
    ],
    "api_key_file": Annotated[
        Path | None, typer.Option("--api-key-file", help="Keys, one per line, rotated per request.")
    ],
    "text_path": Annotated[str, typer.Option("--text-path", help="--api sse: dotted JSON path of the text.")],
    "done_marker": Annotated[
        str,
        typer.Option(
            "--done-marker", help="The data event that ends a stream (chat, completions, sse; '' for none)."
        ),
    ],
    "goodput": Annotated[
        list[str] | None, typer.Option("--goodput", help="A bound every good request meets: 'ttft<500ms'.")
    ],
}


def llm(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="The endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions"),
    ],
    connections: Annotated[
        int | None,
        typer.Option("-c", "--concurrency", "--connections", help="Concurrent streams (default 64)."),
    ] = None,
    requests: Requests = None,
    header: Header = None,
    *,
    opts: LlmFlags,
    flags: LoadFlags,
) -> None:
    """Load-test an LLM API that streams tokens: TTFT, ITL, TPOT, tokens/s, goodput."""
    from squall.plan import build
    from squall.plan.llm import llm_spec
    from squall.plan.specs import RequestSpec
    from squall.units import parse_header

    with usage_errors():
        spec = llm_spec(url, opts, flags.seed, tuple(header or ()))
        request = RequestSpec(url=url, method="POST", headers=tuple(parse_header(h) for h in header or ()))
        plan = build.build(request, flags, connections=connections, requests=requests, llm=spec)
    raise _execute(plan, flags)


def scenario(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A scenario YAML file (see docs/scenarios.md).")
    ],
    users: Annotated[
        int | None, typer.Option("-u", "--users", help="Virtual users (default: the file's users, else 10).")
    ] = None,
    iterations: Iterations = None,
    *,
    flags: LoadFlags,
) -> None:
    """Run weighted multi-step user journeys from a YAML file; stats per step and per journey."""
    from squall.plan import build
    from squall.plan.scenario.load import load_scenario
    from squall.plan.specs import RequestSpec

    with usage_errors():
        sc = load_scenario(file)
        flags = build.scenario_flags(sc, flags, users)
        plan = build.build(
            RequestSpec(url=sc.base_url + "/"),
            flags,
            connections=users,
            default_connections=sc.users or 10,
            requests=iterations,
            scenario=sc,
        )
    raise _execute(plan, flags)


def py(
    target: Annotated[
        str, typer.Argument(metavar="MODULE:FACTORY", help="MODULE:FACTORY, e.g. examples.agent_sdk:workload")
    ],
    users: Annotated[
        int | None,
        typer.Option("-c", "--concurrency", "-u", help="Virtual users, concurrent iterations (default 10)."),
    ] = None,
    iterations: Iterations = None,
    param: Param = None,
    tracemalloc_on: Tracemalloc = False,
    *,
    flags: LoadFlags,
) -> None:
    """Load-test a Python SDK or any async function in-process: same engine, models, shapes and stats.
    Phases timed with squall.sdk.timer() get their own histograms; exceptions count by type."""
    from dataclasses import replace

    from squall.plan.build import matrix_plans
    from squall.studies import matrix

    # --html is the matrix's one report, not each cell's: the plans are built without it.
    with usage_errors():
        cells, plans = matrix_plans(
            target, replace(flags, html=None), users, iterations, tuple(param or ()), tracemalloc_on
        )
    if len(cells) == 1:
        raise _execute(plans[0], flags)
    raise typer.Exit(matrix.run_matrix(cells, plans, flags.out, plans[0].command, html=flags.html))
