"""studies/matrix.py: the --param grid, its cells, and the names a factory takes."""

from pathlib import Path

import pytest

from squall.plan.py import cells, check_params, number, params
from squall.units import PlanError


def test_params_parse_numbers_and_text() -> None:
    grid = params(["model=a,b", "concurrency=1,4", "temp=0.5"])
    assert grid == {"model": ["a", "b"], "concurrency": [1, 4], "temp": [0.5]}
    assert (number("3"), number("0.25"), number("x1")) == (3, 0.25, "x1")


def test_cells_vary_the_first_name_slowest() -> None:
    got = cells({"a": [1, 2], "b": ["x", "y"]})
    assert got == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert cells({}) == [{}]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["a"], "--param 'a' is not name=v1,v2,..."),
        (["1a=2"], "--param '1a=2' is not name=v1,v2,..."),
        (["a="], "--param 'a=' is not name=v1,v2,..."),
        (["a=1", "a=2"], "--param a is given twice"),
        (["a=1,,2"], "--param 'a=1,,2' has an empty value"),
        (["concurrency=0"], "--param concurrency= takes whole numbers of at least 1"),
        (["concurrency=1.5"], "--param concurrency= takes whole numbers of at least 1"),
    ],
)
def test_params_refuse(texts: list[str], message: str) -> None:
    with pytest.raises(PlanError) as e:
        params(texts)
    assert str(e.value) == message


def test_check_params_names_what_the_factory_takes() -> None:
    def factory(model: str, temp: float = 0.0) -> None: ...

    check_params("m:f", factory, {"model": ["a"], "concurrency": [2]})
    with pytest.raises(PlanError) as e:
        check_params("m:f", factory, {"seed": [1]})
    assert str(e.value) == "--param seed: m:f takes model, temp"
    check_params("m:f", dict, {"anything": [1]})  # no signature to read: its worker reports what it refuses


@pytest.mark.parametrize(("lost", "code"), [(False, 0), (True, 3)])
def test_a_matrix_says_each_cells_warnings_and_exits_as_a_single_run(
    lost: bool, code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from squall.collector.aggregate import Aggregate
    from squall.plan.plan import Plan
    from squall.plan.specs import RequestSpec
    from squall.studies.matrix import run_matrix

    class Ran:  # a cell's result: not valid (squall's CPU was the limit), a worker lost or not
        def __init__(self) -> None:
            self.summary = Aggregate().summary(1.0, open_model=False)
            self.valid = False
            self.warnings = ["generator-limited: worker 0 CPU stayed at or above 90% for 3 s"]
            self.doc = {"meta": {"stop_reason": "duration"}}

        def exit_code(self) -> int:
            return 3 if lost else 0

    plan = Plan(RequestSpec("py:m:f", "CALL"))
    got = run_matrix([{"a": 1}], [plan], tmp_path / "m.json", "py m:f", run=lambda p: Ran())  # type: ignore[arg-type]
    assert got == code
    assert "matrix: warning: generator-limited: worker 0 CPU" in capsys.readouterr().err
