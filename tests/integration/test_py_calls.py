"""`squall py`: any async function runs, with the user or without; one that takes neither is a usage error."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.engine.workload.py import takes_user
from squall.report.json import read_json
from squall.units import PlanError

NO_USER = """\
import asyncio

async def call():
    await asyncio.sleep(0)

class Agent:
    async def __call__(self):
        await asyncio.sleep(0)

def bare():
    return call

def agent():
    return Agent()

def two():
    async def call(a, b):
        pass
    return call
"""


def test_takes_user() -> None:
    async def none() -> None: ...
    async def one(user: object) -> None: ...
    async def star(*args: object) -> None: ...
    async def kw_only(*, user: object = None) -> None: ...
    async def two(a: object, b: object) -> None: ...

    got = [takes_user(f, "m:f") for f in (none, one, star, kw_only, print)]
    assert got == [False, True, True, False, True]
    with pytest.raises(PlanError, match=r"m:f: the workload takes \(a: object, b: object\)"):
        takes_user(two, "m:f")


@pytest.mark.parametrize("factory", ["bare", "agent"])
def test_a_call_without_a_user_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str) -> None:
    (tmp_path / f"no_user_{factory}.py").write_text(NO_USER)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r.json"
    args = ["py", f"no_user_{factory}:{factory}", "-c", "2", "-w", "1", "-n", "30", "-q", "-o", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    s = read_json(str(out))["summary"]
    assert (s["requests"], s["ok"], s["errors"], s["error_kinds"]) == (30, 30, 0, {})


def test_a_call_that_takes_two_parameters_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "two_params.py").write_text(NO_USER)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["py", "two_params:two", "-c", "1", "-w", "1", "-n", "5", "-q"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, res.output
    assert lines == [
        "squall: error: two_params:two: the workload takes (a, b); squall py calls it with the user or with "
        "nothing: give it one parameter (user) or none"
    ]
