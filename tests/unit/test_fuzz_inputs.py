"""Random option values and input files through the parsers: a PlanError (one line, exit 2) or a valid
value, never another exception."""

from __future__ import annotations

import contextlib
import json
import math
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from squall.plan import prompts
from squall.plan.build import LoadFlags, api_keys, build
from squall.plan.load import parse_stage, parse_stages, parse_think
from squall.plan.py import params
from squall.plan.scenario.load import load_scenario, parse_scenario
from squall.plan.shard import parse_shard
from squall.plan.specs import RequestSpec, parse_goodput
from squall.plan.thresholds import parse_threshold
from squall.result.read import read_result
from squall.studies.soak import parse_target_cmd
from squall.units import PlanError, parse_duration, parse_header, parse_percent

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FILES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like option values: digits, units, operators, separators, and anything else.
_ALPHABET = string.digits + "._-+:/%<>=ehmnsuxafiEXPINFA µ,;'\"\\\r\n\t\x00"
values = st.one_of(st.text(alphabet=_ALPHABET, max_size=24), st.text(max_size=24))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "9" * 400, "0", "-0", ".5", "1_000", "١٢"]),
)
units = st.sampled_from(["", "s", "ms", "us", "µs", "m", "h", "%", "/s", "x"])


def _only_plan_errors(parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except PlanError as e:
        assert "\n" not in str(e) or "\n" in text, str(e)  # one line, unless it quotes the input's own
        return None


@FAST
@given(st.one_of(values, st.builds(str.__add__, numbers, units)))
@example("nan")
@example("1e400s")
def test_durations(text: str) -> None:
    seconds = _only_plan_errors(parse_duration, text)
    if seconds is not None:
        assert math.isfinite(seconds) and 0 <= seconds <= 30 * 24 * 3600


@FAST
@given(values)
def test_headers(text: str) -> None:
    got = _only_plan_errors(parse_header, text)
    if got is not None:
        name, value = got
        assert name and "\r" not in value and "\n" not in value
        value.encode("latin-1")


@FAST
@given(st.one_of(values, st.builds(str.__add__, numbers, units)))
def test_percentages(text: str) -> None:
    got = _only_plan_errors(parse_percent, text)
    if got is not None:
        assert 0 <= got <= 10_000


metrics = st.sampled_from(
    [
        "p99",
        "p50",
        "mean",
        "errors",
        "error_rate",
        "rps",
        "requests",
        "tokens_per_s",
        "ttft_p95",
        "step.a.p99",
    ]
)
ops = st.sampled_from(["<", ">", "<=", ">=", "=", ""])


@FAST
@given(st.one_of(values, st.builds(lambda m, o, n, u: m + o + n + u, metrics, ops, numbers, units)))
@example("rps>nan")
@example("rps>inf")
@example("requests>" + "9" * 400)
def test_thresholds(text: str) -> None:
    got = _only_plan_errors(parse_threshold, text)
    if got is not None:
        assert math.isfinite(got.limit)


@FAST
@given(st.one_of(values, st.builds(lambda d, n, u: d + ":" + n + u, values, numbers, units)))
@example("1s:" + "9" * 400)
@example("1s:" + "9" * 400 + "/s")
def test_stages(text: str) -> None:
    got = _only_plan_errors(lambda t: parse_stages([t, t]), text)
    if got is not None:
        assert all(math.isfinite(s.target) and s.target >= 0 for s in got.stages)
    _only_plan_errors(parse_stage, text)


@FAST
@given(
    st.one_of(values, st.builds(lambda a, b: a + "-" + b, values, values), st.builds("exp:".__add__, values))
)
def test_think(text: str) -> None:
    _only_plan_errors(parse_think, text)


@FAST
@given(st.one_of(values, st.builds(lambda a, b: a + ":" + b, numbers, numbers)))
def test_token_sizes(text: str) -> None:
    got = _only_plan_errors(lambda t: prompts.parse_size(t, "--input-tokens"), text)
    if got is not None:
        assert got[0] >= 1 and math.isfinite(got[1])


@FAST
@given(st.one_of(values, st.builds(lambda a, b: a + "/" + b, numbers, numbers)))
def test_shards_goodput_target_cmd_params(text: str) -> None:
    _only_plan_errors(parse_shard, text)
    _only_plan_errors(parse_goodput, text)
    _only_plan_errors(parse_target_cmd, text)
    _only_plan_errors(lambda t: params([t]), text)


hosts = st.sampled_from(["127.0.0.1", "[::1]", "localhost", "", "[::1", "127.0.0.1:", "a b", "é", "%00"])
schemes = st.sampled_from(["http://", "https://", "ftp://", "", "http:/", "HTTP://"])
ports = st.one_of(st.just(""), st.builds(":{}".format, st.one_of(numbers, values)))


@FAST
@given(st.one_of(values, st.builds(lambda s, h, p, rest: s + h + p + rest, schemes, hosts, ports, values)))
@example("http://[::1")
@example("http://127.0.0.1:99999/")
def test_urls(url: str) -> None:
    with contextlib.suppress(PlanError):
        build(RequestSpec(url=url), LoadFlags(), requests=1)


# ---- files: scenario YAML, prompts, keys, data, results ----

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        ["/", "/a/{{user}}", "{{nope}}", "GET", "1s", "p99<1s", "30s:5", "$.a", "http://127.0.0.1:9"]
    ),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "steps",
                    "request",
                    "llm",
                    "path",
                    "method",
                    "json",
                    "body",
                    "headers",
                    "extract",
                    "expect",
                    "weight",
                    "prompt",
                    "status",
                    "x",
                    "csv",
                    "per",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=25,
)
TOP = ["base_url", "users", "duration", "think", "stages", "thresholds", "data", "scenarios", "headers"]
scenario_docs = st.one_of(
    trees,
    st.fixed_dictionaries(
        {"base_url": st.sampled_from(["http://127.0.0.1:9", "http://127.0.0.1:9/", "x"]), "scenarios": trees},
        optional={k: trees for k in TOP if k not in ("base_url", "scenarios")},
    ),
)


@FILES
@given(scenario_docs)
def test_scenario_structures(tmp_path: Path, doc: Any) -> None:
    with contextlib.suppress(PlanError):
        parse_scenario(doc, "s.yaml", tmp_path)


@FILES
@given(st.one_of(st.binary(max_size=300), scenario_docs.map(lambda d: _dump(d).encode())))
@example(("json: " + "[" * 500 + "]" * 500).encode())
@example(b"a: &a [1]\nb: *a\nc: !!python/object:os.system x\n")
def test_scenario_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(data)
    with contextlib.suppress(PlanError):
        load_scenario(path)


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc)
    except (yaml.YAMLError, ValueError):
        return "x: 1\n"


@FILES
@given(st.binary(max_size=300), st.sampled_from([".txt", ".jsonl", ".json", ""]))
@example(b'{"messages": [null]}\n', ".jsonl")
@example(b'{"prompt": "a", "max_tokens": true}\n', ".jsonl")
def test_prompt_and_key_files(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"p{suffix}"
    path.write_bytes(data)
    try:
        got = prompts.load(path)
        assert got
    except PlanError:
        pass
    with contextlib.suppress(PlanError):
        api_keys([], path)


@FILES
@given(st.binary(max_size=200))
def test_data_files(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "d.csv").write_bytes(data)
    doc = {
        "base_url": "http://127.0.0.1:9",
        "data": {"csv": "d.csv"},
        "scenarios": [{"name": "a", "steps": [{"name": "s", "request": {"path": "/"}}]}],
    }
    with contextlib.suppress(PlanError):
        parse_scenario(doc, "s.yaml", tmp_path)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@FILES
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "schema": st.just("squall/result@1"),
                "meta": json_values,
                "summary": json_values,
                "timeseries": json_values,
                "histograms": st.dictionaries(st.sampled_from(["latency", "ttfb"]), json_values, max_size=2),
                "counters": json_values,
            },
            optional={"parts": json_values},
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_result_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(data)
    with contextlib.suppress(PlanError):
        read_result(path)


def test_the_schema_in_the_fuzzer_is_the_one_squall_reads() -> None:
    from squall.result.document import SCHEMA

    assert SCHEMA == "squall/result@1", "update test_result_files's schema"


@pytest.mark.parametrize("text", ["1s:" + "9" * 400, "1s:" + "9" * 400 + "/s"])
def test_a_stage_target_beyond_floats_is_refused(text: str) -> None:
    with pytest.raises(PlanError):
        parse_stages([text])
