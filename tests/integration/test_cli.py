"""The command line: bad input is one line and exit 2; good input runs; the README's promises hold."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.report.json import read_json
from squall.targets.serve import ServerThread

ROOT = Path(__file__).resolve().parents[2]


LLM_URL = "http://127.0.0.1/v1/chat/completions"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "not a url"], "not an http"),
        (["run", "ftp://127.0.0.1/"], "not an http"),
        (["run", "http://127.0.0.1/", "-H", "NoColon"], "header 'NoColon' is malformed"),
        (["run", "http://127.0.0.1/", "-c", "-1"], "--connections"),
        (["run", "http://127.0.0.1/", "-n", "-5"], "--requests"),
        (["run", "http://127.0.0.1/", "-r", "-5"], "--rate"),
        (["run", "http://127.0.0.1/", "-d", "soon"], "--duration 'soon' is not a duration"),
        (["run", "http://127.0.0.1/", "--body-file", "/nonexistent/body"], "--body-file"),
        (["run", "http://127.0.0.1/", "--arrival", "bursty"], "--arrival"),
        (["run", "http://127.0.0.1/", "-o", "/nonexistent/dir/r.json"], "--out"),
        (["serve", "--port", "70000"], "--port"),
        (["run", "http://127.0.0.1/", "--threshold", "p98<1s"], "unknown metric"),
        (["run", "http://127.0.0.1/", "--abort-on-fail"], "needs at least one --threshold"),
        (["run", "http://127.0.0.1/", "--junit", "/tmp/j.xml"], "needs at least one --threshold"),
        (["run", "http://127.0.0.1/", "-r", "inf"], "--rate"),
        (["run", "http://127.0.0.1/", "-r", "1e-300"], "--rate"),
        (["run", "http://127.0.0.1/", "-n", "99999999999999999999999"], "--requests"),
        (["run", "http://127.0.0.1/", "--warmup", "100000000000000000000s"], "longer than 30 days"),
        (["run", "http://127.0.0.1/", "-H", "X-A: \u20ac"], "cannot carry"),
        (["run", "http://127.0.0.1/caf\u00e9"], "must be ASCII"),
        (["run", "http://127.0.0.1/", "-o", "/tmp"], "is a directory"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10", "--stage", "1s:5/s"], "mixing"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10", "-d", "5s"], "drop -d"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10/s", "-r", "5"], "drop -r"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10", "-r", "5"], "closed model"),
        (["run", "http://127.0.0.1/", "--stage", "1s"], "DURATION:TARGET"),
        (["run", "http://127.0.0.1/", "--profile", "ramp"], "--profile needs -d"),
        (["run", "http://127.0.0.1/", "--profile", "zigzag", "-d", "5s"], "--profile 'zigzag'"),
        (["run", "http://127.0.0.1/", "--think", "exp:0s"], "--think"),
        (["run", "http://127.0.0.1/", "--think", "1s", "-r", "5"], "--think paces users"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "--stage", "1s:0"], "most users"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10", "-c", "5"], "sets the users; drop -c"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "-c", "4", "--stage", "1s:4"], "drop -c"),
        (["py", "examples.agent_sdk:workload", "-u", "3", "--stage", "1s:2"], "sets the users; drop -c"),
        (["run", "http://127.0.0.1/", "--stage", "1s:10", "--profile", "ramp"], "not both"),
        (["run", "http://127.0.0.1/", "--arrival", "poisson"], "give -r"),
        (["run", "http://127.0.0.1/", "-r", "5", "--burstiness", "0.5"], "--arrival gamma"),
        (["run", "http://127.0.0.1/", "--threshold", "ttft_p95<2s"], "an LLM metric"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "--text-path", "a.b"], "--text-path is for"),
        (["run", "http://127.0.0.1/", "-H", "Content-Length: 5"], "set by squall from the body"),
        (["run", "http://127.0.0.1/", "-H", "Transfer-Encoding: chunked"], "set by squall from the body"),
        (["run", "http://user:pw@127.0.0.1/"], "holds credentials"),
        (["run", "http://127.0.0.1/", "-o", "/tmp/sq-x.json", "--html", "/tmp/sq-x.json"], "same file"),
        (
            ["run", "http://127.0.0.1/", "--threshold", "p99<1s", "--abort-grace", "1s"],
            "needs --abort-on-fail",
        ),
        (["run", "http://127.0.0.1/", "--threshold", "schedule_lag_p99<1s"], "open model"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "--input-tokens", "10:nan"], "--input-tokens"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "--output-tokens", "10:1e300"], "--output-tokens"),
        (["llm", "http://127.0.0.1/v1/chat/completions", "--input-tokens", "2000000"], "--input-tokens"),
        (
            [
                "llm",
                "http://127.0.0.1/v1/chat/completions",
                "--api-key",
                "k",
                "-H",
                "Authorization: Bearer x",
            ],
            "both set the key",
        ),
        (
            ["llm", "http://127.0.0.1/v1/chat/completions", "--max-tokens", "5", "--output-tokens", "9"],
            "use one",
        ),
        (["hunt", "http://127.0.0.1/", "--slo", "p99<1s", "--model", "m"], "are for --llm"),
        (["py", "examples.agent_sdk:workload", "--param", "concurrency=1,2", "-c", "3"], "drop -c"),
        (["serve", "--host", ""], "--host is empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("squall: error: ")
    assert needle in lines[0]
    assert "Traceback" not in res.output


def test_unknown_option_is_exit_2() -> None:
    assert CliRunner().invoke(app, ["run", "http://127.0.0.1/", "--nope"]).exit_code == 2


def test_python_dash_m_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "squall", "run", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    for opt in (
        "--connections",
        "--workers",
        "--duration",
        "--requests",
        "--rate",
        "--arrival",
        "--method",
        "--header",
        "--body",
        "--body-file",
        "--timeout",
        "--warmup",
        "--out",
        "--quiet",
        "--target-pid",
    ):
        assert opt in out.stdout, opt


def test_run_command_end_to_end(target: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    body = tmp_path / "body.txt"
    body.write_text("hello")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "squall",
            "run",
            target.url + "/",
            "-n",
            "200",
            "-c",
            "4",
            "-w",
            "1",
            "-q",
            "-m",
            "post",
            "-H",
            "X-Test: 1",
            "--body-file",
            str(body),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "200 requests" in res.stdout
    assert "latency" in res.stdout
    doc = read_json(str(out))
    assert doc["summary"]["requests"] == 200
    assert doc["summary"]["bytes_out"] == 200 * 5
    assert doc["meta"]["method"] == "POST"
    assert doc["meta"]["command"].startswith("squall run ")


def test_demo_streams_from_the_built_in_mock(tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    out, html = tmp_path / "demo.json", tmp_path / "demo.html"
    res = subprocess.run(
        [sys.executable, "-m", "squall", "demo", "-d", "2s", "-c", "16", "-o", str(out), "--html", str(html)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "ttft" in res.stdout and "tokens:" in res.stdout
    doc = read_json(str(out))
    check_result(doc)
    s = doc["summary"]
    assert s["requests"] >= 16
    assert s["llm"]["output_tokens"] > 0
    assert 140 <= s["llm"]["ttft_ms"]["p50"] <= 250
    assert doc["meta"]["llm"]["api"] == "chat"
    assert doc["timeseries"][0]["target"]["rss_mb"] > 0
    assert "report written to" in res.stderr and 'id="squall-data"' in html.read_text()


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set up\n.*?```(?:sh|bash)?\n(.*?)```", text, re.S)
    assert block, "README needs a '## Set up' section with a code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_gives_two_commands_and_ci_runs_the_second() -> None:
    demo, tests = _readme_commands()
    assert "squall demo" in demo
    assert "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_dockerfile_installs_as_the_readme_does() -> None:
    # No Docker engine runs here: check the image's install step is the README's, and the entry point.
    demo, _ = _readme_commands()
    install = demo.split("&&")[0].strip()
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN .*" + re.escape(install), docker, re.M), (install, docker)
    assert 'ENTRYPOINT ["squall"]' in docker
    assert re.search(r"^USER (?!root)\w+", docker, re.M)
    assert re.search(r"^FROM python:3\.1[1-9]-slim", docker, re.M)


def test_thresholds_decide_the_exit_code(target: ServerThread, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    base = [
        sys.executable,
        "-m",
        "squall",
        "run",
        target.url + "/delay/20",
        "-n",
        "60",
        "-c",
        "6",
        "-w",
        "1",
        "-q",
    ]
    ok = subprocess.run(
        [*base, "--threshold", "p99<2s", "--threshold", "errors<1%"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "threshold pass  p99<2s" in ok.stdout
    bad = subprocess.run(
        [*base, "--threshold", "p50<5ms", "--junit", str(junit)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "threshold FAIL  p50<5ms" in bad.stdout
    assert 'failures="1"' in junit.read_text()


def test_abort_on_fail_stops_early(target: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = subprocess.run(
        [sys.executable, "-m", "squall", "run", target.url + "/delay/20", "-d", "30s", "-c", "4", "-w", "1",
         "-q", "--threshold", "p99<5ms", "--abort-on-fail", "--abort-grace", "1s", "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "threshold"
    assert doc["summary"]["duration_s"] < 10
    assert doc["thresholds"] == [
        {"expr": "p99<5ms", "ok": False, "value": doc["summary"]["latency_ms"]["p99"]}
    ]
    assert any("run aborted" in w for w in doc["warnings"])


def test_credentials_never_reach_the_result(target: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "squall", "run", target.url + "/", "-n", "5", "-c", "1", "-w", "1", "-q"]
    args += [
        "-H",
        "Authorization: Bearer sk-secret-1",
        "--header=X-Api-Key: sk-secret-2",
        "-H",
        "X-Trace: t1",
        "-kH",
        "Cookie: sk-secret-3",
        "-HApi-Key: sk-secret-4",
    ]
    res = subprocess.run([*args, "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    command = read_json(str(out))["meta"]["command"]
    assert "secret" not in out.read_text() + res.stdout + res.stderr
    assert "'Authorization: ***'" in command and "'--header=X-Api-Key: ***'" in command
    assert "'X-Trace: t1'" in command


def test_a_closed_stdout_loses_no_file_and_keeps_the_exit_code(target: ServerThread, tmp_path: Path) -> None:
    # `squall run ... | head -1`: the summary has nowhere to go, the result and the CSV still do.
    args = [sys.executable, "-m", "squall", "run", target.url + "/", "-n", "50", "-c", "1", "-w", "1", "-q"]
    args += ["-o", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(60) == 0
    assert read_json(str(tmp_path / "r.json"))["summary"]["requests"] == 50
    assert (tmp_path / "r.csv").exists()


def test_results_that_are_not_whole_are_usage_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    res = CliRunner().invoke(app, ["report", str(good), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 2  # missing
    bad = tmp_path / "bad.json"
    for body, needle in (
        ('{"schema": "squall/result@2", "summary": {}}', "this squall reads squall/result@1"),
        ('{"schema": "squall/result@1", "summary": 5}', "'meta' is missing or malformed"),
    ):
        bad.write_text(body)
        for args in (
            ["report", str(bad), "--html", str(tmp_path / "r.html")],
            ["compare", str(bad), str(bad)],
            ["merge", str(bad), str(tmp_path / "other.json"), "-o", str(tmp_path / "m.json")],
        ):
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 2 and "Traceback" not in res.output, res.output
            assert needle in res.output, res.output
    res = CliRunner().invoke(app, ["merge", str(bad), str(bad), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "given twice" in res.output, res.output


def test_a_prometheus_port_in_use_is_refused_before_the_load() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(
            app, ["run", "http://127.0.0.1:1/", "-n", "1", "--prometheus-port", str(port)]
        )
    assert res.exit_code == 2 and "cannot listen there" in res.output, res.output


def test_a_py_factory_that_fails_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "badwl.py").write_text(
        "def raises():\n    raise RuntimeError('factory boom')\n\ndef sync():\n    return lambda user: 1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    argv = [sys.executable, "-m", "squall", "py", "badwl:raises", "-w", "1", "-c", "1", "-n", "2", "-q"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "squall: error: badwl:raises(...) failed: RuntimeError: factory boom"
    )
    argv[4] = "badwl:sync"
    out = subprocess.run(
        [*argv, "-o", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    doc = read_json(str(tmp_path / "r.json"))
    assert doc["summary"]["error_kinds"] == {"TypeError": 2}
    assert "not an awaitable" in doc["error_samples"]["TypeError"]


def _plans_handed_to_execute(monkeypatch: pytest.MonkeyPatch) -> list:  # type: ignore[type-arg]
    import squall.cli.execute

    plans: list = []  # type: ignore[type-arg]

    def execute(plan, junit=None, html=None, csv_path=None) -> int:  # type: ignore[no-untyped-def]
        plans.append(plan)
        return 0

    monkeypatch.setattr(squall.cli.execute, "execute", execute)
    return plans


@pytest.mark.parametrize("quiet", [[], ["-q"], ["--quiet"]])
def test_every_load_command_takes_quiet(
    quiet: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _plans_handed_to_execute(monkeypatch)
    (tmp_path / "s.yaml").write_text(
        "base_url: http://127.0.0.1:1\nscenarios:\n  - name: a\n    steps: [{name: p, request: {path: /}}]\n"
    )
    (tmp_path / "quiet_wl.py").write_text(
        "def factory():\n    async def call(user):\n        pass\n    return call\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    url = "http://127.0.0.1:1/v1/chat/completions"
    for args in (
        ["run", url],
        ["llm", url],
        ["scenario", str(tmp_path / "s.yaml")],
        ["py", "quiet_wl:factory"],
        ["soak", url, "-d", "10s", "--warmup", "0s"],
    ):
        res = CliRunner().invoke(app, [*args, "-w", "1", *quiet])
        assert res.exit_code == 0, (args, res.output)
    assert [p.outputs.quiet for p in plans] == [bool(quiet)] * 5


@pytest.mark.parametrize("quiet", [False, True])
def test_hunt_quiet_prints_no_line_per_level(quiet: bool, target: ServerThread) -> None:
    args = ["hunt", target.url + "/", "--slo", "errors<50%", "--start", "1", "--max", "1"]
    args += ["--step-duration", "500ms", "--warmup", "0s", "-w", "1", *(["-q"] if quiet else [])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert ("hunt: level 1:" in res.output) is not quiet
    assert "best: 1 user (" in res.output


def test_version_is_printed_and_exits_0() -> None:
    import squall

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"squall {squall.__version__}"
