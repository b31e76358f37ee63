"""The command line: parse flags, build a Plan, call the library, map the Result to an exit code."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from squall.plan import Plan, PlanError, RequestSpec, parse_duration, parse_header
from squall.result import EXIT_USAGE

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


def _command_line() -> str:
    # Arguments that are not valid UTF-8 arrive as surrogates; keep them printable and encodable.
    args = [a.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for a in sys.argv[1:]]
    return shlex.join(["squall", *args])


@app.command()
def run(
    url: Annotated[str, typer.Argument(help="The endpoint, e.g. http://127.0.0.1:8080/")],
    connections: Annotated[
        int, typer.Option("-c", "--connections", help="Connections, split over workers.")
    ] = 64,
    workers: Annotated[
        int | None, typer.Option("-w", "--workers", help="Worker processes [default: CPU cores].")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("-d", "--duration", help="How long to measure: 10s, 2m, 1h [default: 10s].")
    ] = None,
    requests: Annotated[
        int | None, typer.Option("-n", "--requests", help="Stop after exactly N completed requests.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("-r", "--rate", help="Open model: target requests/s over the whole run.")
    ] = None,
    arrival: Annotated[
        str, typer.Option("--arrival", help="Open-model arrivals: constant or poisson.")
    ] = "constant",
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
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", hidden=True, help="Record stats (off only to measure cost)."),
    ] = True,
) -> None:
    """Load-test one HTTP endpoint (closed model by default; open model with --rate)."""
    try:
        plan = Plan(
            request=RequestSpec(
                url=url,
                method=method.upper(),
                headers=tuple(parse_header(h) for h in header or ()),
                body=_body(body, body_file),
            ),
            connections=connections,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            duration_s=parse_duration(duration, "--duration") if duration is not None else None,
            requests=requests,
            rate=rate,
            arrival=arrival,
            timeout_s=parse_duration(timeout, "--timeout"),
            tls_verify=not insecure,
            warmup_s=parse_duration(warmup, "--warmup"),
            quiet=quiet,
            out_path=str(out) if out else None,
            target_pid=target_pid,
            transport=transport,
            seed=seed,
            record=record,
            command=_command_line(),
        ).validate()
        if out is not None:
            _check_writable(out)
    except PlanError as e:
        raise _fail(str(e)) from None
    raise typer.Exit(_execute(plan))


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


def _execute(plan: Plan) -> int:
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
    return result.exit_code()


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
def demo(
    duration: Annotated[str, typer.Option("-d", "--duration", help="How long to run.")] = "5s",
    connections: Annotated[int, typer.Option("-c", "--connections", help="Connections.")] = 64,
    rate: Annotated[float, typer.Option("-r", "--rate", help="Open-model rate, requests/s.")] = 1000.0,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON result here.")] = None,
) -> None:
    """Start the built-in target on a free loopback port and send it a steady open-model load."""
    import multiprocessing as mp

    from squall.targets.serve import ServeOptions

    try:
        duration_s = parse_duration(duration, "--duration")
    except PlanError as e:
        raise _fail(str(e)) from None
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    server = ctx.Process(
        target=_serve_detached, args=(ServeOptions(port=0), tx.send), name="squall-demo-target", daemon=True
    )
    server.start()
    try:
        if not rx.poll(10):
            raise _fail("the built-in target did not start")
        port = rx.recv()
        url = f"http://127.0.0.1:{port}/"
        typer.echo(f"demo: built-in target at {url} (pid {server.pid}); {duration} of load", err=True)
        try:
            plan = Plan(
                request=RequestSpec(url=url),
                connections=connections,
                workers=max(1, (os.cpu_count() or 2) - 1),
                rate=rate,
                duration_s=duration_s,
                target_pid=server.pid,
                out_path=str(out) if out else None,
                command=_command_line(),
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
    from squall.targets.serve import serve as serve_forever

    os.setsid()
    serve_forever(opts, ready)  # type: ignore[arg-type]


def main() -> None:
    """Entry point for `python -m squall`."""
    app(prog_name="squall")
