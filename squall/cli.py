"""The command line: parse flags, build a Plan, call the library, map the Result to an exit code."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import orjson
import typer

from squall.plan import Plan, PlanError, RequestSpec, parse_duration, parse_header
from squall.result import EXIT_USAGE
from squall.thresholds import parse_threshold

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
    return shlex.join(["squall", *args])


@app.command()
def run(
    url: Annotated[str, typer.Argument(help="The endpoint, e.g. http://127.0.0.1:8080/")],
    connections: Annotated[
        int, typer.Option("-c", "--connections", help="Connections, split over workers.")
    ] = 64,
    workers: Annotated[
        int | None, typer.Option("-w", "--workers", help="Worker processes (default: CPU cores).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure: 10s, 2m, 1h (default: 10s).")
    ] = None,
    requests: Annotated[
        int | None, typer.Option("-n", "--requests", help="Stop after exactly N completed requests.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("-r", "--rate", help="Open model: target requests/s over the whole run.")
    ] = None,
    arrival: Annotated[
        str, typer.Option("--arrival", help="Open-model arrivals: constant, poisson or gamma.")
    ] = "constant",
    burstiness: Annotated[
        float, typer.Option("--burstiness", help="Gamma shape: <1 bursty, >1 regular.")
    ] = 1.0,
    method: Annotated[str, typer.Option("-m", "--method", help="HTTP method.")] = "GET",
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")
    ] = None,
    body: Annotated[str | None, typer.Option("-b", "--body", help="Request body text.")] = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the request body from a file.")
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Per-request timeout.")] = "30s",
    insecure: Annotated[
        bool, typer.Option("-k", "--insecure", help="Do not verify the server's TLS certificate.")
    ] = False,
    warmup: Annotated[
        str, typer.Option("--warmup", help="Run this long first; requests sent in it are not counted.")
    ] = "0s",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON result here.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No live display.")] = False,
    target_pid: Annotated[
        int | None, typer.Option("--target-pid", help="Also sample this process: CPU %, RSS, FDs, threads.")
    ] = None,
    transport: Annotated[
        str,
        typer.Option("--transport", help="HTTP client: auto (raw unless aiohttp is needed), raw or aiohttp."),
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed for random arrivals.")] = 0,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="A bound the run must meet: 'p99<300ms', 'errors<1%'."),
    ] = None,
    abort_on_fail: Annotated[
        bool, typer.Option("--abort-on-fail", help="Stop early once a threshold fails for --abort-grace.")
    ] = False,
    abort_grace: Annotated[str, typer.Option("--abort-grace", help="How long a threshold may fail.")] = "5s",
    junit: Annotated[Path | None, typer.Option("--junit", help="Write thresholds as JUnit XML here.")] = None,
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
        )
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(_execute(plan, junit))


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
    abort_grace: str,
    junit: Path | None,
    **fields: object,
) -> Plan:
    """The validated plan from the options every load command shares; raises PlanError."""
    plan = Plan(
        thresholds=tuple(parse_threshold(t) for t in threshold or ()),
        abort_grace_s=parse_duration(abort_grace, "--abort-grace"),
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
        _check_writable(out)
    _check_junit(junit, plan)
    return plan


def _body(text: str | None, path: Path | None) -> bytes:
    if text is not None and path is not None:
        raise PlanError("use either --body or --body-file, not both")
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as e:
            raise PlanError(f"--body-file {str(path)!r} cannot be read: {e.strerror or e}") from None
    return os.fsencode(text) if text is not None else b""


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise PlanError(f"--out {str(path)!r} is a directory; give a file name")
    parent = path.resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise PlanError(f"--out {str(path)!r}: directory {str(parent)!r} does not exist or is not writable")


def _check_junit(junit: Path | None, plan: Plan) -> None:
    if junit is not None:
        if not plan.thresholds:
            raise PlanError("--junit needs at least one --threshold")
        _check_writable(junit)
    if plan.abort_on_fail and not plan.thresholds:
        raise PlanError("--abort-on-fail needs at least one --threshold")


def _execute(plan: Plan, junit: Path | None = None) -> int:
    from squall.engine import run as run_plan
    from squall.engine.supervisor import RunError
    from squall.report.console import print_summary

    try:
        result = run_plan(plan)
    except RunError as e:
        typer.echo(f"squall: error: {e}", err=True)
        return 1
    print_summary(result.doc)
    if plan.out_path:
        typer.echo(f"result written to {plan.out_path}", err=True)
    if junit is not None:
        from squall.report.junit import junit_xml

        junit.write_text(junit_xml(result.doc.get("thresholds", [])))
    return result.exit_code()


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
        str, typer.Option("--done-marker", help="--api sse: the data that ends a stream ('' for none).")
    ] = "[DONE]",
    goodput: Annotated[
        list[str] | None, typer.Option("--goodput", help="A bound every good request meets: 'ttft<500ms'.")
    ] = None,
    connections: Annotated[
        int, typer.Option("-c", "--concurrency", "--connections", help="Concurrent streams.")
    ] = 64,
    workers: Annotated[
        int | None, typer.Option("-w", "--workers", help="Worker processes (default: CPU cores).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure (default: 10s).")
    ] = None,
    requests: Annotated[
        int | None, typer.Option("-n", "--requests", help="Stop after exactly N requests.")
    ] = None,
    rate: Annotated[float | None, typer.Option("-r", "--rate", help="Open model: requests/s.")] = None,
    arrival: Annotated[str, typer.Option("--arrival", help="constant, poisson or gamma.")] = "constant",
    burstiness: Annotated[
        float, typer.Option("--burstiness", help="Gamma shape: <1 bursty, >1 regular.")
    ] = 1.0,
    header: Annotated[
        list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Per-request timeout.")] = "120s",
    insecure: Annotated[
        bool, typer.Option("-k", "--insecure", help="Do not verify TLS certificates.")
    ] = False,
    warmup: Annotated[
        str, typer.Option("--warmup", help="Requests sent in this first period are not counted.")
    ] = "0s",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON result here.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No live display.")] = False,
    target_pid: Annotated[int | None, typer.Option("--target-pid", help="Also sample this process.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for prompts, shuffling and arrivals.")] = 0,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="A bound the run must meet: 'p99<300ms', 'errors<1%'."),
    ] = None,
    abort_on_fail: Annotated[
        bool, typer.Option("--abort-on-fail", help="Stop early once a threshold fails for --abort-grace.")
    ] = False,
    abort_grace: Annotated[str, typer.Option("--abort-grace", help="How long a threshold may fail.")] = "5s",
    junit: Annotated[Path | None, typer.Option("--junit", help="Write thresholds as JUnit XML here.")] = None,
) -> None:
    """Load-test an LLM API that streams tokens: TTFT, ITL, TPOT, tokens/s, goodput."""
    from squall import prompts as prompt_source
    from squall.plan import LlmSpec, api_from_path, parse_goodput

    try:
        if prompts is not None and input_tokens is not None:
            raise PlanError("use either --prompts or --input-tokens, not both")
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
        )
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(_execute(plan, junit))


def _api_keys(keys: list[str] | None, path: Path | None) -> tuple[str, ...]:
    found = list(keys or ())
    if path is not None:
        try:
            found += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as e:
            raise PlanError(f"--api-key-file {str(path)!r} cannot be read: {e.strerror or e}") from None
        if not found:
            raise PlanError(f"--api-key-file {str(path)!r} holds no key")
    if not found:
        env = os.environ.get("SQUALL_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if env:
            found.append(env)
    return tuple(found)


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0 picks a free one).")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    delay: Annotated[
        str, typer.Option("--delay", help="Answer every request after this long, e.g. 20ms.")
    ] = "0s",
) -> None:
    """A fast built-in HTTP target: 'Hello, world', plus /status/N, /delay/MS, /bytes/N, /close, /reset."""
    from squall.targets.serve import ServeOptions
    from squall.targets.serve import serve as serve_forever

    try:
        delay_s = parse_duration(delay, "--delay")
        if not 0 <= port <= 65535:
            raise PlanError(f"--port {port} is not a TCP port")
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
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
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
    from squall.prompts import parse_size
    from squall.targets.mock_llm import MockOptions, serve_mock

    try:
        n, sd = parse_size(tokens, "--tokens")
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
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No live display.")] = False,
) -> None:
    """Start the built-in mock LLM on a free loopback port and stream from it: TTFT, ITL, tokens/s."""
    import multiprocessing as mp

    from squall.plan import LlmSpec
    from squall.prompts import synthetic
    from squall.targets.mock_llm import MockOptions

    try:
        duration_s = parse_duration(duration, "--duration")
        _check_writable(out)
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
            plan = Plan(
                request=RequestSpec(url=url, method="POST"),
                connections=concurrency,
                workers=max(1, (os.cpu_count() or 2) - 1),
                duration_s=duration_s,
                target_pid=server.pid,
                out_path=str(out),
                quiet=quiet,
                command=_command_line(),
                llm=LlmSpec(api="chat", model="squall-mock", prompts=synthetic(200, (64, 16), None, 0)),
            ).validate()
        except PlanError as e:
            raise _fail(str(e)) from None
        code = _execute(plan)
    finally:
        server.terminate()
        server.join(5)
    raise typer.Exit(code)


def _serve_detached(opts: object, ready: object) -> None:
    # Its own session: a Ctrl-C at the terminal stops the load (which drains), not the target under it.
    from squall.targets.mock_llm import serve_mock

    os.setsid()
    serve_mock(opts, ready)  # type: ignore[arg-type]


def main() -> None:
    """Entry point for `python -m squall`."""
    app(prog_name="squall")
