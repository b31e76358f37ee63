"""The studies made of runs: hunt and soak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from squall.cli.options import TARGET_OPTIONS, bundled, fail, load_command
from squall.plan.build import LoadFlags, TargetFlags

HUNT_FLAGS = (
    "workers",
    "timeout",
    "insecure",
    "out",
    "quiet",
    "seed",
    "html",
    "csv_path",
    "prometheus_port",
    "transport",
)
SOAK_OMIT = ("arrival", "burstiness", "abort_on_fail", "abort_grace", "junit", "stage", "profile", "think")


def register(app: typer.Typer) -> None:
    """Add hunt and soak to `app`."""
    from squall.cli.options import LOAD_OPTIONS

    with_target = bundled("what", TargetFlags, TARGET_OPTIONS)
    load_command(app, "hunt", omit=tuple(k for k in LOAD_OPTIONS if k not in HUNT_FLAGS))(with_target(hunt))
    load_command(
        app,
        "soak",
        omit=SOAK_OMIT,
        defaults={"duration": "1h", "warmup": "1m"},
        declared={
            "duration": Annotated[str, typer.Option("-d", "--duration", help="How long: hours, usually.")],
            "out": Annotated[
                Path | None, typer.Option("-o", "--out", help="Write the JSON result (and checkpoints) here.")
            ],
        },
    )(with_target(soak))


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
    *,
    what: TargetFlags,
    flags: LoadFlags,
) -> None:
    """Find the highest load that meets the SLOs: grow until one breaks or throughput stops rising, then
    bisect. Every level is a real run; a level where squall was the limit stops the hunt."""
    from dataclasses import replace

    from squall.engine import run as run_plan
    from squall.engine.supervisor import RunError
    from squall.plan import build
    from squall.report.outputs import signal_exit, signals_wait, write_extras
    from squall.studies.hunt import Hunter, HuntSpec, exit_code, hunt_until_stopped
    from squall.units import PlanError, check_writable, distinct, parse_duration

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
        request, fields = build.target(url, what)
        think = fields.pop("think", None)
        # The hunt writes -o itself (the levels so far after each one); the levels run quiet.
        level_flags = replace(
            flags, out=None, quiet=True, threshold=tuple(slo), think=str(think) if think else None
        )
        base = build.build(request, level_flags, connections=connections, threshold_option="--slo", **fields)
        if flags.out is not None:
            check_writable(flags.out)
        for path, option in ((flags.html, "--html"), (flags.csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        distinct({"-o": flags.out, "--html": flags.html, "--csv": flags.csv_path})
    except PlanError as e:
        raise fail(str(e)) from None

    def shown(step: dict[str, Any]) -> None:
        if not flags.quiet:
            typer.echo(_level_line(step), err=True)
        if flags.out is not None:  # the levels so far, so a hunt killed at level 7 keeps the first 6
            with signals_wait():
                _write(hunter.document(hunter.partial()), flags.out)

    hunter = Hunter(base, spec, run_plan, shown)
    try:
        found = hunt_until_stopped(hunter)
    except PlanError as e:
        raise fail(str(e)) from None
    except RunError as e:
        typer.echo(f"squall: error: {e}", err=True)
        raise typer.Exit(1) from None
    if not hunter.steps:
        typer.echo("hunt: stopped before the first level ended; nothing to write", err=True)
        raise typer.Exit(exit_code(found))
    from squall.report.tables import print_hunt

    with signals_wait() as got:
        doc = hunter.document(found)
        print_hunt(found)
        if flags.out is not None:
            _write(doc, flags.out)
            typer.echo(f"result written to {flags.out}", err=True)
        write_extras(doc, flags.html, flags.csv_path)
    raise typer.Exit(signal_exit(got, exit_code(found)))


def _level_line(step: dict[str, Any]) -> str:
    mark = "ok" if step["ok"] else "FAIL " + ", ".join(step["failed_slo"])
    if step["interrupted"]:
        mark = "interrupted (not judged)"
    elif step["lost"]:
        mark = "a worker was lost (not judged)"
    elif step["limited"]:
        mark = "generator limit"
    return (
        f"hunt: level {step['level']:g}: {step['rps']:,.1f} req/s, p99 {step['p99_ms']:.2f} ms, "
        f"{100 * step['error_rate']:.2f}% errors: {mark}"
    )


def _write(doc: dict[str, Any], path: Path) -> None:
    from squall.report.json import write_json

    write_json(doc, str(path))


def soak(
    url: Annotated[str | None, typer.Argument(help="The endpoint (not with --scenario).")] = None,
    connections: Annotated[
        int, typer.Option("-c", "--connections", help="Connections (users) to hold the load with.")
    ] = 64,
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
    *,
    what: TargetFlags,
    flags: LoadFlags,
) -> None:
    """A long steady run that answers "does it leak or degrade?": the target's RSS slope (MB/h, with a
    confidence interval), latency and error drift, FD growth; checkpoints every minute so a killed run keeps
    what it measured."""
    from dataclasses import replace

    from squall.cli.execute import execute
    from squall.plan import build
    from squall.plan.specs import SoakSpec
    from squall.result.document import STOPPED_BY_SIGNAL
    from squall.studies.soak import start_target, stop_target
    from squall.units import PlanError, check_writable, parse_duration

    proc = None
    try:
        if flags.target_pid is not None and target_cmd is not None:
            raise PlanError("use either --target-pid or --target-cmd, not both")
        spec = SoakSpec(leak_threshold, parse_duration(checkpoint, "--checkpoint"))
        spec.validate()
        request, fields = build.target(url, what)
        file_think = fields.pop("think", None)
        out = flags.out
        log = hdr_log if hdr_log is not None else (out.with_suffix(".hlog") if out is not None else None)
        if log is not None:
            check_writable(log, "--hdr-log")
        if target_cmd is not None:
            proc = start_target(target_cmd)
            flags = replace(flags, target_pid=proc.pid)
        flags = replace(flags, think=str(file_think) if file_think else None)
        plan = build.build(
            request,
            flags,
            connections=connections,
            soak=spec,
            hdr_log=str(log) if log is not None else None,
            **fields,
        )
    except PlanError as e:
        stop_target(proc)
        raise fail(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C while the --target-cmd started
        stop_target(proc)
        raise typer.Exit(STOPPED_BY_SIGNAL["interrupted"]) from None
    try:
        code = execute(plan, None, flags.html, flags.csv_path)
    finally:
        stop_target(proc)
    raise typer.Exit(code)
