"""The load commands over one target: run, llm, scenario, py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from squall.cli.options import (
    Body,
    Header,
    Iterations,
    Method,
    Param,
    Requests,
    Tracemalloc,
    fail,
    load_command,
)
from squall.plan.build import LoadFlags

if TYPE_CHECKING:
    from squall.plan.plan import Plan


def register(app: typer.Typer) -> None:
    """Add run, llm, scenario and py to `app`."""
    load_command(app, "run")(run)
    load_command(app, "llm", defaults={"timeout": "120s"})(llm)
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
    url: Annotated[str, typer.Argument(help="The endpoint, e.g. http://127.0.0.1:8080/")],
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
    from squall.units import PlanError, parse_header

    try:
        request = RequestSpec(
            url=url,
            method=method.upper(),
            headers=tuple(parse_header(h) for h in header or ()),
            body=build.body(body, body_file),
        )
        plan = build.build(request, flags, connections=connections, requests=requests, record=record)
    except PlanError as e:
        raise fail(str(e)) from None
    raise _execute(plan, flags)


def llm(
    url: Annotated[str, typer.Argument(help="The endpoint, e.g. http://127.0.0.1:8000/v1/chat/completions")],
    api: Annotated[
        str | None, typer.Option("--api", help="chat, completions, dify or sse (default: from the path).")
    ] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Ask for plain JSON answers.")] = False,
    model: Annotated[str, typer.Option("--model", help="The model field of each request.")] = "default",
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="max_tokens of each request.")
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Sampling temperature.")] = None,
    body_json: Annotated[
        str | None, typer.Option("--body-json", help="Extra JSON object merged into every request body.")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help=".txt (one per line) or .jsonl (prompt or messages).")
    ] = None,
    input_tokens: Annotated[
        str | None, typer.Option("--input-tokens", help="Synthetic prompts of N[:stddev] tokens.")
    ] = None,
    output_tokens: Annotated[
        str | None, typer.Option("--output-tokens", help="max_tokens drawn from N[:stddev] per prompt.")
    ] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle", help="Prompts in a seeded random order.")] = False,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="API key (repeatable; or SQUALL_API_KEY/OPENAI_API_KEY)."),
    ] = None,
    api_key_file: Annotated[
        Path | None, typer.Option("--api-key-file", help="Keys, one per line, rotated per request.")
    ] = None,
    text_path: Annotated[
        str, typer.Option("--text-path", help="--api sse: dotted JSON path of the text.")
    ] = "choices.0.delta.content",
    done_marker: Annotated[
        str,
        typer.Option(
            "--done-marker", help="The data event that ends a stream (chat, completions, sse; '' for none)."
        ),
    ] = "[DONE]",
    goodput: Annotated[
        list[str] | None, typer.Option("--goodput", help="A bound every good request meets: 'ttft<500ms'.")
    ] = None,
    connections: Annotated[
        int | None,
        typer.Option("-c", "--concurrency", "--connections", help="Concurrent streams (default 64)."),
    ] = None,
    requests: Requests = None,
    header: Header = None,
    *,
    flags: LoadFlags,
) -> None:
    """Load-test an LLM API that streams tokens: TTFT, ITL, TPOT, tokens/s, goodput."""
    from squall.plan import build
    from squall.plan.llm import LlmFlags, llm_spec
    from squall.plan.specs import RequestSpec
    from squall.units import PlanError, parse_header

    try:
        spec = llm_spec(
            url,
            LlmFlags(
                api=api,
                stream=not no_stream,
                model=model,
                max_tokens=max_tokens,
                temperature=temperature,
                body_json=body_json,
                prompts=prompts,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                shuffle=shuffle,
                api_keys=build.api_keys(api_key, api_key_file),
                keys_given=bool(api_key or api_key_file),
                text_path=text_path,
                done_marker=done_marker,
                goodput=tuple(goodput or ()),
                header=tuple(header or ()),
            ),
            flags.seed,
        )
        request = RequestSpec(url=url, method="POST", headers=tuple(parse_header(h) for h in header or ()))
        plan = build.build(request, flags, connections=connections, requests=requests, llm=spec)
    except PlanError as e:
        raise fail(str(e)) from None
    raise _execute(plan, flags)


def scenario(
    file: Annotated[Path, typer.Argument(help="A scenario YAML file (see docs/scenarios.md).")],
    users: Annotated[
        int | None, typer.Option("-u", "--users", help="Virtual users (default: the file's users, else 10).")
    ] = None,
    iterations: Iterations = None,
    *,
    flags: LoadFlags,
) -> None:
    """Run weighted multi-step user journeys from a YAML file; stats per step and per journey."""
    from dataclasses import replace

    from squall.plan import build
    from squall.plan.scenario.load import load_scenario
    from squall.plan.specs import RequestSpec
    from squall.units import PlanError

    try:
        sc = load_scenario(file)
        rate_given = flags.rate is not None or any(s.endswith("/s") for s in flags.stage)
        if sc.think and flags.think is None and rate_given:
            raise PlanError(
                f"{sc.source} sets think: {sc.think}, which paces users; with a rate the schedule starts "
                "iterations: remove think from the file, or drop -r"
            )
        # A shape on the command line (--stage or --profile) takes the place of the file's stages.
        stages = flags.stage or (tuple(sc.stages) if flags.profile is None else ())
        if stages and not flags.stage:
            given = [
                o for o, v in (("-d/--duration", flags.duration), ("-u/--users", users)) if v is not None
            ]
            if given:
                raise PlanError(
                    f"the scenario file's stages set the users and the duration; drop {' and '.join(given)}, "
                    "or replace the stages with --stage or --profile"
                )
        duration = flags.duration
        if duration is None and sc.duration_s is not None and not stages:
            duration = f"{sc.duration_s}s"
        flags = replace(
            flags,
            duration=duration,
            stage=stages,
            threshold=(*sc.thresholds, *flags.threshold),
            think=flags.think if flags.think is not None else sc.think,
        )
        plan = build.build(
            RequestSpec(url=sc.base_url + "/"),
            flags,
            connections=users,
            default_connections=sc.users or 10,
            requests=iterations,
            scenario=sc,
        )
    except PlanError as e:
        raise fail(str(e)) from None
    raise _execute(plan, flags)


def py(
    target: Annotated[str, typer.Argument(help="MODULE:FACTORY, e.g. examples.agent_sdk:workload")],
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
    from squall.plan import build
    from squall.plan import py as py_params
    from squall.plan.specs import PySpec, RequestSpec
    from squall.studies import matrix
    from squall.units import PlanError, check_writable

    try:
        factory = build.load_py_factory(target)
        grid = py_params.params(param or [])
        py_params.check_params(target, factory, grid)
        cells = py_params.cells(grid)
        if len(cells) > 1:
            if flags.html is not None or flags.csv_path is not None or flags.junit is not None:
                raise PlanError(
                    "--html, --csv and --junit take one run; a --param matrix writes its one table to -o"
                )
            if flags.shard is not None or flags.start_at is not None or flags.prometheus_port is not None:
                raise PlanError(
                    "--shard, --start-at and --prometheus-port take one run, not a --param matrix"
                )
        plans: list[Plan] = []
        for cell in cells:
            if "concurrency" in cell and users is not None:
                raise PlanError("--param concurrency= sets -c for each cell; drop -c")
            given = {k: v for k, v in cell.items() if k != "concurrency"}
            plans.append(
                build.build(
                    RequestSpec(url="http://127.0.0.1/"),
                    flags if len(cells) == 1 else _one_cell(flags),
                    connections=cell.get("concurrency", users),
                    default_connections=10,
                    requests=iterations,
                    py=PySpec(target, tuple(given.items()), tracemalloc_on),
                )
            )
        if len(cells) > 1 and flags.out is not None:
            check_writable(flags.out)
    except PlanError as e:
        raise fail(str(e)) from None
    if len(cells) == 1:
        raise _execute(plans[0], flags)
    raise typer.Exit(matrix.run_matrix(cells, plans, flags.out, plans[0].command))


def _one_cell(flags: LoadFlags) -> LoadFlags:
    """A matrix cell's flags: quiet, and no file of its own (the matrix writes one document)."""
    from dataclasses import replace

    return replace(flags, quiet=True, out=None)
