"""`squall llm` and scenario LLM steps over both transports: the same counts and the same LLM metrics."""

from pathlib import Path

import pytest
from test_scenario import JOURNEYS, _file  # the same file test_scenario runs over aiohttp

from squall.engine import run
from squall.plan.plan import assemble
from squall.plan.scenario.load import load_scenario
from squall.plan.specs import LlmSpec, RequestSpec
from squall.result.document import Result
from squall.targets.mock_llm import MockThread
from squall.targets.serve import ServerThread

TRANSPORTS = ("raw", "aiohttp")
FAST = {"ttft_s": 0.02, "itl_s": 0.004, "tokens": 10}
COUNTS = ("requests", "ok", "errors", "status_codes", "error_kinds")
LLM_COUNTS = (
    "streamed",
    "unstreamed",
    "output_tokens",
    "input_tokens",
    "token_source",
    "answers_with_usage",
    "token_discrepancy_per_answer",
    "bad_chunks",
    "goodput_requests",
    "retry_after",
)


def llm(mock: MockThread, transport: str, api: str = "chat", **kw: object) -> Result:
    path = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "dify": "/v1/chat-messages"}[
        api
    ]
    spec = LlmSpec(api=api, **kw.pop("spec", {}))  # type: ignore[arg-type]
    kw.setdefault("requests", 30)
    plan = assemble(
        RequestSpec(mock.url + path, "POST"),
        workers=1,
        connections=6,
        quiet=True,
        llm=spec,
        transport=transport,
        **kw,
    )
    return run(plan.validate())


def same(got: dict[str, dict]) -> None:
    raw, aio = got["raw"], got["aiohttp"]
    for key in COUNTS:
        assert raw[key] == aio[key], (key, raw[key], aio[key])
    if "llm" in raw or "llm" in aio:
        for key in LLM_COUNTS:
            assert raw["llm"][key] == aio["llm"][key], (key, raw["llm"], aio["llm"])


@pytest.mark.parametrize(
    ("api", "stream"), [("chat", True), ("chat", False), ("completions", True), ("dify", True)]
)
def test_llm_runs_alike_on_both_transports(api: str, stream: bool) -> None:
    with MockThread(**FAST) as mock:
        got = {t: llm(mock, t, api, spec={"stream": stream}) for t in TRANSPORTS}
    same({t: r.summary for t, r in got.items()})
    for t, r in got.items():
        s = r.summary
        assert r.doc["meta"]["transport"] == t
        assert (s["requests"], s["ok"], s["llm"]["output_tokens"]) == (30, 30, 300), t
        assert s["llm"]["e2e_ms"]["p50"] >= 20, t
        assert (s["llm"]["streamed"], s["llm"]["unstreamed"]) == ((30, 0) if stream else (0, 30)), t
        if stream:
            assert s["llm"]["ttft_ms"]["p50"] >= 20, t
            assert 3 <= s["llm"]["itl_ms"]["p50"] < 20, (t, s["llm"]["itl_ms"])
        else:  # an answer read whole: no TTFT, ITL or TPOT on either transport
            assert not {"ttft", "itl", "tpot"} & set(r.doc["histograms"]), t


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("fail_429", "http_429"),
        ("drop_mid_stream", "stream_broken"),
        ("empty", "empty_response"),
        ("hang", "timeout"),
    ],
)
def test_llm_faults_are_the_same_kind_on_both_transports(fault: str, kind: str) -> None:
    with MockThread(**FAST, **{fault: 1.0}) as mock:
        got = {t: llm(mock, t, requests=8, timeout_s=0.4).summary for t in TRANSPORTS}
    same(got)
    assert got["raw"]["error_kinds"] == {kind: 8}
    if fault == "fail_429":
        assert (
            got["raw"]["llm"]["retry_after"]
            == got["aiohttp"]["llm"]["retry_after"]
            == {"count": 8, "max_s": 1.0}
        )


SCENARIO = """\
base_url: {url}
scenarios:
  - name: chat
    steps:
      - name: ask
        llm: {{path: /v1/chat/completions, model: m, prompt: "About {{{{iteration}}}}", max_tokens: 10}}
        expect: {{status: 200}}
      - name: models
        request: {{path: /v1/models}}
        extract: {{kind: "$.object"}}
"""


def scenario(path: Path, transport: str, **kw: object) -> Result:
    sc = load_scenario(path)
    plan = assemble(RequestSpec(sc.base_url + "/"), transport=transport, scenario=sc, quiet=True, **kw)  # type: ignore[arg-type]
    return run(plan.validate())


def test_scenario_llm_steps_run_alike_on_both_transports(tmp_path: Path) -> None:
    with MockThread(**FAST) as mock:
        path = tmp_path / "s.yaml"
        path.write_text(SCENARIO.format(url=mock.url))
        got = {t: scenario(path, t, requests=20, connections=4, workers=1) for t in TRANSPORTS}
    same({t: r.summary for t, r in got.items()})
    for t, r in got.items():
        steps = r.summary["steps"]
        assert r.doc["meta"]["transport"] == t
        assert (steps["ask"]["ok"], steps["models"]["ok"]) == (20, 20), t
        assert steps["ask"]["llm"]["output_tokens"] == 200, t
        assert steps["ask"]["llm"]["ttft_ms"]["p50"] >= 20, t
        assert r.summary["scenarios"]["chat"]["failed"] == 0, t
    same({t: r.summary["steps"]["ask"] for t, r in got.items()})


def test_scenario_llm_step_cut_mid_stream_on_both_transports(tmp_path: Path) -> None:
    with MockThread(**FAST, drop_mid_stream=1.0) as mock:
        path = tmp_path / "s.yaml"
        path.write_text(SCENARIO.format(url=mock.url))
        got = {t: scenario(path, t, requests=6, connections=2, workers=1).summary for t in TRANSPORTS}
    for t in TRANSPORTS:
        assert got[t]["steps"]["ask"]["error_kinds"] == {"stream_broken": 6}, t


def test_auto_runs_scenarios_on_aiohttp(tmp_path: Path) -> None:
    with MockThread(**FAST) as mock:
        path = tmp_path / "s.yaml"
        path.write_text(SCENARIO.format(url=mock.url))
        res = scenario(path, "auto", requests=4, connections=2, workers=1)
    assert res.doc["meta"]["transport"] == "aiohttp"
    assert res.summary["steps"]["ask"]["ok"] == 4


def test_journeys_with_extracts_and_checks_run_alike_on_both_transports(
    target: ServerThread, tmp_path: Path
) -> None:
    path = _file(tmp_path, JOURNEYS.format(url=target.url))
    got = {t: scenario(path, t, requests=80, connections=4, workers=1, seed=7).summary for t in TRANSPORTS}
    same(got)
    for t, s in got.items():
        writer, health = s["scenarios"]["writer"], s["scenarios"]["health"]
        assert writer["iterations"] + health["iterations"] == 80, t
        assert (writer["failed"], s["errors"]) == (0, 0), t
        # read's expect holds only if book_id (JSON) and rid (header) were extracted from create's answer
        assert s["steps"]["read"]["ok"] == writer["iterations"], t
        assert s["steps"]["ping"]["status_codes"] == {"204": health["iterations"]}, t
    assert (
        got["raw"]["scenarios"]["writer"]["iterations"] == got["aiohttp"]["scenarios"]["writer"]["iterations"]
    )


HEAD_AND_POST = """\
base_url: {url}
scenarios:
  - name: s
    steps:
      - {{name: head, request: {{method: HEAD, path: /bytes/500}}}}
      - {{name: post, request: {{method: POST, path: /echo, body: "x"}}, expect: {{body: "POST"}}}}
"""


def test_head_and_post_steps_on_both_transports(target: ServerThread, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD_AND_POST.format(url=target.url))
    got = {t: scenario(path, t, requests=20, connections=2, workers=1).summary for t in TRANSPORTS}
    same(got)
    for t, s in got.items():
        head, post = s["steps"]["head"], s["steps"]["post"]
        assert (head["ok"], head["bytes_in"], post["ok"], s["errors"]) == (20, 0, 20, 0), t
