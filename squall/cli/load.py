"""The load commands over one target: run, llm, scenario, py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from squall.cli.options import (
    LLM_OPTIONS,
    Body,
    BodyFile,
    Header,
    Iterations,
    Method,
    Param,
    Requests,
    Tracemalloc,
    bundled,
    concurrency,
    examples,
    load_command,
    timeout,
    usage_errors,
)
from squall.plan.build import LoadFlags
from squall.plan.llm import LlmFlags

if TYPE_CHECKING:
    from squall.plan.plan import Plan


RUN_EXAMPLES = examples(
    "squall run http://127.0.0.1:8080/ -c 64 -d 30s",
    "squall run http://127.0.0.1:8080/api -r 500 -d 1m --threshold 'p99<300ms' -o run.json",
    "squall run http://127.0.0.1:8080/items -m POST -H 'Content-Type: application/json' "
    "--body-file item.json -n 1000",
)
LLM_EXAMPLES = examples(
    "squall llm http://127.0.0.1:8000/v1/chat/completions --model llama3 -c 16 -d 1m",
    "squall llm http://127.0.0.1:8000/v1/chat/completions --prompts prompts.jsonl --api-key-file keys.txt "
    "--key-per user -n 500",
    "squall llm http://127.0.0.1:8000/v1/completions --input-tokens 512 --output-tokens 128 "
    "--goodput 'ttft<500ms' -r 5 -d 2m",
)
SCENARIO_EXAMPLES = examples(
    "squall scenario journeys.yaml -c 50 -d 5m",
    "squall scenario journeys.yaml --stage 1m:100 --stage 5m:100 --threshold 'step.checkout.p99<1s'",
    "squall scenario journeys.yaml -r 20 -n 1000 -o journeys.json --html journeys.html",
)
PY_EXAMPLES = examples(
    "squall py examples.agent_sdk:workload -c 20 -n 1000",
    "squall py examples.agent_sdk:workload -c 8 -d 30s --threshold 'p99<2s' -o agent.json",
)


def register(app: typer.Typer) -> None:
    """Add run, llm, scenario and py to `app`."""
    load_command(app, "run", epilog=RUN_EXAMPLES)(run)
    load_command(
        app,
        "llm",
        defaults={"timeout": "120s"},
        declared={"timeout": timeout("one stream (its whole answer)")},
        epilog=LLM_EXAMPLES,
    )(bundled("opts", LlmFlags, LLM_OPTIONS)(llm))
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
            "timeout": timeout("one request of a step"),
        },
        epilog=SCENARIO_EXAMPLES,
    )(scenario)
    load_command(
        app,
        "py",
        omit=("burstiness", "insecure", "target_pid", "transport"),
        defaults={"timeout": "60s"},
        declared={"timeout": timeout("one iteration")},
        epilog=PY_EXAMPLES,
    )(py)


def _execute(plan: Plan, flags: LoadFlags) -> typer.Exit:
    from squall.cli.execute import execute

    return typer.Exit(execute(plan, flags.junit, flags.html, flags.csv_path))


def run(
    url: Annotated[str, typer.Argument(metavar="URL", help="The endpoint, e.g. http://127.0.0.1:8080/")],
    connections: concurrency(
        "Concurrent requests: connections, split over workers (default 64).", "--connections"
    ) = None,
    requests: Requests = None,
    method: Method = "GET",
    header: Header = None,
    body: Body = None,
    body_file: BodyFile = None,
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


def llm(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="The endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions"),
    ],
    connections: concurrency(
        "Concurrent streams: connections, split over workers (default 64).", "--connections"
    ) = None,
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
        notes: list[str] = []
        spec = llm_spec(url, opts, flags.seed, tuple(header or ()), notes)
        for note in notes:
            typer.echo(f"squall: {note}", err=True)
        request = RequestSpec(url=url, method="POST", headers=tuple(parse_header(h) for h in header or ()))
        plan = build.build(request, flags, connections=connections, requests=requests, llm=spec)
    raise _execute(plan, flags)


def scenario(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A scenario YAML file (see docs/scenarios.md).")
    ],
    users: concurrency("Virtual users (default: the file's users, else 10).", "-u", "--users") = None,
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
    users: concurrency("Virtual users: concurrent iterations (default 10).", "-u", "--users") = None,
    iterations: Iterations = None,
    param: Param = None,
    tracemalloc_on: Tracemalloc = False,
    *,
    flags: LoadFlags,
) -> None:
    """Load-test a Python SDK or any async function in-process: same engine, models, shapes and stats.
    Phases timed with squall.sdk.timer() get their own histograms; exceptions count by type."""

    from squall.plan.build import matrix_plans
    from squall.studies import matrix

    with usage_errors():
        cells, plans = matrix_plans(target, flags, users, iterations, tuple(param or ()), tracemalloc_on)
    if len(cells) == 1:
        raise _execute(plans[0], flags)
    raise typer.Exit(matrix.run_matrix(cells, plans, flags.out, plans[0].command, html=flags.html))
