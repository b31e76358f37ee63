"""The command line: parse flags, build a Plan, call the library, map the Result to an exit code."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from squall.plan.load import PROFILE_HELP, parse_stages, parse_think, profile
from squall.plan.plan import Plan
from squall.plan.specs import RequestSpec
from squall.plan.thresholds import parse_threshold
from squall.report.outputs import check_writable, distinct, execute, signal_exit, signals_wait, write_extras
from squall.result.document import EXIT_INVALID, EXIT_USAGE, STOPPED_BY_SIGNAL
from squall.result.read import read_result
from squall.units import PlanError, parse_duration, parse_header

WorkersOption = Annotated[
    int | None, typer.Option("-w", "--workers", help="Worker processes (default: CPU cores).")
]
RequestsOption = Annotated[
    int | None, typer.Option("-n", "--requests", help="Stop after exactly N completed requests.")
]
IterationsOption = Annotated[
    int | None, typer.Option("-n", "--iterations", help="Stop after exactly N completed iterations.")
]
ArrivalOption = Annotated[
    str, typer.Option("--arrival", help="Open-model arrivals: constant, poisson or gamma.")
]
BurstinessOption = Annotated[float, typer.Option("--burstiness", help="Gamma shape: <1 bursty, >1 regular.")]
MethodOption = Annotated[str, typer.Option("-m", "--method", help="HTTP method.")]
HeaderOption = Annotated[list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")]
BodyOption = Annotated[str | None, typer.Option("-b", "--body", help="Request body text.")]
TimeoutOption = Annotated[
    str, typer.Option("--timeout", help="How long one request (py: one iteration) may take.")
]
InsecureOption = Annotated[
    bool, typer.Option("-k", "--insecure", help="Do not verify the server's TLS certificate.")
]
OutOption = Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON result here.")]
QuietOption = Annotated[bool, typer.Option("-q", "--quiet", help="No live display.")]
TargetPidOption = Annotated[
    int | None, typer.Option("--target-pid", help="Also sample this process: CPU %, RSS, FDs, threads.")
]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Seed for every random choice: arrivals, prompts, journeys, think time.")
]
ThresholdOption = Annotated[
    list[str] | None,
    typer.Option("--threshold", help="A bound the run must meet: 'p99<300ms', 'errors<1%'."),
]
AbortOnFailOption = Annotated[
    bool, typer.Option("--abort-on-fail", help="Stop early once a threshold fails for --abort-grace.")
]
AbortGraceOption = Annotated[
    str | None, typer.Option("--abort-grace", help="How long a threshold may fail (default: 5s).")
]
JunitOption = Annotated[Path | None, typer.Option("--junit", help="Write thresholds as JUnit XML here.")]
LlmModeOption = Annotated[
    bool, typer.Option("--llm", help="URL is an LLM endpoint: stream answers as `squall llm` does.")
]
LlmModelOption = Annotated[str, typer.Option("--model", help="--llm: the model field.")]
LlmMaxTokensOption = Annotated[int | None, typer.Option("--max-tokens", help="--llm: max_tokens.")]
PortOption = Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0 picks a free one).")]
HostOption = Annotated[str, typer.Option("--host", help="Address to bind.")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="name=v1,v2,... for the Python workload's factory (py: concurrency= sets -c; several values "
        "make a matrix).",
    ),
]
TracemallocOption = Annotated[
    bool,
    typer.Option(
        "--tracemalloc", help="Python workload: the allocation sites that grew most in each worker."
    ),
]
StageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--stage",
        help="DURATION:TARGET, repeatable: linear from the previous target (0 first). 30s:100 = users "
        "(closed model, instead of -c/-u), 30s:200/s = requests (scenario: iterations)/s (open model). "
        "The stages set the duration.",
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile", help=f"A preset shape up to -c (-u) users or -r per s over -d. {PROFILE_HELP}."
    ),
]
HtmlOption = Annotated[
    Path | None,
    typer.Option("--html", help="Also write a self-contained HTML report (charts work offline) here."),
]
CsvOption = Annotated[
    Path | None,
    typer.Option("--csv", help="Also write the per-second series as CSV here (and FILE.summary.csv)."),
]
ShardOption = Annotated[
    str | None,
    typer.Option("--shard", help="I/N, I from 0: this box runs shard I of N (its share of -c, -r and -n)."),
]
StartAtOption = Annotated[
    float | None,
    typer.Option(
        "--start-at", help="Unix time (s) at which to start the load, so every shard starts together."
    ),
]
PrometheusOption = Annotated[
    str | None,
    typer.Option(
        "--prometheus-port", help="Serve live /metrics (Prometheus text) on PORT or HOST:PORT (127.0.0.1)."
    ),
]
ThinkOption = Annotated[
    str | None,
    typer.Option("--think", help="Pause between a user's requests: 1s-5s (uniform), 2s, or exp:2s (mean)."),
]

app = typer.Typer(
    name="squall",
    help="A load engine for HTTP and LLM APIs: exact HDR stats, one uvloop worker per core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"squall: error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


SECRET_OPTIONS = ("--api-key",)


def _command_line() -> str:
    """The command as typed, for the result's meta, with secrets replaced by ***."""
    # Arguments that are not valid UTF-8 arrive as surrogates; keep them printable and encodable.
    args = [a.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for a in sys.argv[1:]]
    for i, a in enumerate(args):
        if a in SECRET_OPTIONS and i + 1 < len(args):
            args[i + 1] = "***"
        elif a.startswith(tuple(f"{o}=" for o in SECRET_OPTIONS)):
            args[i] = a.split("=", 1)[0] + "=***"
        elif a == "--header" or (a.startswith("-") and not a.startswith("--") and a.endswith("H")):
            if i + 1 < len(args):  # -H VALUE, or a cluster of short options ending in H (-kH VALUE)
                args[i + 1] = _hide_secret_header(args[i + 1])
        elif a.startswith("--header="):
            args[i] = "--header=" + _hide_secret_header(a[9:])
        elif a.startswith("-H"):  # -HVALUE
            args[i] = "-H" + _hide_secret_header(a[2:])
    return shlex.join(["squall", *args])


SECRET_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "x-auth-token")


def _hide_secret_header(text: str) -> str:
    """'Authorization: Bearer sk-...' → 'Authorization: ***' (credentials never reach the result)."""
    name, sep, _ = text.partition(":")
    return f"{name}: ***" if sep and name.strip().lower() in SECRET_HEADERS else text


@app.command()
def run(
    url: Annotated[str, typer.Argument(help="The endpoint, e.g. http://127.0.0.1:8080/")],
    connections: Annotated[
        int | None, typer.Option("-c", "--connections", help="Connections, split over workers (default 64).")
    ] = None,
    workers: WorkersOption = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure: 10s, 2m, 1h (default: 10s).")
    ] = None,
    requests: RequestsOption = None,
    rate: Annotated[
        float | None, typer.Option("-r", "--rate", help="Open model: target requests/s over the whole run.")
    ] = None,
    arrival: ArrivalOption = "constant",
    burstiness: BurstinessOption = 1.0,
    method: MethodOption = "GET",
    header: HeaderOption = None,
    body: BodyOption = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the request body from a file.")
    ] = None,
    timeout: TimeoutOption = "30s",
    insecure: InsecureOption = False,
    warmup: Annotated[
        str, typer.Option("--warmup", help="Run this long first; requests sent in it are not counted.")
    ] = "0s",
    out: OutOption = None,
    quiet: QuietOption = False,
    target_pid: TargetPidOption = None,
    transport: Annotated[
        str,
        typer.Option("--transport", help="HTTP client: auto (raw unless aiohttp is needed), raw or aiohttp."),
    ] = "auto",
    seed: SeedOption = 0,
    threshold: ThresholdOption = None,
    abort_on_fail: AbortOnFailOption = False,
    abort_grace: AbortGraceOption = None,
    junit: JunitOption = None,
    stage: StageOption = None,
    profile: ProfileOption = None,
    think: ThinkOption = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    shard: ShardOption = None,
    start_at: StartAtOption = None,
    prometheus_port: PrometheusOption = None,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", hidden=True, help="Record stats (off only to measure cost)."),
    ] = True,
) -> None:
    """Load-test one HTTP endpoint (closed model by default; open model with --rate)."""
    try:
        request = RequestSpec(
            url=url,
            method=method.upper(),
            headers=tuple(parse_header(h) for h in header or ()),
            body=_body(body, body_file),
        )
        plan = _build_plan(
            request,
            workers=workers,
            duration=duration,
            timeout=timeout,
            insecure=insecure,
            warmup=warmup,
            out=out,
            connections=connections,
            requests=requests,
            rate=rate,
            arrival=arrival,
            burstiness=burstiness,
            quiet=quiet,
            target_pid=target_pid,
            transport=transport,
            seed=seed,
            record=record,
            threshold=threshold,
            abort_on_fail=abort_on_fail,
            abort_grace=abort_grace,
            junit=junit,
            stage=stage,
            profile=profile,
            think=think,
            shard=shard,
            start_at=start_at,
            prometheus_port=prometheus_port,
        )
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(execute(plan, junit, html, csv_path))


def _build_plan(
    request: RequestSpec,
    *,
    workers: int | None,
    duration: str | None,
    timeout: str,
    insecure: bool,
    warmup: str,
    out: Path | None,
    threshold: list[str] | None,
    abort_grace: str | None,
    junit: Path | None,
    stage: list[str] | None = None,
    profile: str | None = None,
    think: str | None = None,
    shard: str | None = None,
    start_at: float | None = None,
    prometheus_port: str | None = None,
    default_connections: int = 64,
    **fields: object,
) -> Plan:
    """The validated plan from the options every load command shares; raises PlanError.

    `connections` None: not given on the command line, so `default_connections` (a users shape sets them).
    """
    users_given = fields.get("connections") is not None
    if not users_given:
        fields["connections"] = default_connections
    if prometheus_port is not None:
        fields["prometheus"] = _listen_address(prometheus_port)
    pid = fields.get("target_pid")
    if pid is not None:
        import psutil

        if not psutil.pid_exists(int(pid)):  # type: ignore[call-overload]
            raise PlanError(f"--target-pid {pid}: no such process")
    if shard is not None:
        _split_for_shard(shard, fields, users_from_stages=bool(stage))
    if start_at is not None:
        import time

        now = time.time()
        if not now - 86_400 <= start_at <= now + 86_400:
            raise PlanError(f"--start-at {start_at:.0f} is not within a day of now ({now:.0f})")
        if start_at < now:  # a shard scheduled late starts at once; its result says how late
            typer.echo(f"squall: --start-at was {now - start_at:.1f} s ago: starting now", err=True)
        fields["start_at"] = start_at
    fields["shape"] = _shape(stage, profile, duration, fields, users_given)
    if fields["shape"] is not None:
        duration = None  # the stages set it
        if shard is not None and stage:  # each shard takes its share of the stages (a profile: of -c/-r)
            from squall.plan.load import Shape, Stage

            i, n = fields["shard"]  # type: ignore[misc]
            shape = fields["shape"]

            def part(target: float) -> float:
                if shape.kind == "rate":  # type: ignore[attr-defined]
                    return target / n
                whole = round(target)  # users: the even split, so the shards' users add up to the stage's
                return whole // n + (1 if i < whole % n else 0)

            stages = tuple(Stage(s.duration_s, part(s.target)) for s in shape.stages)  # type: ignore[attr-defined]
            fields["shape"] = Shape(shape.kind, stages)  # type: ignore[attr-defined]
    fields["think"] = parse_think(think) if think is not None else None
    if abort_grace is not None and not fields.get("abort_on_fail"):
        raise PlanError("--abort-grace needs --abort-on-fail")
    plan = Plan(
        thresholds=tuple(parse_threshold(t) for t in threshold or ()),
        abort_grace_s=parse_duration(abort_grace or "5s", "--abort-grace"),
        request=request,
        workers=workers if workers is not None else (os.cpu_count() or 1),
        duration_s=parse_duration(duration, "--duration") if duration is not None else None,
        timeout_s=parse_duration(timeout, "--timeout"),
        tls_verify=not insecure,
        warmup_s=parse_duration(warmup, "--warmup"),
        out_path=str(out) if out else None,
        command=_command_line(),
        **fields,  # type: ignore[arg-type]
    ).validate()
    if out is not None:
        check_writable(out)
    _check_junit(junit, plan)
    return plan


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise PlanError(f"--prometheus-port {text!r} is not PORT or HOST:PORT") from None
    if not 1 <= port <= 65535:
        raise PlanError(f"--prometheus-port {text!r}: the port must be from 1 to 65535")
    address = (host.strip("[]") or "127.0.0.1", port)
    import socket

    try:  # refused before any load is sent, not found out in a warning at the end
        with socket.create_server(address, family=socket.AF_INET6 if ":" in address[0] else socket.AF_INET):
            pass
    except OSError as e:
        raise PlanError(f"--prometheus-port {text!r}: cannot listen there: {e.strerror or e}") from None
    return address


def _split_for_shard(text: str, fields: dict, users_from_stages: bool = False) -> None:
    """--shard I/N: this box's share of connections, rate and requests (shard i of n gets the even split)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise PlanError(f"--shard {text!r} is not I/N, e.g. 0/4") from None
    if not 0 <= i < n <= 10_000:
        raise PlanError(f"--shard {text!r}: I must be from 0 to N-1")

    def share(total: int) -> int:
        return total // n + (1 if i < total % n else 0)

    connections = int(fields.get("connections", 64))  # type: ignore[call-overload]
    if connections < n and not users_from_stages:
        raise PlanError(f"--shard {text!r}: {connections} connections cannot be split {n} ways")
    fields["connections"] = max(1, share(connections))
    if fields.get("rate") is not None:
        fields["rate"] = float(fields["rate"]) / n  # type: ignore[arg-type]
    if fields.get("requests") is not None:
        fields["requests"] = share(int(fields["requests"]))  # type: ignore[call-overload]
        if fields["requests"] == 0:
            raise PlanError(f"--shard {text!r}: -n is smaller than the number of shards")
    fields["shard"] = (i, n)
    fields["seed"] = int(fields.get("seed", 0)) * 1_000_003 + i  # type: ignore[call-overload]


def _shape(
    stage: list[str] | None, name: str | None, duration: str | None, fields: dict, users_given: bool
) -> object:
    """--stage or --profile as a Shape (None for neither); a rate shape takes the place of -r."""
    if stage and name:
        raise PlanError("use either --stage or --profile, not both")
    rate = fields.get("rate")
    if stage:
        if duration is not None:
            raise PlanError("--stage sets the duration; drop -d/--duration")
        shape = parse_stages(stage)
        if shape is not None and shape.kind == "rate" and rate is not None:
            raise PlanError(f"--stage {stage[0]} sets the rate; drop -r/--rate")
        if shape is not None and shape.kind == "users" and users_given:
            raise PlanError(f"--stage {stage[0]} sets the users; drop -c (or -u)")
        return shape
    if name:
        if duration is None:
            raise PlanError("--profile needs -d/--duration: the time the whole shape takes")
        total = parse_duration(duration, "--duration")
        if rate is not None:
            fields["rate"] = None
            return profile(name, "rate", float(rate), total)  # type: ignore[arg-type]
        return profile(name, "users", float(fields.get("connections", 64)), total)  # type: ignore[arg-type]
    return None


def _body(text: str | None, path: Path | None) -> bytes:
    if text is not None and path is not None:
        raise PlanError("use either --body or --body-file, not both")
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as e:
            raise PlanError(f"--body-file {str(path)!r} cannot be read: {e.strerror or e}") from None
    return os.fsencode(text) if text is not None else b""


def _check_junit(junit: Path | None, plan: Plan) -> None:
    if junit is not None:
        if not plan.thresholds:
            raise PlanError("--junit needs at least one --threshold")
        check_writable(junit, "--junit")
    if plan.abort_on_fail and not plan.thresholds:
        raise PlanError("--abort-on-fail needs at least one --threshold")


@app.command()
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
    workers: WorkersOption = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure (default: 10s).")
    ] = None,
    requests: RequestsOption = None,
    rate: Annotated[float | None, typer.Option("-r", "--rate", help="Open model: requests/s.")] = None,
    arrival: ArrivalOption = "constant",
    burstiness: BurstinessOption = 1.0,
    header: HeaderOption = None,
    timeout: TimeoutOption = "120s",
    insecure: InsecureOption = False,
    warmup: Annotated[
        str, typer.Option("--warmup", help="Requests sent in this first period are not counted.")
    ] = "0s",
    out: OutOption = None,
    quiet: QuietOption = False,
    target_pid: TargetPidOption = None,
    seed: SeedOption = 0,
    threshold: ThresholdOption = None,
    abort_on_fail: AbortOnFailOption = False,
    abort_grace: AbortGraceOption = None,
    junit: JunitOption = None,
    stage: StageOption = None,
    profile: ProfileOption = None,
    think: ThinkOption = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    shard: ShardOption = None,
    start_at: StartAtOption = None,
    prometheus_port: PrometheusOption = None,
) -> None:
    """Load-test an LLM API that streams tokens: TTFT, ITL, TPOT, tokens/s, goodput."""
    from squall.plan import prompts as prompt_source
    from squall.plan.specs import LlmSpec, api_from_path, parse_goodput

    try:
        if prompts is not None and input_tokens is not None:
            raise PlanError("use either --prompts or --input-tokens, not both")
        if text_path != "choices.0.delta.content" and (api or api_from_path(url)) != "sse":
            raise PlanError("--text-path is for --api sse; chat, completions and dify read their own fields")
        out_spec = prompt_source.parse_size(output_tokens, "--output-tokens") if output_tokens else None
        if prompts is not None:
            chosen = prompt_source.load(prompts)
            if out_spec is not None:
                chosen = tuple(
                    replace(p, max_tokens=p.max_tokens or m.max_tokens)
                    for p, m in zip(
                        chosen, prompt_source.synthetic(len(chosen), (1, 0), out_spec, seed), strict=True
                    )
                )
        else:
            size = prompt_source.parse_size(input_tokens or "32", "--input-tokens")
            chosen = prompt_source.synthetic(1000, size, out_spec, seed)
        if shuffle:
            chosen = prompt_source.shuffled(chosen, seed)
        extra: dict[str, object] = {}
        if body_json is not None:
            try:
                extra = orjson.loads(body_json)
            except orjson.JSONDecodeError as e:
                raise PlanError(f"--body-json is not JSON: {e}") from None
            if not isinstance(extra, dict):
                raise PlanError("--body-json must be a JSON object")
        if (api_key or api_key_file) and any(
            h.partition(":")[0].strip().lower() == "authorization" for h in header or ()
        ):
            raise PlanError("--api-key/--api-key-file and -H 'Authorization: ...' both set the key; use one")
        if max_tokens is not None and output_tokens:
            raise PlanError("--max-tokens and --output-tokens both set the answer's length; use one")
        spec = LlmSpec(
            api=api or api_from_path(url),
            stream=not no_stream,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            body_json=tuple(extra.items()),
            prompts=chosen,
            api_keys=_api_keys(api_key, api_key_file),
            text_path=text_path,
            done_marker=done_marker,
            goodput=tuple(parse_goodput(g) for g in goodput or ()),
        )
        plan = _build_plan(
            RequestSpec(url=url, method="POST", headers=tuple(parse_header(h) for h in header or ())),
            workers=workers,
            duration=duration,
            timeout=timeout,
            insecure=insecure,
            warmup=warmup,
            out=out,
            connections=connections,
            requests=requests,
            rate=rate,
            arrival=arrival,
            burstiness=burstiness,
            quiet=quiet,
            target_pid=target_pid,
            seed=seed,
            llm=spec,
            threshold=threshold,
            abort_on_fail=abort_on_fail,
            abort_grace=abort_grace,
            junit=junit,
            stage=stage,
            profile=profile,
            think=think,
            shard=shard,
            start_at=start_at,
            prometheus_port=prometheus_port,
        )
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(execute(plan, junit, html, csv_path))


@app.command()
def scenario(
    file: Annotated[Path, typer.Argument(help="A scenario YAML file (see docs/scenarios.md).")],
    users: Annotated[
        int | None, typer.Option("-u", "--users", help="Virtual users (default: the file's users, else 10).")
    ] = None,
    workers: WorkersOption = None,
    duration: Annotated[
        str | None,
        typer.Option("-d", "--duration", help="How long (default: the file's duration, else 10s)."),
    ] = None,
    iterations: IterationsOption = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "-r", "--rate", help="Open model: iterations started per second (users cap concurrency)."
        ),
    ] = None,
    arrival: ArrivalOption = "constant",
    timeout: TimeoutOption = "30s",
    insecure: InsecureOption = False,
    warmup: Annotated[
        str, typer.Option("--warmup", help="Run this long first; iterations started in it are not counted.")
    ] = "0s",
    out: OutOption = None,
    quiet: QuietOption = False,
    target_pid: TargetPidOption = None,
    seed: SeedOption = 0,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="Added to the file's thresholds: 'p99<300ms', 'step.NAME.p99<1s'."),
    ] = None,
    abort_on_fail: AbortOnFailOption = False,
    abort_grace: AbortGraceOption = None,
    junit: JunitOption = None,
    stage: StageOption = None,
    profile: ProfileOption = None,
    think: ThinkOption = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    shard: ShardOption = None,
    start_at: StartAtOption = None,
    prometheus_port: PrometheusOption = None,
) -> None:
    """Run weighted multi-step user journeys from a YAML file; stats per step and per journey."""
    from squall.plan.scenario.model import load_scenario

    try:
        sc = load_scenario(file)
        if sc.think and think is None and (rate is not None or any(s.endswith("/s") for s in stage or ())):
            raise PlanError(
                f"{sc.source} sets think: {sc.think}, which paces users; with a rate the schedule starts "
                "iterations: remove think from the file, or drop -r"
            )
        # A shape on the command line (--stage or --profile) takes the place of the file's stages.
        stages = stage or (list(sc.stages) if profile is None else []) or None
        if stages and not stage:
            given = [o for o, v in (("-d/--duration", duration), ("-u/--users", users)) if v is not None]
            if given:
                raise PlanError(
                    f"the scenario file's stages set the users and the duration; drop {' and '.join(given)}, "
                    "or replace the stages with --stage or --profile"
                )
        if duration is None and sc.duration_s is not None and not stages:
            duration = f"{sc.duration_s}s"
        plan = _build_plan(
            RequestSpec(url=sc.base_url + "/"),
            workers=workers,
            duration=duration,
            timeout=timeout,
            insecure=insecure,
            warmup=warmup,
            out=out,
            connections=users,
            default_connections=sc.users or 10,
            requests=iterations,
            rate=rate,
            arrival=arrival,
            quiet=quiet,
            target_pid=target_pid,
            seed=seed,
            transport="aiohttp",
            scenario=sc,
            threshold=[*sc.thresholds, *(threshold or ())],
            abort_on_fail=abort_on_fail,
            abort_grace=abort_grace,
            junit=junit,
            stage=stages,
            profile=profile,
            think=think if think is not None else sc.think,
            shard=shard,
            start_at=start_at,
            prometheus_port=prometheus_port,
        )
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(execute(plan, junit, html, csv_path))


@app.command("py")
def py_workload(
    target: Annotated[str, typer.Argument(help="MODULE:FACTORY, e.g. examples.agent_sdk:workload")],
    users: Annotated[
        int | None,
        typer.Option("-c", "--concurrency", "-u", help="Virtual users, concurrent iterations (default 10)."),
    ] = None,
    workers: WorkersOption = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure (default: 10s).")
    ] = None,
    iterations: IterationsOption = None,
    rate: Annotated[
        float | None, typer.Option("-r", "--rate", help="Open model: iterations per second.")
    ] = None,
    arrival: ArrivalOption = ("constant"),
    timeout: TimeoutOption = "60s",
    warmup: Annotated[
        str, typer.Option("--warmup", help="Iterations started in this time are not counted.")
    ] = ("0s"),
    param: ParamOption = None,
    tracemalloc_on: TracemallocOption = False,
    out: OutOption = None,
    quiet: QuietOption = False,
    seed: SeedOption = 0,
    threshold: ThresholdOption = None,
    abort_on_fail: AbortOnFailOption = False,
    abort_grace: AbortGraceOption = None,
    junit: JunitOption = None,
    stage: StageOption = None,
    profile: ProfileOption = None,
    think: ThinkOption = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    shard: ShardOption = None,
    start_at: StartAtOption = None,
    prometheus_port: PrometheusOption = None,
) -> None:
    """Load-test a Python SDK or any async function in-process: same engine, models, shapes and stats.
    Phases timed with squall.sdk.timer() get their own histograms; exceptions count by type."""
    import itertools

    from squall.engine.workload.py import load_factory
    from squall.plan.specs import PySpec

    if os.getcwd() not in sys.path:
        sys.path.insert(
            0, os.getcwd()
        )  # MODULE is looked up from where squall was started, as python -m does
    try:
        factory = load_factory(target)
        grid = _params(param or [])
        cells = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        _check_params(target, factory, grid)

        def plan_for(cell: dict[str, Any], quiet_run: bool, out_path: Path | None) -> Plan:
            cell = dict(cell)
            if "concurrency" in cell and users is not None:
                raise PlanError("--param concurrency= sets -c for each cell; drop -c")
            conc = cell.pop("concurrency", users)
            return _build_plan(
                RequestSpec(url="http://127.0.0.1/"),
                workers=workers,
                duration=duration,
                timeout=timeout,
                insecure=False,
                warmup=warmup,
                out=out_path,
                connections=conc,
                default_connections=10,
                requests=iterations,
                rate=rate,
                arrival=arrival,
                quiet=quiet_run,
                seed=seed,
                py=PySpec(target, tuple(cell.items()), tracemalloc_on),
                threshold=threshold,
                abort_on_fail=abort_on_fail,
                abort_grace=abort_grace,
                junit=junit,
                stage=stage,
                profile=profile,
                think=think,
                shard=shard,
                start_at=start_at,
                prometheus_port=prometheus_port,
            )

        if len(cells) == 1:
            plan = plan_for(cells[0], quiet, out)
        else:
            if html is not None or csv_path is not None or junit is not None:
                raise PlanError(
                    "--html, --csv and --junit take one run; a --param matrix writes its one table to -o"
                )
            if shard is not None or start_at is not None or prometheus_port is not None:
                raise PlanError(
                    "--shard, --start-at and --prometheus-port take one run, not a --param matrix"
                )
            plans = [plan_for(cell, True, None) for cell in cells]
            if out is not None:
                check_writable(out)
    except PlanError as e:
        raise _fail(str(e)) from None
    if len(cells) == 1:
        raise typer.Exit(execute(plan, junit, html, csv_path))
    raise typer.Exit(_matrix(cells, plans, out))


def _params(texts: list[str]) -> dict[str, list[Any]]:
    """--param name=v1,v2 → {name: [values]}, numbers as numbers."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or not values:
            raise PlanError(f"--param {text!r} is not name=v1,v2,...")
        if name in grid:
            raise PlanError(f"--param {name} is given twice")
        grid[name] = [_number(v.strip()) for v in values.split(",")]
        if any(v == "" for v in grid[name]):
            raise PlanError(f"--param {text!r} has an empty value")
        if name == "concurrency" and not all(isinstance(v, int) and v >= 1 for v in grid[name]):
            raise PlanError("--param concurrency= takes whole numbers of at least 1")
    return grid


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _matrix(cells: list[dict[str, Any]], plans: list[Plan], out: Path | None) -> int:
    """Run every cell of a --param matrix, one after another; one table and one document for all.

    The document is written after every cell, so a matrix killed in cell 7 keeps the first 6. Ctrl-C or
    SIGTERM ends the cell that runs (kept, marked) and skips the rest (listed in `skipped`)."""
    from squall.engine import run as run_plan
    from squall.engine.supervisor import trap_stops
    from squall.report.console import print_matrix
    from squall.report.json import write_json

    rows: list[dict[str, Any]] = []
    stopped: list[str] = []

    def document() -> dict[str, Any]:
        doc = {"schema": "squall/matrix@1", "command": _command_line(), "cells": rows}
        if len(rows) < len(cells):
            doc["skipped"] = cells[len(rows) :]
        return doc

    with trap_stops(stopped.append):
        for cell, plan in zip(cells, plans, strict=True):
            if stopped:
                break
            typer.echo(f"matrix: {', '.join(f'{k}={v}' for k, v in cell.items())} ...", err=True)
            res = run_plan(plan)
            reason = res.doc["meta"].get("stop_reason", "")
            rows.append(
                {
                    "params": cell,
                    "summary": res.summary,
                    "valid": res.valid,
                    "warnings": res.warnings,
                    "thresholds": res.doc.get("thresholds", []),
                    "error_samples": res.doc.get("error_samples", {}),
                    "tracemalloc": res.doc.get("tracemalloc"),
                    "stop_reason": reason,
                }
            )
            if reason in ("interrupted", "terminated"):
                stopped.append(reason)
            if out is not None:
                write_json(document(), str(out))
    with signals_wait() as got:
        doc = document()
        print_matrix(doc)
        if out is not None:
            write_json(doc, str(out))
            typer.echo(f"matrix written to {out}", err=True)
    if any(not r["valid"] for r in rows):
        return EXIT_INVALID
    if stopped:
        return STOPPED_BY_SIGNAL[stopped[0]]
    return signal_exit(got, 1 if any(not t["ok"] for r in rows for t in r["thresholds"]) else 0)


def _check_params(target: str, factory: Any, grid: dict[str, list[Any]]) -> None:
    """Every --param (but concurrency, which is squall's) must be one the factory takes."""
    import inspect

    names = [n for n in grid if n != "concurrency"]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: its worker reports what it refuses
    try:
        sig.bind_partial(**dict.fromkeys(names))
    except TypeError:
        takes = ", ".join(p for p in sig.parameters if p != "self") or "no parameters"
        wrong = [n for n in names if n not in sig.parameters]
        raise PlanError(f"--param {', '.join(wrong) or names[0]}: {target} takes {takes}") from None


def _api_keys(keys: list[str] | None, path: Path | None) -> tuple[str, ...]:
    found = list(keys or ())
    if path is not None:
        try:
            found += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as e:
            raise PlanError(f"--api-key-file {str(path)!r} cannot be read: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise PlanError(f"--api-key-file {str(path)!r} is not UTF-8 text (one key per line)") from None
        if not found:
            raise PlanError(f"--api-key-file {str(path)!r} holds no key")
    if not found:
        env = os.environ.get("SQUALL_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if env:
            found.append(env)
    return tuple(found)


@app.command()
def serve(
    port: PortOption = 8080,
    host: HostOption = "127.0.0.1",
    delay: Annotated[
        str, typer.Option("--delay", help="Answer every request after this long, e.g. 20ms.")
    ] = "0s",
) -> None:
    """A fast built-in HTTP target: 'Hello, world', /status/N, /delay/MS, /bytes/N, /close, /reset, /echo.

    /echo answers JSON describing the request (id, method, path, headers, body, json) and X-Request-Id, for
    scenario journeys to extract from.
    """
    from squall.targets.serve import ServeOptions
    from squall.targets.serve import serve as serve_forever

    try:
        delay_s = parse_duration(delay, "--delay")
        if not 0 <= port <= 65535:
            raise PlanError(f"--port {port} is not a TCP port")
        if not host.strip():
            raise PlanError("--host is empty; give an address such as 127.0.0.1")
    except PlanError as e:
        raise _fail(str(e)) from None

    def ready(bound: int) -> None:
        typer.echo(f"squall serve listening on http://{host}:{bound}/", err=True)

    try:
        serve_forever(ServeOptions(host=host, port=port, delay_s=delay_s), ready)
    except OSError as e:
        raise _fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@app.command()
def mock(
    port: PortOption = 8000,
    host: HostOption = "127.0.0.1",
    ttft: Annotated[str, typer.Option("--ttft", help="Time to the first token.")] = "150ms",
    itl: Annotated[str, typer.Option("--itl", help="Time between tokens.")] = "20ms",
    tokens: Annotated[str, typer.Option("--tokens", help="Tokens per answer: N or N:stddev.")] = "64",
    jitter: Annotated[float, typer.Option("--jitter", help="Each delay times uniform(1-j, 1+j).")] = 0.0,
    fail_429: Annotated[
        float, typer.Option("--fail-429", help="Fraction answered 429 (Retry-After: 1).")
    ] = 0.0,
    fail_500: Annotated[float, typer.Option("--fail-500", help="Fraction answered 500.")] = 0.0,
    hang: Annotated[float, typer.Option("--hang", help="Fraction never answered.")] = 0.0,
    drop_mid_stream: Annotated[
        float, typer.Option("--drop-mid-stream", help="Fraction cut off halfway through the stream.")
    ] = 0.0,
    bad_chunk: Annotated[
        float, typer.Option("--bad-chunk", help="Fraction with one unparseable event.")
    ] = 0.0,
    empty: Annotated[float, typer.Option("--empty", help="Fraction with no content token.")] = 0.0,
    model: Annotated[str, typer.Option("--model", help="The model name it reports.")] = "squall-mock",
    seed: Annotated[int, typer.Option("--seed", help="Seed for token counts, jitter and faults.")] = 0,
) -> None:
    """A built-in OpenAI-compatible (and Dify-style) streaming server with fault injection, to aim at."""
    from squall.plan.prompts import parse_size
    from squall.targets.mock_llm import MockOptions, serve_mock

    try:
        n, sd = parse_size(tokens, "--tokens")
        if not host.strip():
            raise PlanError("--host is empty; give an address such as 127.0.0.1")
        opts = MockOptions(
            host=host,
            port=port,
            ttft_s=parse_duration(ttft, "--ttft"),
            itl_s=parse_duration(itl, "--itl"),
            tokens=n,
            tokens_stddev=sd,
            jitter=jitter,
            fail_429=fail_429,
            fail_500=fail_500,
            hang=hang,
            drop_mid_stream=drop_mid_stream,
            bad_chunk=bad_chunk,
            empty=empty,
            model=model,
            seed=seed,
        )
    except (PlanError, ValueError) as e:
        raise _fail(str(e)) from None

    def ready(bound: int) -> None:
        typer.echo(f"squall mock listening on http://{host}:{bound}/v1/chat/completions", err=True)

    try:
        serve_mock(opts, ready)
    except OSError as e:
        raise _fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@app.command()
def demo(
    duration: Annotated[str, typer.Option("-d", "--duration", help="How long to run.")] = "15s",
    concurrency: Annotated[int, typer.Option("-c", "--concurrency", help="Concurrent streams.")] = 64,
    out: Annotated[Path, typer.Option("-o", "--out", help="Write the JSON result here.")] = Path(
        "squall-demo.json"
    ),
    html: Annotated[Path, typer.Option("--html", help="Write the HTML report here.")] = Path(
        "squall-demo.html"
    ),
    quiet: QuietOption = False,
    csv_path: CsvOption = None,
) -> None:
    """Start the built-in mock LLM on a free loopback port and stream from it: TTFT, ITL, tokens/s."""
    import multiprocessing as mp

    from squall.plan.prompts import synthetic
    from squall.plan.specs import LlmSpec
    from squall.targets.mock_llm import MockOptions

    try:
        duration_s = parse_duration(duration, "--duration")
        check_writable(out)
        check_writable(html, "--html")
        if csv_path is not None:
            check_writable(csv_path, "--csv")
        if concurrency < 1:
            raise PlanError(f"-c/--concurrency must be at least 1 (got {concurrency})")
        base = Plan(
            request=RequestSpec(url="http://127.0.0.1:1/v1/chat/completions", method="POST"),
            connections=concurrency,
            workers=max(1, (os.cpu_count() or 2) - 1),
            duration_s=duration_s,
            out_path=str(out),
            quiet=quiet,
            command=_command_line(),
            llm=LlmSpec(api="chat", model="squall-mock", prompts=synthetic(200, (64, 16), None, 0)),
        )
        base.validate()  # every option checked before the mock starts
    except PlanError as e:
        raise _fail(str(e)) from None
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    opts = MockOptions(
        port=0, ttft_s=0.15, itl_s=0.02, tokens=64, tokens_stddev=16, jitter=0.1, fail_429=0.01
    )
    server = ctx.Process(target=_serve_detached, args=(opts, tx.send), name="squall-demo-mock", daemon=True)
    server.start()
    try:
        if not rx.poll(10):
            raise _fail("the built-in mock did not start")
        url = f"http://127.0.0.1:{rx.recv()}/v1/chat/completions"
        typer.echo(
            f"demo: the built-in mock LLM at {url} (pid {server.pid}: TTFT 150 ms, ITL 20 ms, 64±16 tokens, "
            f"1% 429s); {concurrency} concurrent streams for {duration}",
            err=True,
        )
        try:
            plan = replace(
                base, request=RequestSpec(url=url, method="POST"), target_pid=server.pid
            ).validate()
        except PlanError as e:
            raise _fail(str(e)) from None
        code = execute(plan, html=html, csv_path=csv_path)
    finally:
        server.terminate()
        server.join(5)
    raise typer.Exit(code)


def _target(
    url: str | None,
    llm_mode: bool,
    model: str,
    max_tokens: int | None,
    scenario_file: Path | None,
    method: str,
    header: list[str] | None,
    body: str | None,
    py_target: str | None = None,
    py_params: list[str] | None = None,
    tracemalloc_on: bool = False,
) -> tuple[RequestSpec, dict[str, object]]:
    """What hunt and soak load: a URL, an LLM endpoint (--llm), a scenario file (--scenario) or a Python
    workload (--py MODULE:FACTORY)."""
    from squall.plan.specs import LlmSpec, PySpec, api_from_path

    if (py_target is not None or scenario_file is not None) and (method.upper() != "GET" or header or body):
        what = "--py workload" if py_target is not None else "--scenario file"
        raise PlanError(f"-m, -H and -b shape one HTTP request; a {what} makes its own")
    if not llm_mode and (model != "default" or max_tokens is not None):
        raise PlanError("--model and --max-tokens are for --llm")
    if llm_mode and (method.upper() != "GET" or body):
        raise PlanError("--llm POSTs the LLM request itself: drop -m and -b")
    if py_target is not None:
        if url is not None or llm_mode or scenario_file is not None:
            raise PlanError("--py runs a Python workload: drop the URL, --llm and --scenario")
        from squall.engine.workload.py import load_factory

        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        factory = load_factory(py_target)
        grid = _params(py_params or [])
        if "concurrency" in grid:
            raise PlanError("--param concurrency= is for squall py; here -c (or the hunt) sets the users")
        if any(len(values) > 1 for values in grid.values()):
            raise PlanError("--param takes one value per name here; a matrix of values is for squall py")
        _check_params(py_target, factory, grid)
        spec = PySpec(py_target, tuple((k, v[0]) for k, v in grid.items()), tracemalloc_on)
        return RequestSpec(url="http://127.0.0.1/"), {"py": spec}
    if py_params or tracemalloc_on:
        raise PlanError("--param and --tracemalloc are for a Python workload (--py MODULE:FACTORY)")

    headers = tuple(parse_header(h) for h in header or ())
    if scenario_file is not None:
        from squall.plan.scenario.model import load_scenario

        if url is not None or llm_mode:
            raise PlanError("--scenario brings its own base_url: drop the URL and --llm")
        sc = load_scenario(scenario_file)
        return RequestSpec(url=sc.base_url + "/"), {"scenario": sc, "transport": "aiohttp", "think": sc.think}
    if url is None:
        raise PlanError("give the URL (or --scenario FILE)")
    if llm_mode:
        spec = LlmSpec(api=api_from_path(url), model=model, max_tokens=max_tokens)
        return RequestSpec(url=url, method="POST", headers=headers), {"llm": spec}
    return RequestSpec(url=url, method=method.upper(), headers=headers, body=_body(body, None)), {}


@app.command()
def hunt(
    url: Annotated[str | None, typer.Argument(help="The endpoint (not with --scenario).")] = None,
    slo: Annotated[
        list[str] | None,
        typer.Option("--slo", help="A bound every passing level meets: 'p99<300ms', 'errors<1%'."),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="concurrency (users) or rate (requests/s).")
    ] = "concurrency",
    start: Annotated[float, typer.Option("--start", help="The first level.")] = 8,
    max_level: Annotated[float, typer.Option("--max", help="The highest level to try.")] = 10_000,
    step_duration: Annotated[
        str, typer.Option("--step-duration", help="Measured time per level (after --warmup).")
    ] = "10s",
    warmup: Annotated[
        str, typer.Option("--warmup", help="Unmeasured time at the start of each level.")
    ] = "2s",
    growth: Annotated[float, typer.Option("--growth", help="Factor between levels while growing.")] = 2.0,
    resolution: Annotated[
        float, typer.Option("--resolution", help="Bisect until good and bad differ by this share.")
    ] = 0.05,
    connections: Annotated[
        int, typer.Option("-c", "--connections", help="Rate mode: connections to send over.")
    ] = 256,
    workers: WorkersOption = None,
    method: MethodOption = "GET",
    header: HeaderOption = None,
    body: BodyOption = None,
    timeout: TimeoutOption = "30s",
    insecure: InsecureOption = False,
    llm_mode: LlmModeOption = False,
    model: LlmModelOption = "default",
    max_tokens: LlmMaxTokensOption = None,
    scenario_file: Annotated[
        Path | None, typer.Option("--scenario", help="Hunt over a scenario file's users instead.")
    ] = None,
    py_target: Annotated[
        str | None, typer.Option("--py", help="Hunt over a Python workload's users: MODULE:FACTORY.")
    ] = None,
    param: ParamOption = None,
    tracemalloc_on: TracemallocOption = False,
    out: OutOption = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    prometheus_port: PrometheusOption = None,
    seed: SeedOption = 0,
) -> None:
    """Find the highest load that meets the SLOs: grow until one breaks or throughput stops rising, then
    bisect. Every level is a real run; a level where squall was the limit stops the hunt."""
    from squall.studies.hunt import Hunter, HuntSpec, exit_code

    try:
        if not slo:
            raise PlanError("a hunt needs at least one --slo, e.g. --slo 'p99<300ms'")
        spec = HuntSpec(
            mode=mode,
            start=start,
            max=max_level,
            growth=growth,
            resolution=resolution,
            step_s=parse_duration(step_duration, "--step-duration"),
            warmup_s=parse_duration(warmup, "--warmup"),
        )
        spec.validate()
        request, fields = _target(
            url,
            llm_mode,
            model,
            max_tokens,
            scenario_file,
            method,
            header,
            body,
            py_target,
            param,
            tracemalloc_on,
        )
        think_text = fields.pop("think", None)
        if think_text:
            fields["think"] = parse_think(str(think_text))
        if prometheus_port is not None:  # every level's run serves /metrics there in turn
            fields["prometheus"] = _listen_address(prometheus_port)
        base = Plan(
            request=request,
            connections=connections,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            timeout_s=parse_duration(timeout, "--timeout"),
            tls_verify=not insecure,
            thresholds=tuple(parse_threshold(t, "--slo") for t in slo),
            seed=seed,
            command=_command_line(),
            **fields,  # type: ignore[arg-type]
        ).validate()
        if out is not None:
            check_writable(out)
        for path, option in ((html, "--html"), (csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        distinct({"-o": out, "--html": html, "--csv": csv_path})
    except PlanError as e:
        raise _fail(str(e)) from None
    from squall.engine import run as run_plan
    from squall.report.console import print_hunt
    from squall.report.json import write_json

    def shown(step: dict) -> None:
        mark = "ok" if step["ok"] else "FAIL " + ", ".join(step["failed_slo"])
        if step["interrupted"]:
            mark = "interrupted (not judged)"
        elif step["lost"]:
            mark = "a worker was lost (not judged)"
        elif step["limited"]:
            mark = "generator limit"
        typer.echo(
            f"hunt: level {step['level']:g}: {step['rps']:,.1f} req/s, p99 {step['p99_ms']:.2f} ms, "
            f"{100 * step['error_rate']:.2f}% errors: {mark}",
            err=True,
        )
        if out is not None:  # the levels so far, so a hunt killed at level 7 keeps the first 6
            with signals_wait():
                write_json(hunter.document(hunter.partial()), str(out))

    hunter = Hunter(base, spec, run_plan, shown)
    found = _hunt_until_stopped(hunter)
    if not hunter.steps:
        typer.echo("hunt: stopped before the first level ended; nothing to write", err=True)
        raise typer.Exit(exit_code(found))
    with signals_wait() as got:
        doc = hunter.document(found)
        print_hunt(found)
        if out is not None:
            write_json(doc, str(out))
            typer.echo(f"result written to {out}", err=True)
        write_extras(doc, html, csv_path)
    raise typer.Exit(signal_exit(got, exit_code(found)))


def _hunt_until_stopped(hunter: Any) -> dict:
    """Run the hunt; Ctrl-C/SIGTERM between levels end it like one during a level: the levels run are kept."""
    from squall.engine.supervisor import RunError, trap_stops

    def stop(reason: str) -> None:
        hunter.interrupt = reason

    try:
        with trap_stops(stop):
            return hunter.hunt()
    except KeyboardInterrupt:
        return hunter.partial("interrupted")
    except PlanError as e:  # a level the plan rules refuse (too many connections, a rate too low...)
        raise _fail(f"hunt stopped at a level it cannot run: {e}") from None
    except RunError as e:
        typer.echo(f"squall: error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def soak(
    url: Annotated[str | None, typer.Argument(help="The endpoint (not with --scenario).")] = None,
    duration: Annotated[str, typer.Option("-d", "--duration", help="How long: hours, usually.")] = "1h",
    connections: Annotated[
        int, typer.Option("-c", "--connections", help="Connections (users) to hold the load with.")
    ] = 64,
    rate: Annotated[
        float | None, typer.Option("-r", "--rate", help="Open model: a steady rate instead of -c users.")
    ] = None,
    target_pid: Annotated[
        int | None, typer.Option("--target-pid", help="Sample this process: RSS, CPU, FDs, threads.")
    ] = None,
    target_cmd: Annotated[
        str | None, typer.Option("--target-cmd", help="Start this command, sample it, stop it at the end.")
    ] = None,
    leak_threshold: Annotated[
        float, typer.Option("--leak-threshold", help="MB/hour of RSS growth that counts as a leak.")
    ] = 10.0,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="How often the cumulative result is written to --out.")
    ] = "60s",
    hdr_log: Annotated[
        Path | None,
        typer.Option("--hdr-log", help="Append an HdrHistogram interval log (default: OUT.hlog)."),
    ] = None,
    warmup: Annotated[str, typer.Option("--warmup", help="Left out of the stats and the verdicts.")] = "1m",
    workers: WorkersOption = None,
    method: MethodOption = "GET",
    header: HeaderOption = None,
    body: BodyOption = None,
    timeout: TimeoutOption = "30s",
    insecure: InsecureOption = False,
    llm_mode: LlmModeOption = False,
    model: LlmModelOption = "default",
    max_tokens: LlmMaxTokensOption = None,
    scenario_file: Annotated[
        Path | None, typer.Option("--scenario", help="Soak with a scenario file's journeys.")
    ] = None,
    py_target: Annotated[
        str | None, typer.Option("--py", help="Soak a Python workload in-process: MODULE:FACTORY.")
    ] = None,
    param: ParamOption = None,
    tracemalloc_on: TracemallocOption = False,
    threshold: ThresholdOption = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Write the JSON result (and checkpoints) here.")
    ] = None,
    html: HtmlOption = None,
    csv_path: CsvOption = None,
    shard: ShardOption = None,
    start_at: StartAtOption = None,
    prometheus_port: PrometheusOption = None,
    quiet: QuietOption = False,
    seed: SeedOption = 0,
) -> None:
    """A long steady run that answers "does it leak or degrade?": the target's RSS slope (MB/h, with a
    confidence interval), latency and error drift, FD growth; checkpoints every minute so a killed run keeps
    what it measured."""
    import shlex
    import subprocess
    import time

    from squall.studies.soak import SoakSpec

    proc: subprocess.Popen[bytes] | None = None
    try:
        if target_pid is not None and target_cmd is not None:
            raise PlanError("use either --target-pid or --target-cmd, not both")
        spec = SoakSpec(leak_threshold, parse_duration(checkpoint, "--checkpoint"))
        spec.validate()
        request, fields = _target(
            url,
            llm_mode,
            model,
            max_tokens,
            scenario_file,
            method,
            header,
            body,
            py_target,
            param,
            tracemalloc_on,
        )
        file_think = fields.pop("think", None)
        log = hdr_log if hdr_log is not None else (out.with_suffix(".hlog") if out is not None else None)
        if log is not None:
            check_writable(log, "--hdr-log")
        if target_cmd is not None:
            argv = shlex.split(target_cmd)
            if not argv:
                raise PlanError("--target-cmd is empty")
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as e:
                raise PlanError(f"--target-cmd {argv[0]!r} cannot be started: {e.strerror or e}") from None
            time.sleep(0.5)
            if proc.poll() is not None:
                raise PlanError(f"--target-cmd exited at once with code {proc.returncode}")
            target_pid = proc.pid
        plan = _build_plan(
            request,
            workers=workers,
            duration=duration,
            timeout=timeout,
            insecure=insecure,
            warmup=warmup,
            out=out,
            connections=connections,
            rate=rate,
            quiet=quiet,
            target_pid=target_pid,
            seed=seed,
            threshold=threshold,
            abort_grace=None,
            junit=None,
            soak=spec,
            hdr_log=str(log) if log is not None else None,
            shard=shard,
            start_at=start_at,
            prometheus_port=prometheus_port,
            think=str(file_think) if file_think else None,
            **fields,
        )
    except PlanError as e:
        _stop(proc)
        raise _fail(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C while the --target-cmd started
        _stop(proc)
        raise typer.Exit(STOPPED_BY_SIGNAL["interrupted"]) from None
    try:
        code = execute(plan, None, html, csv_path)
    finally:
        _stop(proc)
    raise typer.Exit(code)


def _die_with_parent() -> None:
    """In a --target-cmd child, before exec: SIGTERM it when squall dies, even by SIGKILL (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _stop(proc: object) -> None:
    """Stop a --target-cmd process group: SIGTERM, then SIGKILL after 5 s."""
    import signal
    import subprocess

    if not isinstance(proc, subprocess.Popen) or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@app.command("plan")
def plan_capacity(
    rpm: Annotated[float | None, typer.Option("--rpm", help="Requests per minute the provider allows.")] = (
        None
    ),
    tpm: Annotated[float | None, typer.Option("--tpm", help="Tokens per minute the provider allows.")] = None,
    calls_per_action: Annotated[
        float, typer.Option("--calls-per-action", help="LLM calls one user action makes.")
    ] = 1.0,
    tokens_per_call: Annotated[
        float | None, typer.Option("--tokens-per-call", help="Input + output tokens per call.")
    ] = None,
    input_tokens: Annotated[float, typer.Option("--input-tokens", help="Input tokens per call.")] = 0.0,
    output_tokens: Annotated[float, typer.Option("--output-tokens", help="Output tokens per call.")] = 0.0,
    action_duration: Annotated[
        str, typer.Option("--action-duration", help="How long one action takes, its calls included.")
    ] = "10s",
    think: Annotated[str, typer.Option("--think", help="The pause between a user's actions.")] = "30s",
    headroom: Annotated[
        float, typer.Option("--headroom", help="Share of each limit to plan for (0.8 keeps 20 % spare).")
    ] = 0.8,
    json_out: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON instead.")] = False,
) -> None:
    """The most users a provider's rate limits carry, with the arithmetic shown (no load is sent)."""
    from squall.studies.capacity import Demand, capacity

    try:
        if tokens_per_call is not None and (input_tokens or output_tokens):
            raise PlanError("use either --tokens-per-call or --input-tokens/--output-tokens")
        for option, value in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens)):
            if not 0 <= value <= 1e9:  # (nan fails too)
                raise PlanError(f"{option} must be 0 or more (got {value:g})")
        demand = Demand(
            rpm=rpm,
            tpm=tpm,
            calls_per_action=calls_per_action,
            tokens_per_call=tokens_per_call if tokens_per_call is not None else input_tokens + output_tokens,
            action_s=parse_duration(action_duration, "--action-duration"),
            think_s=parse_duration(think, "--think"),
            headroom=headroom,
        )
        out = capacity(demand)
    except PlanError as e:
        raise _fail(str(e)) from None
    if json_out:
        typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo("\n".join(out["lines"]))


@app.command()
def report(
    result: Annotated[Path, typer.Argument(help="A JSON result written by -o.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-second series (and FILE.summary.csv) here.")
    ] = None,
) -> None:
    """Turn a JSON result into a self-contained HTML report (summary cards, linked charts, distributions)
    and/or CSV files."""
    try:
        if html is None and csv_path is None:
            raise PlanError("say what to write: --html FILE and/or --csv FILE")
        for path, option in ((html, "--html"), (csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        distinct({"RESULT": result, "--html": html, "--csv": csv_path})
        doc = read_result(result)
    except PlanError as e:
        raise _fail(str(e)) from None
    with _malformed_is_usage_error(f"{str(result)!r} cannot be reported"):
        write_extras(doc, html, csv_path)


@contextlib.contextmanager
def _malformed_is_usage_error(what: str) -> Iterator[None]:
    """A result whose inner fields have the wrong types: one line and exit 2, not a traceback."""
    import binascii

    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, binascii.Error) as e:
        why = f"{type(e).__name__}: {e}"
        raise _fail(f"{what}: a field of the input has the wrong type or is missing ({why})") from None


@app.command()
def merge(
    results: Annotated[list[Path], typer.Argument(help="Two or more JSON results (shards, boxes, runs).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Write the merged JSON result here.")] = Path(
        "merged.json"
    ),
    html: HtmlOption = None,
    csv_path: CsvOption = None,
) -> None:
    """Merge results exactly: counters add, histograms add bucket by bucket, seconds align on wall clock."""
    from squall.report.console import print_summary
    from squall.report.json import write_json
    from squall.result.merge import merge as merge_docs

    try:
        check_writable(out)
        for path, option in ((html, "--html"), (csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        distinct({"-o": out, "--html": html, "--csv": csv_path})
        for i, p in enumerate(results):
            distinct({f"result {i + 1}": p, "-o": out, "--html": html, "--csv": csv_path})
            if any(p.resolve() == q.resolve() for q in results[:i]):
                raise PlanError(f"{str(p)!r} is given twice: its requests would be counted twice")
        docs = [read_result(p) for p in results]
        with _malformed_is_usage_error("the results cannot be merged"):
            merged = merge_docs(docs, [str(p) for p in results])
    except PlanError as e:
        raise _fail(str(e)) from None
    write_json(merged, str(out))
    print_summary(merged)
    typer.echo(f"merged {len(docs)} results into {out}", err=True)
    write_extras(merged, html, csv_path)
    raise typer.Exit(1 if any(not t["ok"] for t in merged.get("thresholds", ())) else 0)


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="The baseline JSON result.")],
    current: Annotated[Path, typer.Argument(help="The JSON result to judge against it.")],
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
    from squall.report.console import print_compare
    from squall.result.compare import compare as compare_docs

    try:
        limit = _percent(max_regression, "--max-regression")
        noise_pct = _percent(noise, "--noise")
        docs = read_result(baseline), read_result(current)
        with _malformed_is_usage_error("the results cannot be compared"):
            out = compare_docs(*docs, limit, noise_pct)
    except PlanError as e:
        raise _fail(str(e)) from None
    if json_out:
        typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        print_compare(out, str(baseline), str(current))
    raise typer.Exit(1 if out["regression"] else 0)


def _percent(text: str, option: str) -> float:
    raw = text.strip().rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise PlanError(f"{option} {text!r} is not a percentage such as 10%") from None
    if not 0 <= value <= 10_000:
        raise PlanError(f"{option} {text!r} must be from 0% to 10000%")
    return value


def _serve_detached(opts: object, ready: object) -> None:
    # Its own session: a Ctrl-C at the terminal stops the load (which drains), not the target under it.
    from squall.targets.mock_llm import serve_mock

    os.setsid()
    serve_mock(opts, ready)  # type: ignore[arg-type]


def main() -> None:
    """Entry point for `python -m squall`."""
    app(prog_name="squall")
