"""The commands around a load: the built-in targets (serve, mock), the demo, and the capacity plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from squall.cli.options import Csv, Host, Port, Quiet, examples, fail, usage_errors

# Measured on a loaded 2-core box: the worker uses 3-5 % CPU at 32 streams, and its loop ran late by the same
# 5-20 ms at 8, 16, 32 or 64 streams (scheduling delay, as for an idle asyncio loop there): the stream count
# is not what makes the demo's verdict, so it keeps its 64.
DEMO_STREAMS = 64
DEMO_DURATION = "15s"


def register(app: typer.Typer) -> None:
    """Add serve, mock, demo and plan to `app`."""
    app.command(epilog=examples("squall serve --port 8080", "squall serve --port 8080 --delay 20ms"))(serve)
    app.command(
        epilog=examples(
            "squall mock --port 8000 --ttft 200ms --itl 30ms --tokens 128:32",
            "squall mock --port 8000 --fail-429 0.05 --drop-mid-stream 0.01",
            "squall mock --port 8000 --reasoning-tokens 200 --tool-calls",
        )
    )(mock)
    app.command(
        epilog=examples(
            "squall demo", "squall demo -d 30s -c 32 --html demo.html", "squall demo --dashboard 8089"
        )
    )(demo)
    app.command(
        "plan",
        epilog=examples(
            "squall plan --rpm 10000 --tpm 2000000 --tokens-per-call 1500 --calls-per-action 3",
            "squall plan --tpm 400000 --input-tokens 1200 --output-tokens 300 --think 1m --json",
        ),
    )(plan_capacity)


def serve(
    port: Port = 8080,
    host: Host = "127.0.0.1",
    delay: Annotated[
        str, typer.Option("--delay", help="Answer every request after this long, e.g. 20ms.")
    ] = "0s",
) -> None:
    """A fast built-in HTTP target: 'Hello, world', /status/N, /delay/MS, /bytes/N, /slots/N/MS, /close,
    /reset, /echo.

    /slots/N/MS has a capacity: at most N requests in service at once, each taking MS ms; the others wait in
    arrival order, so latency rises once more than N are in flight and throughput tops out at N*1000/MS
    req/s (a target with a knee for `squall hunt`; --delay does not apply to it).

    Query parameters: ?delay_ms=MS adds to the delay; ?slow_every=N&slow_ms=MS makes every Nth request that
    carries them wait MS ms more (a slower tail, the rest unchanged: /delay/20?slow_every=50&slow_ms=7).

    /echo answers JSON describing the request (id, method, path, headers, body, json) and X-Request-Id, for
    scenario journeys to extract from. GET /metrics: its responses, connections and /slots/ queues in the
    Prometheus text format (for --scrape).
    """
    from squall.targets.serve import ServeOptions
    from squall.targets.serve import serve as serve_forever
    from squall.units import PlanError, parse_duration

    with usage_errors():
        delay_s = parse_duration(delay, "--delay")
        if not 0 <= port <= 65535:
            raise PlanError(f"--port {port} is not a TCP port")
        if not host.strip():
            raise PlanError("--host is empty; give an address such as 127.0.0.1")

    def ready(bound: int) -> None:
        typer.echo(f"squall serve listening on http://{host}:{bound}/", err=True)

    try:
        serve_forever(ServeOptions(host=host, port=port, delay_s=delay_s), ready)
    except OSError as e:
        raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def mock(
    port: Port = 8000,
    host: Host = "127.0.0.1",
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
    reasoning_tokens: Annotated[
        int,
        typer.Option(
            "--reasoning-tokens",
            help="Reasoning tokens streamed before every chat, Responses or Messages answer (0: only when a "
            "request asks for reasoning; /v1/completions has no reasoning field).",
        ),
    ] = 0,
    tool_calls: Annotated[
        bool,
        typer.Option("--tool-calls", help="Answer every request with a tool call (else only with tools)."),
    ] = False,
    keep_received: Annotated[
        int, typer.Option("--keep-received", help="Request bodies kept for GET /v1/received (0: none).")
    ] = 100,
    max_running: Annotated[
        int,
        typer.Option(
            "--max-running",
            help="Generate at most N answers at once; later requests wait in arrival order, their wait part "
            "of TTFT (as vLLM's queue; vllm:num_requests_waiting counts them). 0: no limit.",
        ),
    ] = 0,
) -> None:
    """A built-in LLM server to aim at: OpenAI chat, completions and Responses, Anthropic Messages and Dify,
    streamed or not, with reasoning and tool-call phases and fault injection.

    A request asks for reasoning with reasoning_effort (chat), reasoning (Responses) or thinking (Messages),
    and gets --reasoning-tokens of it (or --tokens when that is 0); "mock_reasoning_tokens": N in a body sets
    it for that request. A body with tools gets a tool call. max_tokens caps the answer; ignore_eos makes it
    exactly max_tokens, min_tokens at least that long. GET /v1/received lists the last request bodies.

    GET /metrics serves the mock's own numbers in the Prometheus text format with vLLM's names, for
    `--scrape`: vllm:num_requests_running and _waiting, vllm:time_to_first_token_seconds,
    vllm:e2e_request_latency_seconds, vllm:prompt_tokens_total, vllm:generation_tokens_total,
    vllm:request_success_total, vllm:kv_cache_usage_perc.
    """
    from squall.plan.prompts import parse_size
    from squall.targets.mock_llm import serve_mock
    from squall.targets.mock_options import MockOptions
    from squall.units import PlanError, parse_duration

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
            reasoning_tokens=reasoning_tokens,
            tool_calls=tool_calls,
            keep_received=keep_received,
            max_running=max_running,
        )
    except (PlanError, ValueError) as e:
        raise fail(str(e)) from None

    def ready(bound: int) -> None:
        typer.echo(
            f"squall mock listening on http://{host}:{bound}/v1/chat/completions (and /v1/completions, "
            f"/v1/responses, /v1/messages, /v1/chat-messages; its metrics at http://{host}:{bound}/metrics)",
            err=True,
        )

    try:
        serve_mock(opts, ready)
    except OSError as e:
        raise fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def demo(
    duration: Annotated[str, typer.Option("-d", "--duration", help="How long to run.")] = DEMO_DURATION,
    concurrency: Annotated[
        int, typer.Option("-c", "--concurrency", help="Concurrent streams.")
    ] = DEMO_STREAMS,
    out: Annotated[Path, typer.Option("-o", "--out", help="Write the JSON result here.")] = Path(
        "squall-demo.json"
    ),
    html: Annotated[Path, typer.Option("--html", help="Write the HTML report here.")] = Path(
        "squall-demo.html"
    ),
    quiet: Quiet = False,
    csv_path: Csv = None,
    dashboard: Annotated[
        str | None,
        typer.Option(
            "--dashboard",
            help="Serve the live dashboard on PORT or HOST:PORT (default: a free loopback port).",
        ),
    ] = None,
) -> None:
    """Start the built-in mock LLM on a free loopback port and stream from it: TTFT, ITL, tokens/s, with the
    live dashboard (its URL is printed) and the mock's own vLLM-style /metrics scraped beside squall's."""
    from squall.cli.execute import execute
    from squall.targets.demo import DEMO_MOCK, demo_plan, free_port, start_mock
    from squall.units import PlanError, check_writable

    if dashboard is None:
        dashboard = str(free_port())
    with usage_errors():
        check_writable(html, "--html")
        if csv_path is not None:
            check_writable(csv_path, "--csv")
        if concurrency < 1:
            raise PlanError(f"-c/--concurrency must be at least 1 (got {concurrency})")
        demo_plan(
            "http://127.0.0.1:1/v1/chat/completions", duration, concurrency, out, quiet, dashboard=dashboard
        )  # checked first
    server, port = start_mock(DEMO_MOCK)
    try:
        if port is None:
            raise fail("the built-in mock did not start")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        # The dashboard's own sink prints `dashboard: URL` when it binds: the demo does not print it again.
        typer.echo(
            f"demo: the built-in mock LLM at {url} (pid {server.pid}: TTFT 150 ms, ITL 20 ms, 64±16 tokens, "
            f"1% 429s, its vLLM-style metrics scraped from /metrics); {concurrency} concurrent streams for "
            f"{duration}",
            err=True,
        )
        with usage_errors():
            plan = demo_plan(
                url, duration, concurrency, out, quiet, target_pid=server.pid, dashboard=dashboard
            )
        code = execute(plan, html=html, csv_path=csv_path)
    finally:
        server.terminate()
        server.join(5)
    raise typer.Exit(code)


def plan_capacity(
    rpm: Annotated[
        float | None, typer.Option("--rpm", help="Requests per minute the provider allows.")
    ] = None,
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
    import orjson

    from squall.studies.capacity import Demand, capacity
    from squall.units import PlanError, parse_duration

    with usage_errors():
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
        out: dict[str, Any] = capacity(demand)
    if json_out:
        typer.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo("\n".join(out["lines"]))
