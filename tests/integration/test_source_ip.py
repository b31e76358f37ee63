"""--source-ip spreads connections over local addresses; a run the box's file limit cannot hold is refused
before it starts (exit 2, one line), however low the limit."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _peer_server(byte_server: Callable[..., int]) -> tuple[int, Counter[str]]:
    """A keep-alive HTTP server on 127.0.0.1 counting connections by the client's address."""
    peers: Counter[str] = Counter()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers[writer.get_extra_info("peername")[0]] += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return byte_server(handler), peers


def _squall(
    *args: str, nofile: int | tuple[int, int] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """squall ARGS in a subprocess, its file limit set to `nofile` (soft and hard, or a (soft, hard) pair)."""

    def limit() -> None:
        if nofile is not None:
            pair = nofile if isinstance(nofile, tuple) else (nofile, nofile)
            resource.setrlimit(resource.RLIMIT_NOFILE, pair)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "squall", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("transport", ["raw", "aiohttp"])
def test_connections_come_from_every_source_address(
    byte_server: Callable[..., int], transport: str, tmp_path: Path
) -> None:
    port, peers = _peer_server(byte_server)
    out = tmp_path / "r.json"
    done = _squall(
        "run",
        f"http://127.0.0.1:{port}/",
        "-c",
        "8",
        "-w",
        "1",
        "-n",
        "200",
        "-q",
        "--transport",
        transport,
        "--source-ip",
        "127.0.0.2-127.0.0.3",
        "--source-ip",
        "127.0.0.4,127.0.0.5",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["summary"]["requests"] == 200
    assert doc["meta"]["source_ips"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert doc["meta"]["setup_s"] >= 0
    assert set(peers) == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
    if transport == "raw":  # one connection per channel, round robin
        assert sorted(peers.values()) == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("10.255.255.1", "not an address of this box"),
        ("127.0.0.9-127.0.0.2", "must go up"),
        ("127.0.0.1,::1", "mixes IPv4 and IPv6"),
        ("nonsense", "not an IP address"),
    ],
)
def test_a_bad_source_address_is_refused(closed_port: int, value: str, said: str) -> None:
    done = _squall("run", f"http://127.0.0.1:{closed_port}/", "-n", "1", "-q", "--source-ip", value)
    assert done.returncode == 2
    assert said in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_too_many_connections_for_the_file_limit_are_refused_before_the_run(closed_port: int) -> None:
    done = _squall("run", f"http://127.0.0.1:{closed_port}/", "-c", "2000", "-w", "2", "-d", "2s", nofile=256)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "file" in line and "ulimit -n" in line and "-w" in line
    assert "Traceback" not in line


def test_a_tiny_file_limit_is_said_not_crashed_on(closed_port: int) -> None:
    done = _squall("run", f"http://127.0.0.1:{closed_port}/", "-c", "2000", "-d", "2s", nofile=20, timeout=30)
    assert done.returncode == 2
    assert "file" in done.stderr and "Traceback" not in done.stderr


def test_the_soft_file_limit_is_raised_to_the_hard_one(byte_server: Callable[..., int]) -> None:
    port, _ = _peer_server(byte_server)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("this box's hard file limit is too low to show the raise")
    args = ["-c", "600", "-w", "1", "-n", "1200", "-q", "--connect-rate", "20000"]
    done = _squall("run", f"http://127.0.0.1:{port}/", *args, nofile=(256, hard))
    assert done.returncode == 0, done.stderr
    assert "1,200 requests" in done.stdout


def test_connections_open_at_the_connect_rate_before_the_measured_time(
    byte_server: Callable[..., int], tmp_path: Path
) -> None:
    port, peers = _peer_server(byte_server)
    out = tmp_path / "r.json"
    args = ["-c", "60", "-w", "1", "-d", "1s", "-q", "--connect-rate", "50", "-o", str(out)]
    done = _squall("run", f"http://127.0.0.1:{port}/", *args)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["meta"]["setup_s"] >= 1.0  # 60 connections at 50/s, before t0
    assert doc["summary"]["duration_s"] == 1.0
    assert sum(peers.values()) == 60  # each opened once, none in the measured second
