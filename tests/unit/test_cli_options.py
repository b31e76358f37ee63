"""cli/options.py: the shared options are declared once and every load command takes them the same way."""

import inspect
from dataclasses import fields

import pytest
import typer.main

from squall.cli import app
from squall.cli.options import LOAD_OPTIONS, TARGET_OPTIONS, bundled
from squall.plan.build import LoadFlags, TargetFlags

LOAD_COMMANDS = ("run", "llm", "scenario", "py", "hunt", "soak")


def _options(command: str) -> dict[str, tuple[str, ...]]:
    click = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: tuple(sorted(p.opts)) for p in click.params}


def test_the_bundles_declare_every_field() -> None:
    assert list(LOAD_OPTIONS) == [f.name for f in fields(LoadFlags)]
    assert list(TARGET_OPTIONS) == [f.name for f in fields(TargetFlags)]


def test_every_load_command_takes_the_shared_options_the_same_way() -> None:
    shared = {"workers", "timeout", "insecure", "out", "quiet", "seed", "html", "csv_path", "prometheus_port"}
    want = {name: _options("run")[name] for name in shared}
    for command in LOAD_COMMANDS:
        got = _options(command)
        assert {n: got.get(n) for n in shared if n in got} == {n: want[n] for n in shared if n in got}, (
            command
        )
        assert got["quiet"] == ("--quiet", "-q"), command


def test_bundled_hands_the_options_over_as_one_object() -> None:
    seen = []

    def body(url: str, *, flags: LoadFlags) -> None:
        seen.append((url, flags))

    wrapped = bundled("flags", LoadFlags, LOAD_OPTIONS, omit=("think",), defaults={"timeout": "9s"})(body)
    params = inspect.signature(wrapped).parameters
    assert "think" not in params and params["timeout"].default == "9s" and "flags" not in params
    kwargs = {name: p.default for name, p in params.items() if name != "url"}
    wrapped(url="u", **{**kwargs, "threshold": ["p99<1s"], "quiet": True})
    assert seen == [("u", LoadFlags(timeout="9s", threshold=("p99<1s",), quiet=True))]


def test_a_command_option_may_not_shadow_a_bundled_one() -> None:
    def body(quiet: bool = False, *, flags: LoadFlags) -> None: ...

    with pytest.raises(TypeError, match="body declares quiet, which LoadFlags holds"):
        bundled("flags", LoadFlags, LOAD_OPTIONS)(body)


def test_the_help_names_every_transport_and_api_shape_there_is() -> None:
    # The help lists the names (a user should not have to guess them); the registries are the truth.
    from squall.cli.options import LLM_OPTIONS, LOAD_OPTIONS
    from squall.engine.llm.apis import APIS
    from squall.engine.transport import TRANSPORTS

    def help_of(annotated: object) -> str:
        return annotated.__metadata__[0].help  # type: ignore[attr-defined]

    transport_help, api_help = help_of(LOAD_OPTIONS["transport"]), help_of(LLM_OPTIONS["api"])
    assert all(name in transport_help for name in TRANSPORTS), transport_help
    assert all(name in api_help for name in APIS), api_help


ALL_COMMANDS = (*LOAD_COMMANDS, "serve", "mock", "demo", "plan", "report", "merge", "compare")


def test_one_vocabulary_across_the_load_commands() -> None:
    # -c/--concurrency everywhere, with the older spellings users of each command have typed.
    concurrency = {
        "run": ("--concurrency", "--connections", "-c"),
        "llm": ("--concurrency", "--connections", "-c"),
        "scenario": ("--concurrency", "--users", "-c", "-u"),
        "py": ("--concurrency", "--users", "-c", "-u"),
        "hunt": ("--concurrency", "--connections", "-c"),
        "soak": ("--concurrency", "--connections", "-c"),
    }
    for command, names in concurrency.items():
        assert next(o for o in _options(command).values() if "-c" in o) == names, command
    # -n takes --requests and --iterations alike; hunt and soak take --threshold and --slo.
    for command in ("run", "llm", "scenario", "py"):
        assert next(o for o in _options(command).values() if "-n" in o) == (
            "--iterations",
            "--requests",
            "-n",
        )
    assert _options("hunt")["slo"] == _options("soak")["threshold"] == ("--slo", "--threshold")
    assert _options("demo")["concurrency"] == ("--concurrency", "-c")


def test_the_llm_options_are_the_same_on_llm_hunt_and_soak() -> None:
    from squall.cli.options import LLM_OPTIONS

    for command in ("hunt", "soak"):
        got = _options(command)
        assert {n: got[n] for n in LLM_OPTIONS} == {n: _options("llm")[n] for n in LLM_OPTIONS}, command
    assert _options("soak")["body_file"] == _options("run")["body_file"] == ("--body-file",)


def test_timeout_help_speaks_of_each_commands_own_unit() -> None:
    def help_of(command: str) -> str:
        click = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
        return next(p.help for p in click.params if p.name == "timeout")

    assert help_of("run") == "How long one request may take."
    assert help_of("llm") == "How long one stream (its whole answer) may take."
    assert help_of("scenario") == "How long one request of a step may take."
    assert help_of("py") == "How long one iteration may take."
    assert "with --llm one stream" in help_of("hunt") and "with --py one iteration" in help_of("soak")


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_help_ends_with_examples_that_parse(command: str) -> None:
    import shlex

    click = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    head, _, block = (click.epilog or "").partition("Examples:\n\n")
    lines = block.split("\n\n")
    assert head == "" and 2 <= len(lines) <= 4, click.epilog
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["squall", command], line
        with click.make_context("squall " + command, words[2:]):  # parses (types, choices), runs nothing
            pass
