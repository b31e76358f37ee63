import pytest

from squall.plan.plan import Plan
from squall.plan.specs import RequestSpec
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
    assert (spec.scheme, spec.host, spec.port, spec.target) == ("http", "127.0.0.1", 8080, "/a/b?x=1")
    assert RequestSpec("https://example.test").port == 443
    assert RequestSpec("http://h").target == "/"


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
        Plan(RequestSpec("http://127.0.0.1/"), **kwargs).validate()


def test_defaults_and_caps() -> None:
    plan = Plan(RequestSpec("http://127.0.0.1/"), connections=3, workers=8).validate()
    assert plan.duration_s == 10.0
    assert plan.workers == 3
    plan = Plan(RequestSpec("http://127.0.0.1/"), connections=64, workers=8, requests=2).validate()
    assert plan.workers == 2
    assert plan.duration_s is None


def test_share_splits_evenly() -> None:
    plan = Plan(RequestSpec("http://127.0.0.1/"), connections=10, workers=3).validate()
    assert [plan.share(10, i) for i in range(3)] == [4, 3, 3]
    assert sum(plan.share(1001, i) for i in range(3)) == 1001
    assert Plan(RequestSpec("http://h/"), workers=4, rate=100.0).worker_rate() == 25.0
