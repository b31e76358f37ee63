"""The studies made of runs: hunt and soak."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from squall.cli.options import (
    LLM_OPTIONS,
    TARGET_OPTIONS,
    bundled,
    concurrency,
    examples,
    load_command,
    threshold,
    timeout,
    usage_errors,
)
from squall.plan.build import LoadFlags, TargetFlags
from squall.plan.llm import LlmFlags
from squall.units import PlanError

if TYPE_CHECKING:
    from squall.plan.plan import Plan
    from squall.studies.hunt import HuntSpec

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
    "dashboard",
    "scrape",
    "scrape_metric",
    "transport",
    "source_ip",
    "connect_rate",
)
STUDY_TIMEOUT = timeout(
    "one request", str | None, " (default 30s); with --llm one stream (120s), with --py one iteration (60s)"
)
HUNT_EXAMPLES = examples(
    "squall hunt http://127.0.0.1:8080/ --threshold 'p99<300ms' --threshold 'errors<1%'",
    "squall hunt http://127.0.0.1:8000/v1/chat/completions --llm --prompts prompts.txt "
    "--api-key-file keys.txt --threshold 'ttft_p99<2s' --max 256",
    "squall hunt http://127.0.0.1:8080/api --mode rate --threshold 'p99<500ms' -c 512",
)
SOAK_EXAMPLES = examples(
    "squall soak http://127.0.0.1:8080/ -c 32 -d 2h --target-pid 4242 -o soak.json",
    "squall soak http://127.0.0.1:8000/v1/chat/completions --llm --prompts prompts.txt -c 8 -d 1h "
    "--target-cmd 'python -m myserver'",
)
SOAK_OMIT = ("arrival", "burstiness", "abort_on_fail", "abort_grace", "junit", "stage", "profile", "think")


def register(app: typer.Typer) -> None:
    """Add hunt and soak to `app`."""
    from squall.cli.options import LOAD_OPTIONS

    def with_target(body: Any) -> Any:
        return bundled("what", TargetFlags, TARGET_OPTIONS)(bundled("opts", LlmFlags, LLM_OPTIONS)(body))

    with_search = bundled("how", HuntFlags, HUNT_OPTIONS)
    load_command(
        app,
        "hunt",
        omit=tuple(k for k in LOAD_OPTIONS if k not in HUNT_FLAGS),
        defaults={"timeout": None},
        declared={"timeout": STUDY_TIMEOUT},
        epilog=HUNT_EXAMPLES,
    )(with_target(with_search(hunt)))
    load_command(
        app,
        "soak",
        omit=SOAK_OMIT,
        defaults={"duration": "1h", "warmup": "1m", "timeout": None},
        declared={
            "duration": Annotated[str, typer.Option("-d", "--duration", help="How long: hours, usually.")],
            "out": Annotated[
                Path | None, typer.Option("-o", "--out", help="Write the JSON result (and checkpoints) here.")
            ],
            "timeout": STUDY_TIMEOUT,
            "threshold": threshold("A bound the soak must meet: 'p99<300ms', 'errors<1%'.", "--slo"),
        },
        epilog=SOAK_EXAMPLES,
    )(with_target(soak))


@dataclass(frozen=True, slots=True)
class HuntFlags:
    """`squall hunt`'s own options as typed: the SLOs and how to search."""

    slo: tuple[str, ...] = ()
    mode: str = "concurrency"
    start: float | None = None  # 8, or --max when that is lower
    max_level: float = 10_000
    step_duration: str = "10s"
    warmup: str = "2s"
    growth: float = 2.0
    resolution: float = 0.05
    connections: int | None = None  # rate mode's connections (256 when not given)

    def spec(self) -> HuntSpec:
        """The search as the hunt takes it; raises PlanError."""
        from squall.studies.hunt import HuntSpec
        from squall.units import parse_duration

        if not self.slo:
            raise PlanError("a hunt needs at least one --threshold (or --slo), e.g. --threshold 'p99<300ms'")
        if self.connections is not None and self.mode == "concurrency":
            raise PlanError(
                f"-c {self.connections}: in concurrency mode each level sets the users (--start, --max); "
                "-c sets the connections of a rate hunt (--mode rate)"
            )
        spec = HuntSpec(
            mode=self.mode,
            start=self.start if self.start is not None else min(8.0, self.max_level),
            max=self.max_level,
            growth=self.growth,
            resolution=self.resolution,
            step_s=parse_duration(self.step_duration, "--step-duration"),
            warmup_s=parse_duration(self.warmup, "--warmup"),
        )
        spec.validate()
        return spec


HUNT_OPTIONS: dict[str, Any] = {
    "slo": threshold("A bound every passing level meets: 'p99<300ms', 'errors<1%'.", "--slo"),
    "mode": Annotated[str, typer.Option("--mode", help="concurrency (users) or rate (requests/s).")],
    "start": Annotated[
        float | None, typer.Option("--start", help="The first level (default 8, or --max if lower).")
    ],
    "max_level": Annotated[float, typer.Option("--max", help="The highest level to try.")],
    "step_duration": Annotated[
        str, typer.Option("--step-duration", help="Measured time per level (after --warmup).")
    ],
    "warmup": Annotated[str, typer.Option("--warmup", help="Unmeasured time at the start of each level.")],
    "growth": Annotated[float, typer.Option("--growth", help="Factor between levels while growing.")],
    "resolution": Annotated[
        float, typer.Option("--resolution", help="Bisect until good and bad differ by this share.")
    ],
    "connections": concurrency(
        "Rate mode: connections to send over (concurrency mode: each level sets them).", "--connections"
    ),
}


def hunt(
    url: Annotated[
        str | None, typer.Argument(metavar="URL", help="The endpoint (not with --scenario).")
    ] = None,
    *,
    how: HuntFlags,
    what: TargetFlags,
    opts: LlmFlags,
    flags: LoadFlags,
    min_samples: Annotated[
        int,
        typer.Option(
            "--min-samples",
            help="Answers every level needs before a verdict (percentile and error-rate SLOs need more).",
        ),
    ] = 20,
    max_extend: Annotated[
        float,
        typer.Option(
            "--max-extend", help="A level short of answers runs again, for at most this many step durations."
        ),
    ] = 4.0,
) -> None:
    """Find the highest load that meets the SLOs: grow until one breaks or throughput stops rising, then
    bisect. Every level is a real run; a level where squall was the limit stops the hunt."""
    from dataclasses import replace

    from squall.plan import build
    from squall.units import check_writable, distinct

    with usage_errors():
        spec = how.spec()
        # The hunt writes -o itself (the levels so far after each one); the levels run quiet.
        levels = replace(flags, out=None, quiet=True, threshold=how.slo)
        users = how.connections if how.connections is not None else 256
        base = build.study_plan(url, what, levels, users, opts=opts, threshold_option="--threshold")
        for path, option in ((flags.out, "--out"), (flags.html, "--html"), (flags.csv_path, "--csv")):
            if path is not None:
                check_writable(path, option)
        distinct({"-o": flags.out, "--html": flags.html, "--csv": flags.csv_path})
    raise typer.Exit(_hunt(base, spec, flags, min_samples, max_extend))


def _hunt(
    base: Plan, spec: HuntSpec, flags: LoadFlags, min_samples: int = 20, max_extend: float = 4.0
) -> int:
    """Run the hunt (a line per level unless quiet, -o rewritten after each), print its table, write the
    files asked for; return the exit code."""
    from dataclasses import replace

    from squall.engine import run as run_plan
    from squall.engine.supervisor import RunError
    from squall.report.outputs import EXIT_UNWRITTEN, signal_exit, signals_wait, write_extras
    from squall.report.tables import print_hunt
    from squall.studies.hunt import Hunter, exit_code, hunt_until_stopped

    def shown(step: dict[str, Any]) -> None:
        if not flags.quiet:
            typer.echo(_level_line(step), err=True)
        if flags.out is not None:  # the levels so far, so a hunt killed at level 7 keeps the first 6
            with signals_wait():
                if not _write(hunter.document(hunter.partial()), flags.out):
                    unwritten.append("-o")

    unwritten: list[str] = []
    with usage_errors():
        hunter = Hunter(base, replace(spec, min_samples=min_samples, max_extend=max_extend), run_plan, shown)
        try:
            found = hunt_until_stopped(hunter)
        except RunError as e:
            from squall.redact import redact_text

            typer.echo(f"squall: error: {redact_text(str(e))}", err=True)
            return 1
    if not hunter.steps:
        typer.echo("hunt: stopped before the first level ended; nothing to write", err=True)
        return exit_code(found)
    with signals_wait() as got:
        doc = hunter.document(found)
        print_hunt(found)
        if flags.out is not None:
            if _write(doc, flags.out):
                typer.echo(f"result written to {flags.out}", err=True)
            else:
                unwritten.append("-o")
        unwritten += write_extras(doc, flags.html, flags.csv_path)
    return signal_exit(got, EXIT_UNWRITTEN if unwritten else exit_code(found))


def _level_line(step: dict[str, Any]) -> str:
    from squall.report.tables import fmt_ms, step_verdict

    mark = step_verdict(step, short=True)
    bound = step.get("errors_bound_pct")
    errors = f"{100 * step['error_rate']:.2f}% errors"
    if bound is not None:
        errors += f" (95% CI {bound[0]:.2f}-{bound[1]:.2f}%)"
    ran = f" in {step['duration_s']:.1f}s (run again for longer)" if step.get("extended") else ""
    return (
        f"hunt: level {step['level']:g}: n={step['requests']:,}{ran}, {step['rps']:,.1f} req/s, "
        f"p99 {fmt_ms(step['p99_ms'])}, {errors}: {mark}"
    )


def _write(doc: dict[str, Any], path: Path) -> bool:
    """Write a hunt document; False (and an error line) when the file could not be written."""
    from squall.report.json import write_json

    try:
        write_json(doc, str(path))
    except OSError as e:
        typer.echo(f"squall: error: could not write -o {path}: {e.strerror or e}", err=True)
        return False
    return True


def soak(
    url: Annotated[
        str | None, typer.Argument(metavar="URL", help="The endpoint (not with --scenario).")
    ] = None,
    connections: concurrency("Concurrent requests (connections, users) to hold.", "--connections") = 64,
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
    opts: LlmFlags,
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
    from squall.studies.soak import parse_target_cmd, target_process
    from squall.units import check_writable, parse_duration

    with usage_errors():
        if flags.target_pid is not None and target_cmd is not None:
            raise PlanError("use either --target-pid or --target-cmd, not both")
        if target_cmd is not None:
            parse_target_cmd(target_cmd)  # checked before the plan; started once it holds
        spec = SoakSpec(leak_threshold, parse_duration(checkpoint, "--checkpoint"))
        spec.validate()
        if flags.out is not None:
            check_writable(flags.out, "--out")  # before OUT.hlog is made from it ('' is the directory .)
        log = hdr_log if hdr_log is not None else flags.out.with_suffix(".hlog") if flags.out else None
        if log is not None:
            check_writable(log, "--hdr-log")
        plan = build.study_plan(
            url,
            what,
            flags,
            connections,
            opts=opts,
            soak=spec,
            hdr_log=log and str(log),
            target_given=target_cmd is not None,
        )
    try:
        with usage_errors(), target_process(target_cmd) as pid:  # started once the plan holds
            code = execute(
                plan if pid is None else replace(plan, target_pid=pid), None, flags.html, flags.csv_path
            )
    except KeyboardInterrupt:  # Ctrl-C while the --target-cmd started
        raise typer.Exit(STOPPED_BY_SIGNAL["interrupted"]) from None
    raise typer.Exit(code)
