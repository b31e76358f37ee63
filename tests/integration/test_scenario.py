"""`squall scenario`: weighted journeys, templates, data, extract and expect, per-step stats, thresholds."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli import app
from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.scenario.model import parse_json_path
from squall.plan.specs import RequestSpec
from squall.plan.thresholds import parse_threshold
from squall.report.json import read_json
from squall.result.document import Result
from squall.targets.mock_llm import MockThread
from squall.targets.serve import ServerThread
from squall.units import PlanError

JOURNEYS = """\
base_url: {url}
users: 4
data: {{csv: users.csv, per: user}}
thresholds: ["step.create.p99<5s", "errors<1%"]
scenarios:
  - name: writer
    weight: 3
    steps:
      - name: create
        request:
          method: POST
          path: /echo
          json: {{title: "t-{{{{user}}}}", n: "{{{{user}}}}"}}
          headers: {{Authorization: "Bearer {{{{token}}}}"}}
        extract: {{book_id: "$.id", auth: "$.headers.authorization", rid: "header:X-Request-Id"}}
        expect: {{status: 200, body: "Bearer tok-"}}
      - name: read
        request: {{path: "/echo/books/{{{{book_id}}}}?rid={{{{rid}}}}"}}
        expect: {{body: "/echo/books/{{{{book_id}}}}?rid={{{{book_id}}}}"}}
  - name: health
    weight: 1
    steps: [{{name: ping, request: {{path: /status/204}}}}]
"""


def _file(tmp_path: Path, text: str, csv: str = "token\ntok-a\ntok-b\n") -> Path:
    (tmp_path / "users.csv").write_text(csv)
    path = tmp_path / "journeys.yaml"
    path.write_text(text)
    return path


def _go(path: Path, **kw: object) -> Result:
    sc = load_scenario(path)
    kw.setdefault("quiet", True)
    kw.setdefault("workers", 2)
    kw.setdefault("connections", sc.users or 10)
    plan = assemble(RequestSpec(sc.base_url + "/"), transport="aiohttp", scenario=sc, **kw)  # type: ignore[arg-type]
    return run(plan.validate())


def test_journeys_run_by_weight_with_extracted_values(target: ServerThread, tmp_path: Path) -> None:
    res = _go(_file(tmp_path, JOURNEYS.format(url=target.url)), requests=200)
    s = res.summary
    writer, health = s["scenarios"]["writer"], s["scenarios"]["health"]
    assert writer["iterations"] + health["iterations"] == 200
    assert 120 <= writer["iterations"] <= 180  # weight 3 : 1
    assert writer["failed"] == 0 and writer["completed"] == writer["iterations"]
    steps = s["steps"]
    # read's expect holds only if book_id (JSON) and rid (header) were extracted from create's answer.
    assert steps["create"]["ok"] == steps["read"]["ok"] == writer["iterations"]
    assert steps["ping"]["requests"] == health["iterations"]
    assert steps["ping"]["status_codes"] == {"204": health["iterations"]}
    assert s["requests"] == 2 * writer["iterations"] + health["iterations"]
    assert s["errors"] == 0
    assert set(steps["create"]) >= {"latency_ms", "ttfb_ms", "rps", "error_kinds"}
    assert writer["duration_ms"]["p50"] > 0
    assert res.doc["meta"]["transport"] == "aiohttp"


def test_a_failed_check_ends_the_iteration_and_is_counted_under_its_step(
    target: ServerThread, tmp_path: Path
) -> None:
    text = JOURNEYS.format(url=target.url).replace("expect: {status: 200,", "expect: {status: 201,")
    res = _go(_file(tmp_path, text), requests=60)
    s = res.summary
    writer = s["scenarios"]["writer"]
    assert writer["failed"] == writer["iterations"] > 0
    assert writer["failed_at"] == {"create": writer["iterations"]}
    assert s["steps"]["create"]["error_kinds"] == {"expect_status": writer["iterations"]}
    assert s["steps"]["read"]["requests"] == 0  # never reached
    assert s["error_kinds"] == {"expect_status": writer["iterations"]}


def test_llm_steps_get_llm_stats(tmp_path: Path, check_result) -> None:  # type: ignore[no-untyped-def]
    with MockThread(ttft_s=0.01, itl_s=0.002, tokens=6) as mock:
        text = f"""
base_url: {mock.url}
scenarios:
  - name: chat
    steps:
      - name: outline
        llm:
          {{path: /v1/chat/completions, model: m, prompt: "Outline chapter {{{{iteration}}}}", max_tokens: 6}}
        expect: {{status: 200}}
      - name: models
        request: {{path: /v1/models}}
"""
        res = _go(_file(tmp_path, text), requests=20, connections=4)
    check_result(res.doc)
    step = res.summary["steps"]["outline"]
    assert step["ok"] == 20
    assert step["llm"]["output_tokens"] == 120
    assert step["llm"]["ttft_ms"]["p50"] >= 10
    assert res.summary["steps"]["models"]["ok"] == 20
    assert res.summary["llm"]["output_tokens"] == 120


def test_an_llm_step_cut_mid_stream_is_stream_broken(tmp_path: Path) -> None:
    with MockThread(ttft_s=0.005, itl_s=0.002, tokens=8, drop_mid_stream=1.0) as mock:
        text = f"""
base_url: {mock.url}
scenarios:
  - name: chat
    steps: [{{name: ask, llm: {{prompt: hi}}}}]
"""
        res = _go(_file(tmp_path, text), requests=6, connections=2, workers=1)
    # The same kind `squall llm` gives for an answer cut before its end.
    assert res.summary["steps"]["ask"]["error_kinds"] == {"stream_broken": 6}


def test_step_thresholds(target: ServerThread, tmp_path: Path) -> None:
    res = _go(
        _file(tmp_path, JOURNEYS.format(url=target.url)),
        requests=20,
        thresholds=(parse_threshold("step.create.p99<5s"), parse_threshold("step.read.p50<1us")),
    )
    verdicts = {t["expr"]: t for t in res.doc["thresholds"]}
    assert verdicts["step.create.p99<5s"]["ok"] is True
    assert verdicts["step.create.p99<5s"]["value"] == res.summary["steps"]["create"]["latency_ms"]["p99"]
    assert verdicts["step.read.p50<1us"]["ok"] is False
    assert res.exit_code() == 1
    with pytest.raises(PlanError, match="no step named 'nope'"):  # a misspelt step is caught before the run
        _go(
            _file(tmp_path, JOURNEYS.format(url=target.url)),
            thresholds=(parse_threshold("step.nope.p99<1s"),),
        )


def test_cli_runs_a_file_and_applies_its_thresholds(target: ServerThread, tmp_path: Path) -> None:
    path = _file(tmp_path, JOURNEYS.format(url=target.url))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["scenario", str(path), "-n", "40", "-w", "1", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = read_json(out)
    assert [t["expr"] for t in doc["thresholds"]] == ["step.create.p99<5s", "errors<1%"]
    assert doc["meta"]["connections"] == 4


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (("users: 4", "users: 4\nuser: 5"), ":3: user: unknown field"),
        (("weight: 3", "weight: -3"), ":7: scenarios[0].weight: must be a finite number greater than 0"),
        (("$.id", "id"), "extract.book_id: a JSONPath starts with $"),
        (("{{book_id}}?rid", "{{bookid}}?rid"), "uses {{bookid}}, which no earlier step extracts"),
        (
            ("method: POST", "method: FETCH"),
            ":11: scenarios[0].steps[0] (create).request.method: must be one of",
        ),
        (("base_url: ", "base_url: ftp:"), ":1: base_url: must be an http"),
        (("steps: [{name: ping", "steps: [{name: 'p i n g'"), "must be a name"),
        (("users: 4", "users: [4"), "not valid YAML"),
        (('"errors<1%"]', '"errors<1%", "foo<1s"]'), ":4: thresholds[2]: 'foo<1s': unknown metric"),
        (("users: 4", 'stages: ["1s:4", "abc"]'), ":2: stages[1]: 'abc': expected DURATION:TARGET"),
        (("users: 4", "think: soon"), ":2: think: 'soon': expected 1s-5s"),
        (("name: read", "name: create"), "'create' is used twice in this journey"),
    ],
)
def test_bad_files_name_the_line_and_field(
    target: ServerThread, tmp_path: Path, edit: tuple[str, str], needle: str
) -> None:
    text = JOURNEYS.format(url=target.url).replace(*edit)
    with pytest.raises(PlanError, match=None) as e:
        load_scenario(_file(tmp_path, text))
    assert needle in str(e.value), str(e.value)
    res = CliRunner().invoke(app, ["scenario", str(tmp_path / "journeys.yaml")])
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_bad_data_files(target: ServerThread, tmp_path: Path) -> None:
    text = JOURNEYS.format(url=target.url)
    for csv, needle in (
        ("token\n", "no rows"),
        ("to ken\nx\n", "not a variable"),
        ("token\na,b\n", "2 fields"),
    ):
        with pytest.raises(PlanError, match=needle):
            load_scenario(_file(tmp_path, text, csv))
    with pytest.raises(PlanError, match="cannot be read"):
        load_scenario(tmp_path / "missing.yaml")


def test_json_path_subset() -> None:
    doc = {"a": {"b": [1, {"c": "x"}]}, "k-1": 5}
    assert parse_json_path("$.a.b[1].c").find(doc) == "x"
    assert parse_json_path("$.a.b[-2]").find(doc) == 1
    assert parse_json_path("$['k-1']").find(doc) == 5
    assert parse_json_path("$").find(doc) == doc
    for missing in ("$.a.z", "$.a.b[5]", "$.a.b.c"):
        with pytest.raises(LookupError):
            parse_json_path(missing).find(doc)
    with pytest.raises(ValueError, match="subset"):
        parse_json_path("$..a")


def test_open_model_starts_iterations_on_schedule(target: ServerThread, tmp_path: Path) -> None:
    # 40 iterations/s for 1 s, constant arrivals: exactly 40 journeys, whatever their steps take.
    res = _go(_file(tmp_path, JOURNEYS.format(url=target.url)), rate=40.0, duration_s=1.0)
    s = res.summary
    assert sum(j["iterations"] for j in s["scenarios"].values()) == 40
    assert s["unsent"] == 0 and s["dropped"] == 0
    assert res.doc["meta"]["model"] == "open"


def test_an_expected_error_status_is_a_pass(target: ServerThread, tmp_path: Path) -> None:
    text = f"""
base_url: {target.url}
scenarios:
  - name: negative
    steps:
      - name: missing
        request: {{path: /status/404}}
        expect: {{status: 404}}
      - name: after
        request: {{path: /}}
"""
    s = _go(_file(tmp_path, text), requests=20, connections=2).summary
    assert s["steps"]["missing"]["ok"] == 20 and s["steps"]["missing"]["errors"] == 0
    assert s["steps"]["missing"]["status_codes"] == {"404": 20}
    assert s["steps"]["after"]["ok"] == 20 and s["errors"] == 0


def test_shards_of_a_scenario_merge_their_steps_exactly(target: ServerThread, tmp_path: Path) -> None:
    path = _file(tmp_path, JOURNEYS.format(url=target.url))
    outs = []
    for i in range(2):
        out = tmp_path / f"s{i}.json"
        args = ["scenario", str(path), "-n", "30", "-w", "1", "-q", "-o", str(out), "--shard", f"{i}/2"]
        res = CliRunner().invoke(app, [*args, "--threshold", "step.read.p50<1us"])
        assert res.exit_code == 1, res.output  # the step threshold fails on each shard
        outs.append(read_json(out))
    merged = tmp_path / "m.json"
    res = CliRunner().invoke(
        app, ["merge", *(str(tmp_path / f"s{i}.json") for i in range(2)), "-o", str(merged)]
    )
    assert res.exit_code == 1, res.output  # and is judged again on the merged steps
    m = read_json(merged)
    for step in ("create", "read", "ping"):
        got = m["summary"]["steps"][step]
        assert got["requests"] == sum(d["summary"]["steps"][step]["requests"] for d in outs)
        assert got["latency_ms"]["max"] == max(d["summary"]["steps"][step]["latency_ms"]["max"] for d in outs)
    for journey in ("writer", "health"):
        got = m["summary"]["scenarios"][journey]
        assert got["iterations"] == sum(d["summary"]["scenarios"][journey]["iterations"] for d in outs)
        assert got["weight"] == outs[0]["summary"]["scenarios"][journey]["weight"]
    assert sum(v["iterations"] for v in m["summary"]["scenarios"].values()) == 30
    failed = {t["expr"]: t["ok"] for t in m["thresholds"]}
    assert failed["step.read.p50<1us"] is False and failed["step.create.p99<5s"] is True


def test_the_command_line_shape_takes_the_place_of_the_files_stages(
    target: ServerThread, tmp_path: Path
) -> None:
    text = JOURNEYS.format(url=target.url).replace("users: 4\n", 'stages: ["1s:4", "1s:0"]\n')
    path = _file(tmp_path, text)
    for extra, needle in (
        (["-u", "3"], "drop -u/--users, or replace the stages"),
        (["-d", "2s"], "drop -d/--duration, or replace"),
    ):
        res = CliRunner().invoke(app, ["scenario", str(path), "-q", *extra])
        assert res.exit_code == 2 and needle in res.output, res.output
    out = tmp_path / "r.json"
    args = [
        "scenario",
        str(path),
        "-q",
        "-w",
        "1",
        "-o",
        str(out),
        "--profile",
        "step",
        "-d",
        "1s",
        "-u",
        "2",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    shape = read_json(out)["meta"]["shape"]
    assert shape["kind"] == "users" and max(s["target"] for s in shape["stages"]) == 2
