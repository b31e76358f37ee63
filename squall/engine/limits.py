"""The box's own limits on connections: the file limit (raised to its hard value at start), the ephemeral
ports of one source address toward one target, and the arithmetic that refuses a run that cannot fit.

A connection is one file descriptor in its worker and one local port of its source address toward the
target's address and port (Linux: `net.ipv4.ip_local_port_range`). Past either, a run does not fail cleanly:
its connects fail (EMFILE, EADDRNOTAVAIL) or hang, and the target is blamed. So the arithmetic is done before
the run; what still happens during one is counted as `fd_exhausted` or `ports_exhausted`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import resource
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from squall.units import PlanError

if TYPE_CHECKING:
    from squall.plan.plan import Plan

FD_SLACK = 64  # a worker's own files besides its connections: pipes, epoll, stdio, modules, DNS
PORT_SLACK = 0.05  # of the ephemeral range, left to the box's other connections and TIME_WAIT
CONNECT_RATE_PER_WORKER = 2000.0  # the default --connect-rate, per worker (see default_connect_rate)
SETUP_TARGET_S = 20.0  # the default rate never plans a longer set-up (the supervisor waits 30 s for it)
SETUP_MAX_S = 25.0  # the longest the raw transport opens connections before the load starts
AUTO_SOURCES_MAX = 253  # 127.0.0.2 .. 127.0.0.254 (127.0.0.1 keeps the box's other loopback traffic)
AUTO_FILL = 0.25  # of one loopback source address's ports, at most, when squall spreads by itself
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
PORTS_ERRNOS = frozenset({errno.EADDRNOTAVAIL})
FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


class LimitError(PlanError):
    """The run asks for more than this box's limits allow; the message names the limit and the fix."""


@dataclass(frozen=True, slots=True)
class BoxLimits:
    """What one process may open (`nofile`: the soft file limit after `raise_nofile`) and how many ephemeral
    ports one source address has toward one target (`ports`; None where it cannot be read)."""

    nofile: int
    ports: int | None


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it); return the soft
    limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if want == resource.RLIM_INFINITY:
        want = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return soft if soft != resource.RLIM_INFINITY else _nr_open()


def _nr_open() -> int:
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


def port_range(text: str | None = None) -> int | None:
    """How many ephemeral ports `ip_local_port_range` holds ("32768\\t60999" -> 28232); None if unknown."""
    if text is None:
        try:
            text = Path(PORT_RANGE_FILE).read_text()
        except OSError:
            return None
    try:
        low, high = (int(x) for x in text.split())
    except ValueError:
        return None
    return high - low + 1 if high >= low else None


def box_limits() -> BoxLimits:
    """This box's limits, the file limit raised first."""
    return BoxLimits(raise_nofile(), port_range())


def default_connect_rate(per_worker_connections: int) -> float:
    """Connections a worker opens per second when --connect-rate is not given: 2,000/s, or faster when that
    would make the set-up longer than 20 s. 2,000/s keeps a listen backlog of 511 (nginx's default) far from
    full when the target accepts within 0.25 s, and opens 36,000 connections on 2 workers in 9 s."""
    return max(CONNECT_RATE_PER_WORKER, per_worker_connections / SETUP_TARGET_S)


def worker_connect_rate(plan: Plan) -> float:
    """One worker's share of the run's --connect-rate (or the default)."""
    workers = max(1, plan.spread.workers)
    if plan.client.connect_rate is not None:
        return plan.client.connect_rate / workers
    return default_connect_rate(math.ceil(plan.load.connections / workers))


def is_loopback_v4(host: str) -> bool:
    """Whether `host` names an IPv4 loopback address (127.0.0.0/8, or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


def check(plan: Plan, box: BoxLimits) -> Plan:
    """The plan as it can run on `box`: spread over 127.0.0.x when a loopback target would fill more than a
    quarter of one source address's ports; raises LimitError (naming the limit and the fix) when it cannot
    fit."""
    if plan.py is not None:  # its connections are the workload's own
        return plan
    conns, workers = plan.load.connections, max(1, plan.spread.workers)
    per_worker = math.ceil(conns / workers)
    rate = plan.client.connect_rate
    if rate is not None and conns / rate > SETUP_MAX_S:
        raise LimitError(
            f"--connect-rate {rate:g} would take {conns / rate:.0f} s to open -c {conns}, and squall opens "
            f"connections for at most {SETUP_MAX_S:g} s before the load starts: give --connect-rate "
            f"{math.ceil(conns / SETUP_MAX_S)} or more"
        )
    room = box.nofile - FD_SLACK
    if per_worker > room:
        if room <= 0:
            raise LimitError(
                f"the open-file limit (ulimit -n) is {box.nofile}: too low for squall to run at all; "
                f"raise it (ulimit -n {per_worker + FD_SLACK})"
            )
        more = math.ceil(conns / room)
        raise LimitError(
            f"-c {conns} on {workers} worker(s) needs {per_worker + FD_SLACK} open files per worker, and the "
            f"open-file limit (ulimit -n) is {box.nofile}: raise it (ulimit -n {per_worker + FD_SLACK}) "
            f"or use more workers (-w {more})"
        )
    sources = plan.client.source_ips
    if box.ports is not None:
        if not sources and is_loopback_v4(plan.request.host):
            # The kernel's search for a free port at connect() slows as a source address's ports fill (and
            # TIME_WAIT of earlier runs fills them too): 36,000 connections from 2 addresses took 51 s to
            # open here, from 8 addresses 2.5 s. Loopback addresses cost nothing, so each gets a quarter.
            light = max(1, int(box.ports * AUTO_FILL))
            if conns > light:
                count = min(math.ceil(conns / light), AUTO_SOURCES_MAX)
                sources = tuple(f"127.0.0.{i}" for i in range(2, 2 + count))
                plan = replace(plan, client=replace(plan.client, source_ips=sources))
        usable = max(1, int(box.ports * (1 - PORT_SLACK)))
        spread = len(sources) or 1
        if math.ceil(conns / spread) > usable:
            needed = math.ceil(conns / usable)
            raise LimitError(
                f"-c {conns} toward one address needs {math.ceil(conns / spread)} local ports per source "
                f"address, and the ephemeral range (net.ipv4.ip_local_port_range) has {box.ports}: give "
                f"--source-ip with {needed} addresses or more, or split the load over boxes (--shard)"
            )
    return plan


def steer_limit(plan: Plan, users: int, box: BoxLimits | None = None) -> None:
    """Refuse a change to `users` the box (`box`, else this one's) cannot hold: each user is a connection, one
    file in its worker and one local port of a source address (a py workload's connections are its own).
    Raises LimitError."""
    if plan.py is not None:
        return
    box, workers = box or box_limits(), max(1, plan.spread.workers)
    most = max(0, box.nofile - FD_SLACK) * workers
    if users > most:
        raise LimitError(
            f"users {users}: {workers} worker(s) hold at most {most} users under the open-file limit "
            f"(ulimit -n {box.nofile}); run with more workers (-w) to go higher"
        )
    if box.ports is not None:
        most = max(1, int(box.ports * (1 - PORT_SLACK))) * max(1, len(plan.client.source_ips))
        if users > most:
            raise LimitError(
                f"users {users}: the run's source addresses have local ports for {most} connections "
                "toward the target; give --source-ip with more addresses to go higher"
            )


def prepare(plan: Plan) -> Plan:
    """Raise this process's file limit and check the plan against the box (see `check`); raises LimitError
    for a --source-ip address this box does not have."""
    for source in plan.client.source_ips:
        try:
            bind_socket(source, socket.AF_INET6 if ":" in source else socket.AF_INET).close()
        except OSError as e:
            raise LimitError(
                f"--source-ip {source}: not an address of this box ({e.strerror or e}); "
                "give addresses its interfaces have (ip -brief address)"
            ) from None
    return check(plan, box_limits())


def limit_kind(exc: BaseException) -> str | None:
    """`ports_exhausted` or `fd_exhausted` when `exc` (or the OSError it wraps) is EADDRNOTAVAIL or
    EMFILE/ENFILE; None otherwise."""
    for e in (exc, getattr(exc, "os_error", None), exc.__cause__):
        code = getattr(e, "errno", None)
        if code in PORTS_ERRNOS:
            return "ports_exhausted"
        if code in FD_ERRNOS:
            return "fd_exhausted"
    return None


ADVICE = {
    "ports_exhausted": "connects failed for want of a local port (EADDRNOTAVAIL): one source address has "
    "{ports} ephemeral ports toward one target; give --source-ip with more addresses, or fewer connections",
    "fd_exhausted": "connects failed for want of file descriptors (EMFILE/ENFILE): raise the open-file limit "
    "(ulimit -n), or use more workers (-w)",
}


def limit_warnings(error_kinds: dict[str, int]) -> list[str]:
    """The result's warnings for the connects that met this box's limits, each saying what to do."""
    ports = port_range()
    shown = "a limited range of" if ports is None else ports
    return [
        f"{error_kinds[kind]} {ADVICE[kind].format(ports=shown)}" for kind in ADVICE if error_kinds.get(kind)
    ]


def first_limit_warnings(error_kinds: dict[str, int], said: set[str]) -> list[str]:
    """The warnings (as `limit_warnings`) of the limit kinds in `error_kinds` not yet in `said`, which
    gains them: for the live view, once a kind."""
    fresh = {kind: n for kind, n in error_kinds.items() if kind in ADVICE and n and kind not in said}
    said.update(fresh)
    return limit_warnings(fresh)


def bind_socket(source: str, family: int) -> socket.socket:
    """A non-blocking TCP socket bound to `source`, its port chosen at connect (IP_BIND_ADDRESS_NO_PORT, so
    each source address's ports are shared by every destination); raises OSError."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        no_port = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
        if family == socket.AF_INET:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, no_port, 1)
        try:
            sock.bind((source, 0))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:  # no port left on this address (without IP_BIND_ADDRESS_NO_PORT)
                raise OSError(errno.EADDRNOTAVAIL, f"no free local port on {source}") from e
            raise
    except BaseException:
        sock.close()
        raise
    return sock
