"""The one builder every command uses: the flags as typed -> a validated Plan."""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squall.units import PlanError, parse_duration

if TYPE_CHECKING:
    from squall.plan.llm import LlmFlags
    from squall.plan.load import Shape
    from squall.plan.plan import Dashboard, Plan, Scrape
    from squall.plan.scenario.model import Scenario
    from squall.plan.specs import RequestSpec


@dataclass(frozen=True, slots=True)
class LoadFlags:
    """The options every load command shares, as typed on the command line (None: not given)."""

    workers: int | None = None
    duration: str | None = None
    rate: float | None = None
    arrival: str = "constant"
    burstiness: float = 1.0
    timeout: str | None = "30s"  # (None: hunt and soak, the default of what they load)
    insecure: bool = False
    warmup: str = "0s"
    out: Path | None = None
    quiet: bool = False
    target_pid: int | None = None
    seed: int = 0
    threshold: tuple[str, ...] = ()
    abort_on_fail: bool = False
    abort_grace: str | None = None
    junit: Path | None = None
    stage: tuple[str, ...] = ()
    profile: str | None = None
    think: str | None = None
    html: Path | None = None
    csv_path: Path | None = None
    shard: str | None = None
    start_at: float | None = None
    prometheus_port: str | None = None
    dashboard: str | None = None
    scrape: tuple[str, ...] = ()
    scrape_metric: tuple[str, ...] = ()
    transport: str = "auto"
    source_ip: tuple[str, ...] = ()
    connect_rate: float | None = None


def build(
    request: RequestSpec,
    flags: LoadFlags,
    *,
    connections: int | None = None,
    default_connections: int = 64,
    requests: int | None = None,
    threshold_option: str = "--threshold",
    argv: list[str] | None = None,
    target_given: bool = False,
    **fields: Any,
) -> Plan:
    """The validated plan for `request` under `flags`; `fields` are Plan fields the command sets itself;
    `target_given`: a target process will be sampled though the flags name none (soak's --target-cmd).

    `connections` None: not given on the command line, so `default_connections` (a users shape sets them).
    Raises PlanError.
    """
    from squall.plan.load import parse_think
    from squall.plan.plan import assemble
    from squall.plan.shard import split_fields, split_shape
    from squall.plan.thresholds import check_target, parse_threshold
    from squall.units import check_writable

    users_given = connections is not None
    rate = flags.rate
    llm = fields.get("llm")
    if llm is not None and llm.trace_offsets:
        requests, rate = _trace_load(llm.trace_offsets, flags, requests)
    fields.update(
        connections=connections if users_given else default_connections,
        requests=requests,
        rate=rate,
        arrival=flags.arrival,
        burstiness=flags.burstiness,
        quiet=flags.quiet,
        target_pid=flags.target_pid,
        seed=flags.seed,
        abort_on_fail=flags.abort_on_fail,
    )
    fields.setdefault("transport", flags.transport)
    if flags.source_ip:
        from squall.plan.plan import parse_source_ips

        fields["source_ips"] = parse_source_ips(flags.source_ip)
    fields["connect_rate"] = flags.connect_rate
    if flags.prometheus_port is not None:
        fields["prometheus"] = listen_address(flags.prometheus_port)
    if flags.dashboard is not None:
        fields["dashboard"] = dashboard(flags.dashboard)
    if flags.scrape or flags.scrape_metric:
        fields["scrape"] = scrape(flags.scrape, flags.scrape_metric)
    if flags.target_pid is not None:
        import psutil

        if not 1 <= flags.target_pid < 2**31 or not psutil.pid_exists(flags.target_pid):
            raise PlanError(f"--target-pid {flags.target_pid}: no such process")
    if flags.shard is not None:
        split_fields(flags.shard, fields, users_from_stages=bool(flags.stage))
    if flags.start_at is not None:
        fields["start_at"] = _start_at(flags.start_at)
    duration = flags.duration
    shape = _shape(list(flags.stage), flags.profile, duration, fields, users_given)
    if shape is not None:
        duration = None  # the stages set it
        if flags.shard is not None and flags.stage:  # each shard takes its share of the stages
            shape = split_shape(shape, *fields["shard"])
    fields["shape"] = shape
    if flags.think is not None:
        fields["think"] = parse_think(flags.think)
    if flags.abort_grace is not None and not flags.abort_on_fail:
        raise PlanError("--abort-grace needs --abort-on-fail")
    fields.setdefault("workers", flags.workers if flags.workers is not None else (os.cpu_count() or 1))
    plan = assemble(
        request,
        thresholds=tuple(parse_threshold(t, threshold_option) for t in flags.threshold),
        abort_grace_s=parse_duration(flags.abort_grace or "5s", "--abort-grace"),
        duration_s=parse_duration(duration, "--duration") if duration is not None else None,
        timeout_s=parse_duration(flags.timeout or "30s", "--timeout"),
        tls_verify=not flags.insecure,
        warmup_s=parse_duration(flags.warmup, "--warmup"),
        out_path=str(flags.out) if flags.out else None,
        command=command_line(sys.argv[1:] if argv is None else argv),
        **fields,
    ).validate()
    check_target(plan.thresholds, sampled=flags.target_pid is not None or target_given)
    if flags.out is not None:
        check_writable(flags.out)
    if flags.junit is not None:
        if not plan.thresholds:
            raise PlanError("--junit needs at least one --threshold")
        check_writable(flags.junit, "--junit")
    if plan.stop.abort_on_fail and not plan.thresholds:
        raise PlanError("--abort-on-fail needs at least one --threshold")
    return plan


def scenario_flags(sc: Scenario, flags: LoadFlags, users: int | None) -> LoadFlags:
    """The flags with the scenario file's duration, stages, think and thresholds merged in: what the command
    line gives wins (a --stage or --profile replaces the file's stages); raises PlanError on a clash."""
    from dataclasses import replace

    from squall.plan.load import parse_stages

    stages_of_flags = parse_stages(list(flags.stage))
    rate_given = flags.rate is not None or (stages_of_flags is not None and stages_of_flags.kind == "rate")
    if sc.think and flags.think is None and rate_given:
        raise PlanError(
            f"{sc.source} sets think: {sc.think}, which paces users; with a rate the schedule starts "
            "iterations: remove think from the file, or drop -r"
        )
    stages = flags.stage or (tuple(sc.stages) if flags.profile is None else ())
    if stages and not flags.stage:
        given = [o for o, v in (("-d/--duration", flags.duration), ("-u/--users", users)) if v is not None]
        if given:
            raise PlanError(
                f"the scenario file's stages set the users and the duration; drop {' and '.join(given)}, "
                "or replace the stages with --stage or --profile"
            )
    duration = flags.duration
    if duration is None and sc.duration_s is not None and not stages:
        duration = f"{sc.duration_s}s"
    return replace(
        flags,
        duration=duration,
        stage=stages,
        threshold=(*sc.thresholds, *flags.threshold),
        think=flags.think if flags.think is not None else sc.think,
    )


def study_plan(
    url: str | None,
    what: TargetFlags,
    flags: LoadFlags,
    connections: int,
    *,
    opts: LlmFlags | None = None,
    **fields: Any,
) -> Plan:
    """The validated plan of what hunt or soak load (see `target`), a scenario file's think time kept; a
    --timeout not given (None) is that of the command that loads the same."""
    from dataclasses import replace

    if opts is not None and opts.trace is not None:
        raise PlanError("--trace is replayed by `squall llm URL --trace FILE`; hunt and soak set the load")
    request, found = target(url, what, opts, flags.seed)
    think = found.pop("think", None)
    # --timeout not given: the default of the command that loads the same (llm 120s, py 60s, else 30s).
    timeout = flags.timeout or ("120s" if "llm" in found else "60s" if "py" in found else "30s")
    flags = replace(flags, think=think or None, timeout=timeout)
    return build(request, flags, connections=connections, **found, **fields)


def _trace_load(offsets: tuple[float, ...], flags: LoadFlags, requests: int | None) -> tuple[int, float]:
    """A trace's load as (count, rate): the open model at the trace's own send times (its mean rate stands
    for -r), and a count stop of one request per line (so each send takes its own line's prompt).
    -c sets the connections and -d cuts the replay short; what else sets a load is refused."""
    from squall.plan.load import trace_rate

    clash = [
        name
        for name, given in (
            ("-r/--rate", flags.rate is not None),
            ("-n/--requests", requests is not None),
            ("--stage", bool(flags.stage)),
            ("--profile", flags.profile is not None),
            ("--think", flags.think is not None),
            ("--arrival", flags.arrival != "constant"),
            ("--burstiness", flags.burstiness != 1.0),
            ("--shard", flags.shard is not None),
            ("--warmup", parse_duration(flags.warmup, "--warmup") > 0),
        )
        if given
    ]
    if clash:
        given = ", ".join(clash)
        raise PlanError(f"--trace sends at the trace's own times, one request per line; drop {given}")
    return len(offsets), trace_rate(offsets)


def _start_at(start_at: float) -> float:
    now = time.time()
    if not now - 86_400 <= start_at <= now + 86_400:
        raise PlanError(f"--start-at {start_at:.0f} is not within a day of now ({now:.0f})")
    if start_at < now:  # a shard scheduled late starts at once; its result says how late
        print(f"squall: --start-at was {now - start_at:.1f} s ago: starting now", file=sys.stderr)
    return start_at


def _shape(
    stage: list[str], name: str | None, duration: str | None, fields: dict[str, Any], users_given: bool
) -> Shape | None:
    """--stage or --profile as a Shape (None for neither); a rate shape takes the place of -r."""
    from squall.plan.load import parse_stages, profile

    if stage and name is not None:
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
    if name is not None:
        if duration is None:
            raise PlanError("--profile needs -d/--duration: the time the whole shape takes")
        total = parse_duration(duration, "--duration")
        if rate is not None:
            fields["rate"] = None
            return profile(name, "rate", float(rate), total)
        return profile(name, "users", float(fields["connections"]), total)
    return None


def command_line(argv: list[str]) -> str:
    """The command as typed, for the result's meta, with secrets replaced (squall.redact)."""
    from squall.redact import redact_argv

    # Arguments that are not valid UTF-8 arrive as surrogates; keep them printable and encodable.
    args = [a.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for a in argv]
    return shlex.join(["squall", *redact_argv(args)])


def listen_address(text: str, flag: str = "--prometheus-port") -> tuple[str, int]:
    """PORT or HOST:PORT as (host, port), refused now if nothing can listen there."""
    host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise PlanError(f"{flag} {text!r} is not PORT or HOST:PORT") from None
    if not 1 <= port <= 65535:
        raise PlanError(f"{flag} {text!r}: the port must be from 1 to 65535")
    address = (host.strip("[]") or "127.0.0.1", port)
    import socket

    try:  # refused before any load is sent, not found out in a warning at the end
        with socket.create_server(address, family=socket.AF_INET6 if ":" in address[0] else socket.AF_INET):
            pass
    except OSError as e:  # (create_server's strerror names the address as a tuple: the errno's text only)
        why = os.strerror(e.errno) if e.errno else str(e)
        raise PlanError(f"{flag} {text!r}: cannot listen there: {why}") from None
    return address


def dashboard(text: str) -> Dashboard:
    """--dashboard [HOST:]PORT: the address (checked now), with a random token unless it is loopback."""
    import ipaddress
    import secrets

    from squall.plan.plan import Dashboard

    host, port = listen_address(text, "--dashboard")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return Dashboard(host, port, "" if loopback else secrets.token_urlsafe(16))


def scrape(urls: tuple[str, ...], metrics: tuple[str, ...]) -> Scrape:
    """--scrape URL (repeatable) and --scrape-metric GLOB as a Scrape; raises PlanError on a bad URL."""
    from urllib.parse import urlsplit

    from squall.plan.plan import Scrape

    if not urls:
        raise PlanError("--scrape-metric picks series of --scrape URL: give --scrape too")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PlanError(
                f"--scrape {url!r}: give an http:// or https:// URL, e.g. http://127.0.0.1:8000/metrics"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise PlanError(f"--scrape {url!r}: the port must be a number from 1 to 65535")
    for glob in metrics:
        if not glob.strip():
            raise PlanError("--scrape-metric: an empty pattern; give a name or a glob such as 'vllm:*'")
    return Scrape(tuple(dict.fromkeys(urls)), tuple(dict.fromkeys(metrics)))


def body(text: str | None, path: Path | None) -> bytes:
    """The request body from --body or --body-file (empty for neither)."""
    if text is not None and path is not None:
        raise PlanError("use either --body or --body-file, not both")
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as e:
            raise PlanError(f"--body-file {str(path)!r} cannot be read: {e.strerror or e}") from None
    return os.fsencode(text) if text is not None else b""


def api_keys(keys: list[str] | None, path: Path | None) -> tuple[str, ...]:
    """The API keys from --api-key, --api-key-file, else SQUALL_API_KEY or OPENAI_API_KEY."""
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


@dataclass(frozen=True, slots=True)
class TargetFlags:
    """What hunt and soak load, as typed: a request, an LLM endpoint, a scenario file or a py workload."""

    method: str = "GET"
    header: tuple[str, ...] = ()
    body: str | None = None
    body_file: Path | None = None
    llm: bool = False
    scenario: Path | None = None
    py: str | None = None
    param: tuple[str, ...] = ()
    tracemalloc: bool = False


def target(
    url: str | None, what: TargetFlags, opts: LlmFlags | None = None, seed: int = 0
) -> tuple[RequestSpec, dict[str, Any]]:
    """The request and the Plan fields (llm, scenario, py, transport, think) of what hunt or soak load; `opts`
    are the LLM options, for --llm only."""
    from squall.plan.llm import LlmFlags, llm_spec
    from squall.plan.specs import PySpec, RequestSpec
    from squall.units import parse_header

    opts = opts or LlmFlags()
    method = what.method.upper()
    shaped = method != "GET" or what.header or what.body is not None or what.body_file is not None
    if (what.py is not None or what.scenario is not None) and shaped:
        kind = "--py workload" if what.py is not None else "--scenario file"
        raise PlanError(f"-m, -H, -b and --body-file shape one HTTP request; a {kind} makes its own")
    if not what.llm and (given := _llm_options_given(opts)):
        raise PlanError(f"LLM options ({', '.join(given)}) are for --llm: add --llm or drop them")
    if what.llm and (method != "GET" or what.body is not None or what.body_file is not None):
        raise PlanError("--llm POSTs the LLM request itself: drop -m, -b and --body-file")
    if what.py is not None:
        if url is not None or what.llm or what.scenario is not None:
            raise PlanError("--py runs a Python workload: drop the URL, --llm and --scenario")
        from squall.plan.py import check_params, load_py_factory, params

        factory = load_py_factory(what.py)
        grid = params(list(what.param))
        if "concurrency" in grid:
            raise PlanError("--param concurrency= is for squall py; here -c (or the hunt) sets the users")
        if any(len(values) > 1 for values in grid.values()):
            raise PlanError("--param takes one value per name here; a matrix of values is for squall py")
        check_params(what.py, factory, grid)
        spec = PySpec(what.py, tuple((k, v[0]) for k, v in grid.items()), what.tracemalloc)
        return RequestSpec(url="http://127.0.0.1/"), {"py": spec}
    if what.param or what.tracemalloc:
        raise PlanError("--param and --tracemalloc are for a Python workload (--py MODULE:FACTORY)")
    headers = tuple(parse_header(h) for h in what.header)
    if what.scenario is not None:
        from squall.plan.scenario.load import load_scenario

        if url is not None or what.llm:
            raise PlanError("--scenario brings its own base_url: drop the URL and --llm")
        sc = load_scenario(what.scenario)
        return RequestSpec(url=sc.base_url + "/"), {"scenario": sc, "think": sc.think}
    if url is None:
        raise PlanError("give the URL (or --scenario FILE)")
    if what.llm:
        spec = llm_spec(url, opts, seed, what.header)
        return RequestSpec(url=url, method="POST", headers=headers), {"llm": spec}
    return RequestSpec(url=url, method=method, headers=headers, body=body(what.body, what.body_file)), {}


def _llm_options_given(opts: LlmFlags) -> list[str]:
    """The LLM options given on the command line (those that differ from their default), as typed."""
    from dataclasses import fields

    from squall.plan.llm import LlmFlags

    default = LlmFlags()
    return [
        "--" + f.name.replace("_", "-")
        for f in fields(LlmFlags)
        if getattr(opts, f.name) != getattr(default, f.name)
    ]


def matrix_plans(
    target: str,
    flags: LoadFlags,
    users: int | None,
    iterations: int | None,
    param: tuple[str, ...],
    tracemalloc: bool,
) -> tuple[list[dict[str, Any]], list[Plan]]:
    """`squall py`'s validated plans, one per cell of the --param matrix (one cell without a matrix): a
    matrix's cells run quiet and write no file of their own (the matrix writes one document)."""
    from dataclasses import replace

    from squall.plan.py import cells, check_params, load_py_factory, params
    from squall.plan.specs import PySpec, RequestSpec
    from squall.units import check_writable

    factory = load_py_factory(target)
    grid = params(list(param))
    check_params(target, factory, grid)
    grid_cells = cells(grid)
    if len(grid_cells) > 1:
        if flags.csv_path is not None or flags.junit is not None:
            raise PlanError(
                "--csv and --junit take one run; a --param matrix writes its one table to -o (and --html)"
            )
        if flags.shard is not None or flags.start_at is not None or flags.prometheus_port is not None:
            raise PlanError("--shard, --start-at and --prometheus-port take one run, not a --param matrix")
        if flags.dashboard is not None:
            raise PlanError("--dashboard takes one run, not a --param matrix")
    cell_flags = flags if len(grid_cells) == 1 else replace(flags, quiet=True, out=None, html=None)
    plans: list[Plan] = []
    for cell in grid_cells:
        if "concurrency" in cell and users is not None:
            raise PlanError("--param concurrency= sets -c for each cell; drop -c")
        given = tuple((k, v) for k, v in cell.items() if k != "concurrency")
        plans.append(
            build(
                RequestSpec(url="http://127.0.0.1/"),
                cell_flags,
                connections=cell.get("concurrency", users),
                default_connections=10,
                requests=iterations,
                py=PySpec(target, given, tracemalloc),
            )
        )
    if len(grid_cells) > 1 and flags.out is not None:
        check_writable(flags.out)
    return grid_cells, plans
