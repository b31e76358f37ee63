"""The box's limits: the arithmetic that refuses or spreads a run, --source-ip parsing, the error kinds."""

from __future__ import annotations

import errno
import ipaddress

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from squall.engine.limits import (
    FD_SLACK,
    BoxLimits,
    LimitError,
    check,
    default_connect_rate,
    first_limit_warnings,
    is_loopback_v4,
    limit_kind,
    limit_warnings,
    port_range,
    raise_nofile,
    steer_limit,
    worker_connect_rate,
)
from squall.engine.transport.aiohttp import AiohttpTransport
from squall.engine.transport.http1 import ConnectError
from squall.engine.transport.raw import RawTransport
from squall.plan.load import Closed
from squall.plan.plan import Client, Plan, parse_source_ips
from squall.plan.shard import Spread
from squall.plan.specs import RequestSpec
from squall.units import PlanError


def plan(connections: int, workers: int = 1, url: str = "http://127.0.0.1:8080/", **client: object) -> Plan:
    return Plan(
        RequestSpec(url),
        load=Closed(connections=connections),
        spread=Spread(workers=workers),
        client=Client(**client),  # type: ignore[arg-type]
    )


BIG = BoxLimits(nofile=1 << 20, ports=28232)


def test_port_range_counts_both_ends() -> None:
    assert port_range("32768\t60999\n") == 28232
    assert port_range("1024 1024") == 1
    assert port_range("60999 32768") is None
    assert port_range("garbage") is None


def test_a_run_within_the_limits_is_left_as_it_is() -> None:
    p = plan(2000, workers=2)
    assert check(p, BoxLimits(nofile=1000 + FD_SLACK, ports=28232)) is p


def test_too_many_connections_per_worker_for_the_file_limit_name_the_limit_and_the_fixes() -> None:
    with pytest.raises(LimitError) as e:
        check(plan(2000, workers=2), BoxLimits(nofile=256, ports=28232))
    text = str(e.value)
    assert "open-file limit (ulimit -n) is 256" in text
    assert "ulimit -n 1064" in text
    assert "-w 11" in text  # 2000 / (256 - 64) rounded up
    assert isinstance(e.value, PlanError)  # so every command says it in one line, exit 2


def test_a_file_limit_below_the_slack_says_squall_cannot_run() -> None:
    with pytest.raises(LimitError, match="too low for squall to run at all"):
        check(plan(1), BoxLimits(nofile=20, ports=28232))


def test_a_loopback_target_is_spread_over_127_0_0_x_a_quarter_of_the_ports_each() -> None:
    got = check(plan(36000, workers=2), BoxLimits(nofile=20000, ports=28232))
    assert got.client.source_ips == tuple(f"127.0.0.{i}" for i in range(2, 8))  # 7058 ports each at most
    got = check(plan(101, url="http://localhost:1/"), BoxLimits(nofile=20000, ports=100))
    assert got.client.source_ips == tuple(f"127.0.0.{i}" for i in range(2, 7))
    p = plan(25, url="http://localhost:1/")
    assert check(p, BoxLimits(nofile=20000, ports=100)) is p
    with pytest.raises(LimitError, match="--source-ip with"):  # more than 253 addresses can hold
        check(plan(253 * 95 + 1, workers=64), BoxLimits(nofile=20000, ports=100))


def test_a_remote_target_needing_more_ports_than_one_address_has_is_refused() -> None:
    with pytest.raises(LimitError) as e:
        check(plan(36000, workers=2, url="http://10.1.2.3/"), BoxLimits(nofile=20000, ports=28232))
    assert "ip_local_port_range) has 28232" in str(e.value)
    assert "--source-ip with 2 addresses" in str(e.value)


def test_given_source_addresses_share_the_connections() -> None:
    p = plan(36000, workers=2, url="http://10.1.2.3/", source_ips=("10.0.0.5", "10.0.0.6"))
    assert check(p, BoxLimits(nofile=20000, ports=28232)) is p
    with pytest.raises(LimitError, match="18000 local ports per source address"):
        check(p, BoxLimits(nofile=20000, ports=10000))


def test_an_unknown_port_range_checks_only_files() -> None:
    p = plan(100000, workers=10)
    assert check(p, BoxLimits(nofile=20000, ports=None)) is p


@given(
    conns=st.integers(1, 10**6),
    workers=st.integers(1, 64),
    nofile=st.integers(1, 10**6),
    ports=st.integers(1, 65536),
)
def test_what_check_lets_through_fits(conns: int, workers: int, nofile: int, ports: int) -> None:
    try:
        got = check(plan(conns, workers), BoxLimits(nofile=nofile, ports=ports))
    except LimitError as e:
        assert "\n" not in str(e)
        return
    assert -(-conns // workers) + FD_SLACK <= nofile
    spread = len(got.client.source_ips) or 1
    assert -(-conns // spread) <= ports


def test_the_default_connect_rate_is_2000_per_worker_and_opens_within_20_s() -> None:
    assert default_connect_rate(18000) == 2000
    assert default_connect_rate(100000) == 5000
    assert worker_connect_rate(plan(36000, workers=2)) == 2000
    assert worker_connect_rate(plan(10, workers=2, connect_rate=500.0)) == 250


def test_loopback_names() -> None:
    assert is_loopback_v4("127.0.0.1") and is_loopback_v4("127.9.9.9") and is_loopback_v4("localhost")
    assert not is_loopback_v4("::1") and not is_loopback_v4("10.0.0.1") and not is_loopback_v4("example.test")


def test_raise_nofile_returns_the_limit_in_force() -> None:
    assert raise_nofile() >= 1


@pytest.mark.parametrize(
    ("given", "want"),
    [
        (["127.0.0.2-127.0.0.4"], ("127.0.0.2", "127.0.0.3", "127.0.0.4")),
        (["10.0.0.5,10.0.0.6", "10.0.0.5"], ("10.0.0.5", "10.0.0.6")),
        (["10.0.0.255-10.0.1.1"], ("10.0.0.255", "10.0.1.0", "10.0.1.1")),
        (["::1"], ("::1",)),
        ([" 127.0.0.1 "], ("127.0.0.1",)),
    ],
)
def test_source_ip_lists_and_ranges(given: list[str], want: tuple[str, ...]) -> None:
    assert parse_source_ips(given) == want


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["127.0.0.9-127.0.0.2"], "must go up"),
        (["127.0.0.1-::2"], "must go up"),
        (["127.0.0.1,::1"], "mixes IPv4 and IPv6"),
        (["a.b.c.d"], "not an IP address"),
        (["127.0.0.1,"], "empty address"),
        (["10.0.0.0-10.255.255.255"], "more than 65536"),
    ],
)
def test_bad_source_ips_are_refused(given: list[str], said: str) -> None:
    with pytest.raises(PlanError, match=said):
        parse_source_ips(given)


@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=5))
def test_every_listed_address_is_kept_once_in_order(addresses: list[ipaddress.IPv4Address]) -> None:
    text = ",".join(str(a) for a in addresses)
    assert parse_source_ips([text]) == tuple(dict.fromkeys(str(a) for a in addresses))


def test_a_connect_rate_must_be_positive() -> None:
    with pytest.raises(PlanError, match="--connect-rate"):
        Client(connect_rate=0).validate()
    with pytest.raises(PlanError, match="--connect-rate"):
        Client(connect_rate=float("nan")).validate()


def test_limit_kinds_by_errno() -> None:
    assert limit_kind(OSError(errno.EADDRNOTAVAIL, "x")) == "ports_exhausted"
    assert limit_kind(OSError(errno.EMFILE, "x")) == "fd_exhausted"
    assert limit_kind(OSError(errno.ENFILE, "x")) == "fd_exhausted"
    assert limit_kind(OSError(errno.ECONNREFUSED, "x")) is None
    assert limit_kind(ValueError("x")) is None


def test_both_transports_classify_their_limit_kinds() -> None:
    raw = RawTransport.__new__(RawTransport)
    raw.streams = False
    assert raw.classify(ConnectError(errno.EADDRNOTAVAIL, "x")) == "ports_exhausted"
    assert raw.classify(ConnectError(errno.EMFILE, "x")) == "fd_exhausted"
    assert raw.classify(ConnectError(errno.ECONNREFUSED, "x")) == "connect"
    http = AiohttpTransport.__new__(AiohttpTransport)
    http.streams = False

    def connector_error(code: int) -> aiohttp.ClientConnectorError:
        return aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),  # type: ignore[arg-type]
            OSError(code, "x"),
        )

    assert http.classify(connector_error(errno.EADDRNOTAVAIL)) == "ports_exhausted"
    assert http.classify(connector_error(errno.EMFILE)) == "fd_exhausted"
    assert http.classify(connector_error(errno.ECONNREFUSED)) == "connect"
    assert http.classify(OSError(errno.EMFILE, "x")) == "fd_exhausted"


def test_the_warnings_say_what_to_do() -> None:
    said = limit_warnings({"ports_exhausted": 3, "fd_exhausted": 2, "connect": 9})
    assert len(said) == 2
    assert said[0].startswith("3 connects failed for want of a local port") and "--source-ip" in said[0]
    assert said[1].startswith("2 connects failed for want of file descriptors") and "ulimit -n" in said[1]
    assert limit_warnings({"connect": 1}) == []
    said: set[str] = set()
    assert len(first_limit_warnings({"fd_exhausted": 1, "connect": 4}, said)) == 1
    assert first_limit_warnings({"fd_exhausted": 7}, said) == []
    assert len(first_limit_warnings({"fd_exhausted": 7, "ports_exhausted": 1}, said)) == 1


def test_a_connect_rate_too_slow_to_open_every_connection_before_the_load_is_refused() -> None:
    with pytest.raises(LimitError, match=r"--connect-rate 100 would take 50 s .* give --connect-rate 200"):
        check(plan(5000, connect_rate=100.0), BIG)
    assert check(p := plan(5000, connect_rate=200.0), BIG) is p


def test_a_steer_past_the_box_s_files_or_ports_is_refused() -> None:
    box = BoxLimits(nofile=100 + FD_SLACK, ports=1000)
    steer_limit(plan(2, workers=2), 200, box)  # 100 files a worker, 950 ports
    with pytest.raises(LimitError, match=r"users 201: 2 worker\(s\) hold at most 200 .* \(-w\)"):
        steer_limit(plan(2, workers=2), 201, box)
    with pytest.raises(LimitError, match=r"users 951: .* ports for 950 .* --source-ip"):
        steer_limit(plan(2, workers=10), 951, box)
    steer_limit(plan(2, workers=20, source_ips=("127.0.0.2", "127.0.0.3")), 1900, box)
    steer_limit(plan(2, workers=10), 10**6, BoxLimits(nofile=1 << 20, ports=None))  # (ports unknown)
