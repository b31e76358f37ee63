"""plan/build.py and plan/shard.py: the one builder, the secret hiding, the shard split."""

import errno
import os
import sys
from pathlib import Path

import pytest

from squall.plan.build import (
    LoadFlags,
    TargetFlags,
    api_keys,
    body,
    build,
    command_line,
    listen_address,
    scrape,
    target,
)
from squall.plan.load import Shape, Stage
from squall.plan.shard import parse_shard, share, split_fields, split_shape
from squall.plan.specs import RequestSpec
from squall.units import PlanError

URL = RequestSpec("http://127.0.0.1:8080/")


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["run", "URL", "--api-key", "sk-1"], "squall run URL --api-key '***'"),
        (["llm", "URL", "--api-key=sk-1"], "squall llm URL '--api-key=***'"),
        (["run", "URL", "-H", "Authorization: Bearer x"], "squall run URL -H 'Authorization: ***'"),
        (["run", "URL", "-kH", "x-api-key: k"], "squall run URL -kH 'x-api-key: ***'"),
        (["run", "URL", "--header=Cookie: a=b"], "squall run URL '--header=Cookie: ***'"),
        (["run", "URL", "-HCookie: a=b"], "squall run URL '-HCookie: ***'"),
        (["run", "URL", "-H", "X-Trace: 1"], "squall run URL -H 'X-Trace: 1'"),
        (["run", "caf\udcc3"], "squall run 'caf\\xc3'"),
    ],
)
def test_command_line_hides_secrets(argv: list[str], want: str) -> None:
    assert command_line(argv) == want


def test_build_takes_the_flags_as_typed() -> None:
    flags = LoadFlags(workers=2, duration="3s", timeout="2s", warmup="1s", seed=7, threshold=("p99<1s",))
    plan = build(URL, flags, connections=8, argv=["run", "URL"])
    got = (
        plan.spread.workers,
        plan.load.connections,
        plan.stop.duration_s,
        plan.client.timeout_s,
        plan.stop.warmup_s,
        plan.seed,
    )
    assert got == (2, 8, 3.0, 2.0, 1.0, 7)
    assert ([t.expr for t in plan.thresholds], plan.command, plan.client.tls_verify) == (
        ["p99<1s"],
        "squall run URL",
        True,
    )


def test_build_defaults_connections_only_when_not_given() -> None:
    assert build(URL, LoadFlags(workers=1), argv=[]).load.connections == 64
    assert build(URL, LoadFlags(workers=1), default_connections=10, argv=[]).load.connections == 10
    shaped = build(URL, LoadFlags(workers=1, stage=("2s:5",)), default_connections=10, argv=[])
    assert (shaped.load.connections, shaped.stop.duration_s) == (5, 2.0)


def test_build_splits_a_shard_and_its_stages() -> None:
    flags = LoadFlags(workers=1, stage=("1s:10", "1s:3"), shard="1/4", seed=2)
    plan = build(URL, flags, argv=[])
    assert plan.load.shape == Shape("users", (Stage(1.0, 3), Stage(1.0, 1)))  # of 10: 3 3 2 2; of 3: 1 1 1 0
    assert (plan.spread.shard, plan.seed) == ((1, 4), 2 * 1_000_003 + 1)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (LoadFlags(abort_grace="1s"), "--abort-grace needs --abort-on-fail"),
        (LoadFlags(abort_on_fail=True), "--abort-on-fail needs at least one --threshold"),
        (LoadFlags(junit=Path("j.xml")), "--junit needs at least one --threshold"),
        (LoadFlags(stage=("1s:5",), profile="ramp"), "use either --stage or --profile, not both"),
        (LoadFlags(stage=("1s:5",), duration="1s"), "--stage sets the duration; drop -d/--duration"),
        (LoadFlags(profile="ramp"), "--profile needs -d/--duration"),
        (LoadFlags(stage=("1s:5/s",), rate=3.0), "--stage 1s:5/s sets the rate; drop -r/--rate"),
        (LoadFlags(shard="4/4"), "--shard '4/4': I must be from 0 to N-1"),
        (LoadFlags(start_at=1.0), "--start-at 1 is not within a day of now"),
    ],
)
def test_build_refuses(flags: LoadFlags, message: str) -> None:
    with pytest.raises(PlanError) as e:
        build(URL, flags, argv=[])
    assert str(e.value).startswith(message)


def test_build_refuses_users_with_a_users_stage() -> None:
    with pytest.raises(PlanError, match=r"^--stage 1s:5 sets the users; drop -c \(or -u\)$"):
        build(URL, LoadFlags(stage=("1s:5",)), connections=3, argv=[])


def test_shard_shares_add_up() -> None:
    assert [share(10, i, 4) for i in range(4)] == [3, 3, 2, 2]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("1", "a/b", "1/2/3"):
        with pytest.raises(PlanError, match="is not I/N"):
            parse_shard(bad)
    fields = {"connections": 10, "rate": 100.0, "requests": 5, "seed": 0}
    split_fields("3/4", fields)
    assert fields == {"connections": 2, "rate": 25.0, "requests": 1, "seed": 3, "shard": (3, 4)}
    with pytest.raises(PlanError, match="3 connections cannot be split 4 ways"):
        split_fields("0/4", {"connections": 3})
    with pytest.raises(PlanError, match="-n is smaller than the number of shards"):
        split_fields("3/4", {"connections": 8, "requests": 3})
    rate = Shape("rate", (Stage(1.0, 10.0),))
    assert split_shape(rate, 0, 4) == Shape("rate", (Stage(1.0, 2.5),))


def test_listen_address() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(PlanError) as refused:
            listen_address(str(port))
        why = os.strerror(errno.EADDRINUSE)  # (the errno's text only: no address tuple)
        assert str(refused.value) == f"--prometheus-port '{port}': cannot listen there: {why}"
    assert listen_address(f"127.0.0.1:{port}") == ("127.0.0.1", port)
    assert listen_address(str(port)) == ("127.0.0.1", port)
    with pytest.raises(PlanError, match="is not PORT or HOST:PORT"):
        listen_address("x")
    with pytest.raises(PlanError, match="the port must be from 1 to 65535"):
        listen_address("0")


def test_scrape_refuses_a_port_that_is_no_port() -> None:
    for url in ("http://127.0.0.1:99999/metrics", "http://127.0.0.1:abc/metrics", "http://h:0/m"):
        with pytest.raises(PlanError, match=f"--scrape '{url}': the port must be a number from 1 to 65535"):
            scrape((url,), ())
    assert scrape(("http://h/m", "http://h/m"), ()).urls == ("http://h/m",)


def test_body_and_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (body(None, None), body("hé", None)) == (b"", "hé".encode())
    f = tmp_path / "b"
    f.write_bytes(b"\x00\x01")
    assert body(None, f) == b"\x00\x01"
    with pytest.raises(PlanError, match="use either --body or --body-file, not both"):
        body("a", f)
    monkeypatch.delenv("SQUALL_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "env")
    keys = tmp_path / "keys"
    keys.write_text("a\n\n b \n")
    assert (api_keys(None, None), api_keys(["k"], keys)) == (("env",), ("k", "a", "b"))
    keys.write_text("\n")
    with pytest.raises(PlanError, match="holds no key"):
        api_keys(None, keys)


def test_target_of_hunt_and_soak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from squall.plan.llm import LlmFlags

    monkeypatch.delenv("SQUALL_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    request, fields = target("http://127.0.0.1:1/x", TargetFlags(method="post", header=("A: b",), body="z"))
    assert (request.method, request.headers, request.body, fields) == ("POST", (("A", "b"),), b"z", {})
    body = tmp_path / "body"
    body.write_bytes(b"from a file")
    request, fields = target("http://127.0.0.1:1/x", TargetFlags(method="put", body_file=body))
    assert (request.method, request.body) == ("PUT", b"from a file")
    # --llm takes every option `squall llm` takes: prompts, keys (the environment's too), --api, streaming.
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    opts = LlmFlags(max_tokens=5, prompts=prompts, api="completions", no_stream=True, key_per="user")
    request, fields = target("http://127.0.0.1:1/v1/chat/completions", TargetFlags(llm=True), opts, seed=1)
    spec = fields["llm"]
    assert (request.method, spec.api, spec.max_tokens, spec.stream) == ("POST", "completions", 5, False)
    assert ([p.text for p in spec.prompts], spec.api_keys, spec.key_per) == (
        ["one", "two"],
        ("from-env",),
        "user",
    )
    opts = LlmFlags(api_key=("k1", "k2"))
    assert target("http://127.0.0.1:1/v1/chat/completions", TargetFlags(llm=True), opts)[1][
        "llm"
    ].api_keys == (
        "k1",
        "k2",
    )
    for what, llm, message in [
        (TargetFlags(), LlmFlags(model="m"), "LLM options (--model) are for --llm: add --llm or drop them"),
        (
            TargetFlags(),
            LlmFlags(prompts=prompts, api_key=("k",)),
            "LLM options (--prompts, --api-key) are for --llm",
        ),
        (
            TargetFlags(llm=True, body="x"),
            None,
            "--llm POSTs the LLM request itself: drop -m, -b and --body-file",
        ),
        (TargetFlags(param=("a=1",)), None, "--param and --tracemalloc are for a Python workload"),
        (
            TargetFlags(scenario=Path("s.yaml"), header=("A: b",)),
            None,
            "-m, -H, -b and --body-file shape one",
        ),
        (TargetFlags(body="x", body_file=body), None, "use either --body or --body-file, not both"),
    ]:
        with pytest.raises(PlanError) as e:
            target("http://127.0.0.1:1/", what, llm)
        assert str(e.value).startswith(message)
    with pytest.raises(PlanError, match=r"^give the URL \(or --scenario FILE\)$"):
        target(None, TargetFlags())


def _scenario(extra: dict) -> object:  # a Scenario parsed from a dict, as from its YAML file
    from squall.plan.scenario.load import parse_scenario

    doc = {
        "base_url": "http://127.0.0.1:1",
        "scenarios": [{"name": "a", "steps": [{"name": "p", "request": {"path": "/"}}]}],
    }
    return parse_scenario({**doc, **extra}, "s.yaml", Path("."))


def test_scenario_flags_merge_the_file_and_let_the_command_line_win() -> None:
    from squall.plan.build import scenario_flags

    sc = _scenario({"duration": "5s", "think": "1s", "thresholds": ["p99<1s"]})
    got = scenario_flags(sc, LoadFlags(threshold=("errors<1%",)), users=None)  # type: ignore[arg-type]
    assert (got.duration, got.think, got.threshold, got.stage) == ("5.0s", "1s", ("p99<1s", "errors<1%"), ())
    got = scenario_flags(sc, LoadFlags(duration="2s", think="3s"), users=None)  # type: ignore[arg-type]
    assert (got.duration, got.think) == ("2s", "3s")
    staged = _scenario({"stages": ["1s:4", "2s:8"]})
    got = scenario_flags(staged, LoadFlags(), users=None)  # type: ignore[arg-type]
    assert (got.stage, got.duration) == (("1s:4", "2s:8"), None)
    assert scenario_flags(staged, LoadFlags(profile="ramp", duration="4s"), users=3).stage == ()  # type: ignore[arg-type]
    assert scenario_flags(staged, LoadFlags(stage=("1s:9",)), users=None).stage == ("1s:9",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "flags", "users", "message"),
    [
        (
            {"stages": ["1s:4"]},
            LoadFlags(duration="2s"),
            3,
            "set the users and the duration; drop -d/--duration and -u/--users",
        ),
        ({"think": "1s"}, LoadFlags(rate=5.0), None, "s.yaml sets think: 1s, which paces users"),
        ({"think": "1s"}, LoadFlags(stage=("2s:5/s",)), None, "s.yaml sets think: 1s, which paces users"),
    ],
)
def test_scenario_flags_refuse_a_clash(
    extra: dict, flags: LoadFlags, users: int | None, message: str
) -> None:
    from squall.plan.build import scenario_flags

    with pytest.raises(PlanError, match=message):
        scenario_flags(_scenario(extra), flags, users)  # type: ignore[arg-type]
    scenario_flags(_scenario(extra), LoadFlags(), None)  # type: ignore[arg-type]


def test_study_plan_keeps_the_scenario_files_think(tmp_path: Path) -> None:
    from squall.plan.build import study_plan
    from squall.plan.load import Closed, Think

    f = tmp_path / "s.yaml"
    f.write_text(
        "base_url: http://127.0.0.1:1\nthink: 2s\n"
        "scenarios:\n  - name: a\n    steps: [{name: p, request: {path: /}}]\n"
    )
    plan = study_plan(None, TargetFlags(scenario=f), LoadFlags(workers=1), 4, argv=[])
    assert plan.load == Closed(connections=4, think=Think("uniform", 2.0, 2.0, 2.0))
    assert plan.scenario is not None and plan.request.url == "http://127.0.0.1:1/"


def test_a_shard_gets_its_part_of_the_typed_load_and_stop() -> None:
    from squall.plan.load import Open
    from squall.plan.shard import Spread

    plan = build(URL, LoadFlags(workers=1, shard="1/4", rate=100.0), connections=10, requests=10, argv=[])
    assert (plan.load, plan.stop.requests, plan.spread) == (
        Open(rate=25.0, connections=3),
        3,
        Spread(workers=1, shard=(1, 4)),
    )


def test_study_plan_timeout_defaults_to_that_of_the_command_it_drives(tmp_path: Path) -> None:
    from squall.plan.build import study_plan

    url = "http://127.0.0.1:1/v1/chat/completions"
    mod = tmp_path / "study_timeout_mod.py"
    mod.write_text("async def it(user):\n    pass\n\ndef factory():\n    return it\n")
    sys.path.insert(0, str(tmp_path))
    try:
        got = [
            study_plan(u, what, LoadFlags(workers=1, timeout=t), 4, argv=[]).client.timeout_s
            for u, what, t in [
                (url, TargetFlags(), None),
                (url, TargetFlags(llm=True), None),
                (None, TargetFlags(py="study_timeout_mod:factory"), None),
                (url, TargetFlags(llm=True), "5s"),
            ]
        ]
    finally:
        sys.path.remove(str(tmp_path))
    assert got == [30.0, 120.0, 60.0, 5.0]


def test_users_are_numbered_across_workers_and_shard_boxes() -> None:
    from squall.plan.shard import Spread

    assert [Spread(workers=2).first_user(5, w) for w in (0, 1)] == [0, 3]
    # Box 1 of 2 with 4 users of its own: its users are 4..7, so prefixes and keys per user spread over both.
    assert [Spread(workers=2, shard=(1, 2)).first_user(4, w) for w in (0, 1)] == [4, 6]
