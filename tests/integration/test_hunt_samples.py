"""Hunt verdicts on a target failing a fixed share of requests: judged on enough answers, no flip-flops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FAIL = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"


def failing(per_100: int) -> Any:
    """A keep-alive handler that answers 500 to exactly `per_100` of every 100 requests, in turn."""
    seen = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                seen[0] += 1
                writer.write(FAIL if seen[0] % 100 < per_100 else OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handler


def hunt(port: int, tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "h.json"
    argv = ["hunt", f"http://127.0.0.1:{port}/", "--slo", "errors<2%", "--step-duration", "1s"]
    argv += ["--warmup", "0s", "-w", "1", "-o", str(out), *args]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code in (0, 1), res.output
    return read_json(str(out))["hunt"], res.output


@pytest.mark.slow
def test_a_server_failing_1_in_100_passes_errors_under_2pct_at_every_level(
    byte_server: Callable[..., int], tmp_path: Path
) -> None:
    found, output = hunt(byte_server(failing(1)), tmp_path, "--start", "1", "--max", "16", "--growth", "4")
    steps = found["steps"]
    assert {1, 4} <= {s["level"] for s in steps}  # (16 too, unless throughput stopped rising before it)
    for s in steps:  # each level judged on enough answers, with its count and interval in the JSON
        assert s["verdict"] == "ok", s
        assert s["samples"] >= s["samples_needed"] == 381
        lo, hi = s["errors_bound_pct"]
        assert lo < 1.0 < hi < 2.0
        assert abs(s["errors"] - s["requests"] / 100) <= 1
    assert (found["failed_slo"], found["unjudged"]) == ([], [])
    # (this server's throughput may stop rising after 1 user: a plateau, never an SLO failure)
    assert found["stop_reason"] in ("max", "plateau") and found["best"] is not None
    assert "95% CI" in output and "n=" in output


@pytest.mark.slow
def test_a_server_failing_3_in_100_fails_errors_under_2pct_at_every_level(
    byte_server: Callable[..., int], tmp_path: Path
) -> None:
    port = byte_server(failing(3))
    for level in ("1", "4", "16"):
        found, output = hunt(port, tmp_path, "--start", level, "--max", level)
        (step,) = found["steps"]
        assert step["verdict"] == "fail" and step["failed_slo"] == ["errors<2%"], step
        assert 2.0 < step["errors_bound_pct"][0] < 3.0 < step["errors_bound_pct"][1]
        assert (found["best"], found["first_failing"]) == (None, int(level))
        assert f"level {level}: n=" in output and "FAIL errors<2%" in output


def test_a_level_with_too_few_answers_is_not_judged(byte_server: Callable[..., int], tmp_path: Path) -> None:
    # Every level must have 100,000 answers; --max-extend 1 forbids running it again: 'too few samples'.
    args = ("--slo", "p99<1s", "--start", "1", "--max", "1", "--max-extend", "1", "--min-samples", "100000")
    found, output = hunt(byte_server(failing(0)), tmp_path, *args)
    (step,) = found["steps"]
    assert step["verdict"] == "too_few" and not step["ok"] and step["samples_needed"] == 100_000
    assert (found["best"], found["first_failing"], found["unjudged"]) == (None, None, [1])
    assert "too few samples (n=" in output and "need 100,000" in output and "not judged" in output
