import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.studies.capacity import Demand, capacity
from squall.units import PlanError


def _demand(**kw: object) -> Demand:
    base: dict[str, object] = dict(
        rpm=500.0,
        tpm=200_000.0,
        calls_per_action=5,
        tokens_per_call=1900,
        action_s=20,
        think_s=40,
        headroom=0.8,
    )
    return Demand(**(base | kw))  # type: ignore[arg-type]


def test_the_tighter_limit_wins_and_users_are_whole() -> None:
    out = capacity(_demand())
    # per user: 1 action/min x 5 calls = 5 calls/min, x 1900 = 9500 tokens/min
    assert out["per_user"] == {"actions_per_min": 1.0, "calls_per_min": 5.0, "tokens_per_min": 9500.0}
    assert out["users_by_limit"] == {"rpm": 80.0, "tpm": 16.8421}
    assert (out["max_users"], out["bound_by"]) == (16, "tpm")
    assert out["calls_in_flight"] == pytest.approx(16 * 20 / 60, abs=1e-3)
    assert any("16.84 users" in line for line in out["lines"])


def test_only_rpm_and_exact_boundaries() -> None:
    out = capacity(_demand(tpm=None, rpm=600.0, headroom=1.0, think_s=40, action_s=20))
    assert (out["max_users"], out["bound_by"]) == (120, "rpm")  # 600 / 5 exactly: no float shortfall


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"rpm": None, "tpm": None}, "at least one limit"),
        ({"headroom": 1.5}, "--headroom"),
        ({"action_s": 0, "think_s": 0}, "greater than 0"),
        ({"tokens_per_call": 0}, "--tpm needs"),
        ({"calls_per_action": 0}, "--calls-per-action"),
    ],
)
def test_bad_demands(kw: dict, needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        capacity(_demand(**kw))


def test_cli_prints_the_arithmetic_and_json() -> None:
    args = ["plan", "--rpm", "500", "--tpm", "200000", "--calls-per-action", "5", "--input-tokens", "1500"]
    args += ["--output-tokens", "400", "--action-duration", "20s", "--think", "40s"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "max sustainable users: 16 (bound by tpm" in res.output
    res = CliRunner().invoke(app, [*args, "--json"])
    assert '"max_users": 16' in res.output
    res = CliRunner().invoke(app, ["plan", "--rpm", "10", "--tokens-per-call", "5", "--input-tokens", "3"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
