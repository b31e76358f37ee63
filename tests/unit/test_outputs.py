"""report/outputs.py: every file asked for, from one registry, and the exit code a result implies."""

from __future__ import annotations

from pathlib import Path

import pytest

from squall.report.outputs import OUTPUTS, exit_code, write_all
from squall.result.document import EXIT_INVALID, EXIT_USAGE, Result


def _doc() -> dict:
    return {
        "meta": {"model": "closed", "stop_reason": "duration"},
        "summary": {"requests": 0},
        "timeseries": [
            {"t": 1.0, "requests": 3, "ok": 3, "errors": 0, "error_kinds": {}, "p50": 1.0, "p99": 2.0}
        ],
        "generator_limited": False,
        "workers_lost": {},
        "valid": True,
        "warnings": [],
        "thresholds": [{"expr": "p99<100ms", "ok": False, "value": 120.0}],
    }


def test_the_registry_names_every_file_option_in_writing_order() -> None:
    assert list(OUTPUTS) == ["--junit", "--html", "--csv"]


def test_write_all_writes_only_what_was_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit, csv = tmp_path / "j.xml", tmp_path / "s.csv"
    write_all(_doc(), {"--junit": junit, "--html": None, "--csv": csv})
    assert "p99&lt;100ms" in junit.read_text() and "failure" in junit.read_text()
    assert csv.read_text().splitlines()[0].startswith("t,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml", "s.csv", "s.summary.csv"]
    assert capsys.readouterr().err.splitlines() == [
        f"series written to {csv}, summary to {tmp_path / 's.summary.csv'}"
    ]


def test_a_refused_input_exits_2_and_a_lost_worker_3() -> None:
    lost = _doc() | {"workers_lost": {"0": "boom"}, "valid": False}
    assert exit_code(Result(lost)) == EXIT_INVALID
    refused = lost | {"usage_error": "mod:fn(...) failed: TypeError: boom"}
    assert exit_code(Result(refused)) == EXIT_USAGE
    assert Result(refused).usage_error == "mod:fn(...) failed: TypeError: boom"
    assert Result(refused).exit_code() == EXIT_INVALID  # (studies keep counting it as a lost worker)
