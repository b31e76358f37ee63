"""Every option more than one command takes, declared once, and the bundles that hand them to a command."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any

import typer

from squall.plan.build import LoadFlags
from squall.plan.load import PROFILE_HELP
from squall.result.document import EXIT_USAGE

Workers = Annotated[
    int | None, typer.Option("-w", "--workers", help="Worker processes (default: CPU cores).")
]
Duration = Annotated[
    str | None, typer.Option("-d", "--duration", help="How long to measure: 10s, 2m, 1h (default: 10s).")
]
Rate = Annotated[float | None, typer.Option("-r", "--rate", help="Open model: target requests/s.")]


def concurrency(help: str, *aliases: str) -> Any:
    """The -c/--concurrency option, its help in the command's own words; `aliases` are the older spellings
    the command's users type (--connections, -u/--users)."""
    return Annotated[int | None, typer.Option("-c", "--concurrency", *aliases, help=help)]


def count(unit: str) -> Any:
    """The -n option: stop after N completed UNITs (requests or iterations); --requests and --iterations are
    both accepted everywhere, as hey/oha and k6 users type them."""
    return Annotated[
        int | None,
        typer.Option("-n", "--requests", "--iterations", help=f"Stop after exactly N completed {unit}."),
    ]


def timeout(unit: str, kind: Any = str, note: str = "") -> Any:
    """The --timeout option, its help naming what one UNIT is for this command (`kind` str | None where the
    default depends on what is loaded, which `note` says)."""
    return Annotated[kind, typer.Option("--timeout", help=f"How long {unit} may take{note}.")]


Requests = count("requests")
Iterations = count("iterations")
Arrival = Annotated[str, typer.Option("--arrival", help="Open-model arrivals: constant, poisson or gamma.")]
Burstiness = Annotated[float, typer.Option("--burstiness", help="Gamma shape: <1 bursty, >1 regular.")]
Method = Annotated[str, typer.Option("-m", "--method", help="HTTP method.")]
Header = Annotated[list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")]
Body = Annotated[str | None, typer.Option("-b", "--body", help="Request body text.")]
BodyFile = Annotated[Path | None, typer.Option("--body-file", help="Read the request body from a file.")]
Timeout = timeout("one request")
Insecure = Annotated[
    bool, typer.Option("-k", "--insecure", help="Do not verify the server's TLS certificate.")
]
Warmup = Annotated[
    str, typer.Option("--warmup", help="Run this long first; what is sent in it is not counted.")
]
Out = Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON result here.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No live display.")]
TargetPid = Annotated[
    int | None, typer.Option("--target-pid", help="Also sample this process: CPU %, RSS, FDs, threads.")
]
Seed = Annotated[
    int, typer.Option("--seed", help="Seed for every random choice: arrivals, prompts, journeys, think time.")
]


def threshold(help: str, *aliases: str) -> Any:
    """The repeatable --threshold option (hunt and soak also take it as --slo)."""
    return Annotated[list[str] | None, typer.Option("--threshold", *aliases, help=help)]


Threshold = threshold("A bound the run must meet: 'p99<300ms', 'errors<1%'.")
AbortOnFail = Annotated[
    bool, typer.Option("--abort-on-fail", help="Stop early once a threshold fails for --abort-grace.")
]
AbortGrace = Annotated[
    str | None, typer.Option("--abort-grace", help="How long a threshold may fail (default: 5s).")
]
Junit = Annotated[Path | None, typer.Option("--junit", help="Write thresholds as JUnit XML here.")]
Stage = Annotated[
    list[str] | None,
    typer.Option(
        "--stage",
        help="DURATION:TARGET, repeatable: linear from the previous target (0 first). 30s:100 = users "
        "(closed model, instead of -c), 30s:200/s = requests (scenario: iterations)/s (open model). "
        "The stages set the duration.",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option("--profile", help=f"A preset shape up to -c users or -r per s over -d. {PROFILE_HELP}."),
]
Think = Annotated[
    str | None,
    typer.Option("--think", help="Pause between a user's requests: 1s-5s (uniform), 2s, or exp:2s (mean)."),
]
Html = Annotated[
    Path | None,
    typer.Option("--html", help="Also write a self-contained HTML report (charts work offline) here."),
]
Csv = Annotated[
    Path | None,
    typer.Option("--csv", help="Also write the per-second series as CSV here (and FILE.summary.csv)."),
]
Shard = Annotated[
    str | None,
    typer.Option("--shard", help="I/N, I from 0: this box runs shard I of N (its share of -c, -r and -n)."),
]
StartAt = Annotated[
    float | None,
    typer.Option(
        "--start-at", help="Unix time (s) at which to start the load, so every shard starts together."
    ),
]
Prometheus = Annotated[
    str | None,
    typer.Option(
        "--prometheus-port", help="Serve live /metrics (Prometheus text) on PORT or HOST:PORT (127.0.0.1)."
    ),
]
DashboardOpt = Annotated[
    str | None,
    typer.Option(
        "--dashboard",
        help="Serve a live page (charts each second, stop, change users or rate) and its JSON API on PORT or "
        "HOST:PORT (127.0.0.1; any other address gets a random token in the printed URL).",
    ),
]
ScrapeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--scrape",
        help="Read the target's Prometheus metrics at URL once a second (repeatable), e.g. vLLM's /metrics: "
        "into the series, the result (target_metrics), the report and the dashboard.",
    ),
]
ScrapeMetric = Annotated[
    list[str] | None,
    typer.Option(
        "--scrape-metric",
        help="Keep only the --scrape series whose name matches GLOB (repeatable; default all, at most 200).",
    ),
]
LlmMode = Annotated[
    bool, typer.Option("--llm", help="URL is an LLM endpoint: stream answers as `squall llm` does.")
]
Port = Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0 picks a free one).")]
Host = Annotated[str, typer.Option("--host", help="Address to bind.")]
Param = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="name=v1,v2,... for the Python workload's factory (py: concurrency= sets -c; several values "
        "make a matrix).",
    ),
]
Tracemalloc = Annotated[
    bool,
    typer.Option(
        "--tracemalloc", help="Python workload: the allocation sites that grew most in each worker."
    ),
]

Transport = Annotated[
    str,
    typer.Option(
        "--transport",
        help="HTTP client: auto (raw; aiohttp for scenarios), raw or aiohttp.",
    ),
]
SourceIp = Annotated[
    list[str] | None,
    typer.Option(
        "--source-ip",
        help="Local addresses to connect from, round robin: 10.0.0.5,10.0.0.6 or 127.0.0.2-127.0.0.9 "
        "(repeatable). Each address has its own ephemeral ports toward the target; a loopback target is "
        "spread over 127.0.0.x by itself when one address has too few.",
    ),
]
ConnectRate = Annotated[
    float | None,
    typer.Option(
        "--connect-rate",
        help="Connections the raw transport opens per second before the load starts (for at most 25 s), over "
        "all workers (default: 2000/s per worker). Set-up is not part of the measured time.",
    ),
]

# The declaration of each LoadFlags field (its default is the field's; a tuple field is a repeatable option).
LOAD_OPTIONS: dict[str, Any] = {
    "workers": Workers,
    "duration": Duration,
    "rate": Rate,
    "arrival": Arrival,
    "burstiness": Burstiness,
    "timeout": Timeout,
    "insecure": Insecure,
    "warmup": Warmup,
    "out": Out,
    "quiet": Quiet,
    "target_pid": TargetPid,
    "seed": Seed,
    "threshold": Threshold,
    "abort_on_fail": AbortOnFail,
    "abort_grace": AbortGrace,
    "junit": Junit,
    "stage": Stage,
    "profile": Profile,
    "think": Think,
    "html": Html,
    "csv_path": Csv,
    "shard": Shard,
    "start_at": StartAt,
    "prometheus_port": Prometheus,
    "dashboard": DashboardOpt,
    "scrape": ScrapeOpt,
    "scrape_metric": ScrapeMetric,
    "transport": Transport,
    "source_ip": SourceIp,
    "connect_rate": ConnectRate,
}


TARGET_OPTIONS: dict[str, Any] = {
    "method": Method,
    "header": Header,
    "body": Body,
    "body_file": BodyFile,
    "llm": LlmMode,
    "scenario": Annotated[
        Path | None, typer.Option("--scenario", help="Load a scenario file's journeys instead.")
    ],
    "py": Annotated[str | None, typer.Option("--py", help="Load a Python workload instead: MODULE:FACTORY.")],
    "param": Param,
    "tracemalloc": Tracemalloc,
}

_LLM = "LLM requests (hunt, soak: with --llm)"


def _llm(kind: Any, *names: str, help: str) -> Any:
    return Annotated[kind, typer.Option(*names, help=help, rich_help_panel=_LLM)]


# The declaration of each LlmFlags field: `squall llm`'s options, and hunt's and soak's with --llm.
LLM_OPTIONS: dict[str, Any] = {
    "api": _llm(
        str | None,
        "--api",
        help="chat, completions, responses, anthropic, dify or sse (default: guessed from the path).",
    ),
    "no_stream": _llm(bool, "--no-stream", help="Ask for plain JSON answers."),
    "model": _llm(str, "--model", help="The model field of each request."),
    "max_tokens": _llm(int | None, "--max-tokens", help="max_tokens of each request."),
    "temperature": _llm(float | None, "--temperature", help="Sampling temperature."),
    "body_json": _llm(str | None, "--body-json", help="Extra JSON object merged into every request body."),
    "prompts": _llm(Path | None, "--prompts", help=".txt (one per line) or .jsonl (prompt or messages)."),
    "input_tokens": _llm(str | None, "--input-tokens", help="Synthetic prompts of N[:stddev] tokens."),
    "output_tokens": _llm(str | None, "--output-tokens", help="max_tokens drawn from N[:stddev] per prompt."),
    "shuffle": _llm(bool, "--shuffle", help="Prompts in a seeded random order."),
    "api_key": _llm(
        list[str] | None,
        "--api-key",
        help="API key (repeatable; default: SQUALL_API_KEY, else OPENAI_API_KEY).",
    ),
    "api_key_file": _llm(Path | None, "--api-key-file", help="API keys, one per line."),
    "key_per": _llm(
        str,
        "--key-per",
        help="With several keys: 'request' (each request the next key; every key meets every prompt) or "
        "'user' (each user keeps one key all run, users spread evenly over the keys).",
    ),
    "text_path": _llm(str, "--text-path", help="--api sse: dotted JSON path of the text."),
    "done_marker": _llm(
        str, "--done-marker", help="The data event that ends a stream (chat, completions, sse; '' for none)."
    ),
    "goodput": _llm(list[str] | None, "--goodput", help="A bound every good request meets: 'ttft<500ms'."),
    "turns": _llm(
        int | None,
        "--turns",
        help="User turns per conversation: each turn carries the history (the answers as received).",
    ),
    "max_inflight": _llm(int | None, "--max-inflight", help="Cap on requests in flight across all sessions."),
    "dataset": _llm(Path | None, "--dataset", help="Prompts or conversations: ShareGPT, OpenAI messages."),
    "dataset_format": _llm(str, "--dataset-format", help="auto, sharegpt, openai or prompts."),
    "dataset_sample": _llm(int | None, "--dataset-sample", help="Send N records of the dataset (by --seed)."),
    "exact_output": _llm(
        bool,
        "--exact-output",
        help="Also send min_tokens = max_tokens and ignore_eos (vLLM, SGLang); only when a max_tokens is "
        "sent (--max-tokens, --output-tokens or a dataset's).",
    ),
    "trace": _llm(
        Path | None, "--trace", help="Replay a trace: Mooncake JSONL or CSV timestamp,input,output."
    ),
    "trace_speed": _llm(float, "--trace-speed", help="Replay the trace this many times as fast."),
    "block_tokens": _llm(int, "--block-tokens", help="Tokens per trace hash_id block (shared prefixes)."),
    "prefix_tokens": _llm(int | None, "--prefix-tokens", help="A shared system prefix of N tokens per user."),
    "prefixes": _llm(int | None, "--prefixes", help="K distinct shared prefixes (each user bound to one)."),
    "cancel_after": _llm(str | None, "--cancel-after", help="Abandon each stream this long after its send."),
    "cancel_rate": _llm(
        float, "--cancel-rate", help="Share of streams abandoned at a random point (0-1), as closed tabs."
    ),
}


def examples(*lines: str) -> str:
    """The Examples block a command's --help ends with: the command lines, a blank line between them (a
    long one wraps)."""
    return "Examples:\n\n" + "\n\n".join(lines)


def load_command(
    app: typer.Typer,
    name: str,
    *,
    omit: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
    declared: dict[str, Any] | None = None,
    epilog: str | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `body(..., flags: LoadFlags)` as command `name`, taking the LoadFlags options after its own.

    `omit` leaves options out (they keep LoadFlags' default), `defaults` changes a default, `declared`
    replaces a declaration (a help text that says more for this command); `epilog` ends its --help.
    """

    def register(body: Callable[..., None]) -> Callable[..., None]:
        command = bundled("flags", LoadFlags, LOAD_OPTIONS, omit, defaults, declared)(body)
        app.command(name, epilog=epilog)(command)
        return body

    return register


def bundled(
    param: str,
    bundle: type,
    options: dict[str, Any],
    omit: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
    declared: dict[str, Any] | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Wrap `body(..., PARAM: BUNDLE)` as a function that takes the bundle's options one by one (for typer)
    and hands them to `body` as one BUNDLE (a dataclass; its tuple fields are repeatable options)."""
    given_defaults = {f.name: f.default for f in dataclass_fields(bundle)}
    tuples = {name for name, value in given_defaults.items() if isinstance(value, tuple)}
    chosen = {
        name: (declaration, None if name in tuples else given_defaults[name])
        for name, declaration in options.items()
        if name not in omit
    }
    for key, value in (defaults or {}).items():
        chosen[key] = (chosen[key][0], value)
    for key, value in (declared or {}).items():
        chosen[key] = (value, chosen[key][1])

    def wrap(body: Callable[..., None]) -> Callable[..., None]:
        sig = inspect.signature(body, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != param]
        if clash := {p.name for p in own} & chosen.keys():
            raise TypeError(
                f"{body.__name__} declares {', '.join(sorted(clash))}, which {bundle.__name__} holds"
            )
        shared = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=declaration)
            for key, (declaration, default) in chosen.items()
        ]

        def command(**kwargs: Any) -> None:
            given = {key: kwargs.pop(key) for key in chosen}
            for key in tuples & given.keys():
                given[key] = tuple(given[key] or ())
            body(**kwargs, **{param: bundle(**given)})

        params = own + shared
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        command.__name__, command.__doc__ = body.__name__, body.__doc__
        return command

    return wrap


def fail(message: str) -> typer.Exit:
    """Print `squall: error: MESSAGE` (on one line, its secrets redacted) and return the exit (2) to raise."""
    from squall.redact import redact_text

    typer.echo(f"squall: error: {redact_text(' '.join(message.split()))}", err=True)
    return typer.Exit(EXIT_USAGE)


@contextlib.contextmanager
def usage_errors(prefix: str = "") -> Iterator[None]:
    """A PlanError inside becomes one line on stderr and exit 2."""
    from squall.units import PlanError

    try:
        yield
    except PlanError as e:
        raise fail(f"{prefix}{e}") from None
