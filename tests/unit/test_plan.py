import re

import pytest

from squall.plan.load import Closed, Open, parse_stages, parse_think
from squall.plan.plan import Client, Outputs, Plan, SelfCheck, assemble
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.plan.stop import Stop
from squall.units import PlanError, parse_duration, parse_header


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1.5", 1.5),
        ("100us", 1e-4),
        (".5s", 0.5),
    ],
)
def test_parse_duration(text: str, want: float) -> None:
    assert parse_duration(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["", "ten", "10x", "-1s", "1 s s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(PlanError, match="not a duration"):
        parse_duration(text)


def test_parse_header() -> None:
    assert parse_header("X-Token:  abc def ") == ("X-Token", "abc def")
    assert parse_header("Empty:") == ("Empty", "")
    for bad in ["NoColon", ": v", "Bad Name: v", "K: a\nb"]:
        with pytest.raises(PlanError):
            parse_header(bad)


def test_request_spec_parts() -> None:
    spec = RequestSpec("http://127.0.0.1:8080/a/b?x=1")
    assert (spec.scheme, spec.host, spec.port) == ("http", "127.0.0.1", 8080)
    assert RequestSpec("https://example.test").port == 443


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("not a url", "not an http"),
        ("ftp://h/", "not an http"),
        ("http://", "no host"),
        ("http://h:99999/", "not valid"),
    ],
)
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        Plan(RequestSpec(url)).validate()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"connections": 0}, "--connections"),
        ({"workers": -1}, "--workers"),
        ({"duration_s": -1.0}, "--duration"),
        ({"requests": 0}, "--requests"),
        ({"rate": -5.0}, "--rate"),
        ({"arrival": "burst"}, "--arrival"),
        ({"timeout_s": 0.0}, "--timeout"),
        ({"warmup_s": -1.0}, "--warmup"),
        ({"transport": "curl"}, "--transport"),
    ],
)
def test_bad_numbers(kwargs: dict, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        assemble(RequestSpec("http://127.0.0.1/"), **kwargs).validate()


def test_defaults_and_caps() -> None:
    plan = Plan(
        RequestSpec("http://127.0.0.1/"), load=Closed(connections=3), spread=Spread(workers=8)
    ).validate()
    assert plan.stop.duration_s == 10.0
    assert plan.spread.workers == 3
    plan = Plan(
        RequestSpec("http://127.0.0.1/"),
        load=Closed(connections=64),
        spread=Spread(workers=8),
        stop=Stop(requests=2),
    ).validate()
    assert plan.spread.workers == 2
    assert plan.stop.duration_s is None


def test_share_splits_evenly() -> None:
    plan = Plan(
        RequestSpec("http://127.0.0.1/"), load=Closed(connections=10), spread=Spread(workers=3)
    ).validate()
    assert [plan.spread.share(10, i) for i in range(3)] == [4, 3, 3]
    assert sum(plan.spread.share(1001, i) for i in range(3)) == 1001


def test_open_model_is_the_load_type() -> None:
    req = RequestSpec("http://127.0.0.1/")
    assert (Plan(req).open_model, Plan(req, load=Open(rate=5.0)).open_model) == (False, True)
    assert (Closed().rate, Open(rate=5.0).think) == (None, None)


def test_loads_validate_and_take_their_shape_peak() -> None:
    users, rates = parse_stages(["1s:10", "2s:40"]), parse_stages(["1s:50/s", "1s:0/s"])
    assert Closed(connections=3, shape=users).validate() == Closed(connections=40, shape=users)
    assert Open(rate=1.0, shape=rates).validate() == Open(rate=50.0, shape=rates)
    assert Open(rate=2.0, arrival="gamma", burstiness=0.5).validate().burstiness == 0.5
    bad = [
        (Closed(connections=0), "--connections must be from 1 to 1,000,000 (got 0)"),
        (Closed(shape=rates), "--stage with a rate (30s:200/s) is the open model: give it a rate"),
        (Open(rate=0.0), "--rate must be from 0.001 to 10,000,000 requests/s (got 0.0)"),
        (Open(rate=1.0, arrival="burst"), "--arrival 'burst' is not one of constant, poisson, gamma"),
        (
            Open(rate=1.0, burstiness=2.0),
            "--burstiness shapes --arrival gamma; add --arrival gamma or drop it",
        ),
        (
            Open(rate=1.0, shape=users),
            "--stage with users (30s:100) is the closed model; it cannot take --rate",
        ),
        (Open(rate=1.0, max_backlog=-1), "the backlog must not be negative"),
    ]
    for load, message in bad:
        with pytest.raises(PlanError) as e:
            load.validate()
        assert str(e.value) == message


def test_stop_spread_and_client_validate_their_own_fields() -> None:
    bad = [
        (Stop(duration_s=0.0), "--duration must be greater than 0 and at most 30 days"),
        (Stop(requests=0), "--requests must be from 1 to 4611686018427387904 (got 0)"),
        (Stop(warmup_s=-1.0), "--warmup must be from 0 to 30 days"),
        (Stop(drain_s=-1.0), "drain time must not be negative"),
        (Stop(abort_grace_s=-1.0), "--abort-grace must be from 0 to 30 days"),
        (Spread(workers=0), "--workers must be from 1 to 1024 (got 0)"),
        (Spread(workers=1, shard=(4, 4)), "--shard 4/4: I must be from 0 to N-1"),
        (Client(transport="curl"), "--transport 'curl' is not one of auto, raw, aiohttp"),
        (Client(transport="py"), "--transport 'py' is not one of auto, raw, aiohttp"),
        (Client(timeout_s=0.0), "--timeout must be greater than 0 and at most 30 days"),
    ]
    for part, message in bad:
        with pytest.raises(PlanError) as e:
            part.validate()
        assert str(e.value) == message
    Client(transport="py").validate(in_process=True)
    Client(transport="auto").validate()


def test_spread_shares_add_up_and_start_where_the_last_ended() -> None:
    spread = Spread(workers=3)
    assert [spread.share(10, w) for w in range(3)] == [4, 3, 3]
    assert [spread.share_offset(10, w) for w in range(4)] == [0, 4, 7, 10]


def test_assemble_puts_each_flat_name_in_its_part() -> None:
    req = RequestSpec("http://127.0.0.1/")
    think = parse_think("1s")
    got = assemble(
        req, connections=5, think=think, duration_s=2.0, workers=2, transport="aiohttp", quiet=True, seed=9
    )
    want = Plan(
        req,
        load=Closed(connections=5, think=think),
        stop=Stop(duration_s=2.0),
        spread=Spread(workers=2),
        client=Client(transport="aiohttp"),
        outputs=Outputs(quiet=True),
        seed=9,
    )
    assert got == want
    rates = parse_stages(["1s:50/s"])
    assert assemble(req, workers=1, shape=rates, self_check_span=4).load == Open(rate=50.0, shape=rates)
    assert assemble(req, workers=1, self_check_span=4).self_check == SelfCheck(span=4)
    for fields, message in [
        ({"rate": 1.0, "think": think}, "--think paces users in the closed model"),
        ({"rate": 1.0, "shape": parse_stages(["1s:4"])}, "--stage with users (30s:100) is the closed model"),
        ({"arrival": "poisson"}, "--arrival poisson spaces open-model sends: give -r"),
        ({"burstiness": 2.0}, "--burstiness shapes --arrival gamma"),
    ]:
        with pytest.raises(PlanError, match=re.escape(message)):
            assemble(req, **fields)


def test_validate_chooses_the_transport_and_the_duration() -> None:
    req = RequestSpec("http://127.0.0.1/")
    plan = Plan(req, spread=Spread(workers=1)).validate()
    assert (plan.client.transport, plan.stop) == ("raw", Stop(duration_s=10.0))
    plan = Plan(req, load=Open(rate=3.0, shape=parse_stages(["2s:3/s"])), stop=Stop(warmup_s=0.5)).validate()
    assert (plan.load.rate, plan.stop.duration_s) == (3.0, 1.5)
