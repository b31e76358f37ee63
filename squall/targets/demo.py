"""`squall demo`: the built-in mock LLM in a process of its own, and the plan that streams from it, with the
live dashboard on and the mock's own /metrics scraped beside squall's numbers."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from squall.targets.mock_options import MockOptions

if TYPE_CHECKING:
    from squall.plan.plan import Plan

DEMO_MOCK = MockOptions(
    port=0, ttft_s=0.15, itl_s=0.02, tokens=64, tokens_stddev=16, jitter=0.1, fail_429=0.01
)
START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the OS picks it; another program could still take it before we bind)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def metrics_url(url: str) -> str:
    """The mock's /metrics beside its chat URL `http://HOST:PORT/v1/chat/completions`."""
    return url.split("/v1/", 1)[0] + "/metrics"


def demo_plan(
    url: str,
    duration: str,
    concurrency: int,
    out: Path,
    quiet: bool,
    target_pid: int | None = None,
    dashboard: str | None = None,
) -> Plan:
    """The demo's plan: chat streams to the mock at `url`, one core left to the mock, the dashboard on
    `dashboard` ([HOST:]PORT; None: none) and the mock's /metrics scraped; raises PlanError."""
    from squall.plan.build import LoadFlags, build
    from squall.plan.prompts import synthetic
    from squall.plan.specs import LlmSpec, RequestSpec

    flags = LoadFlags(
        workers=max(1, (os.cpu_count() or 2) - 1),
        duration=duration,
        out=out,
        quiet=quiet,
        target_pid=target_pid,
        dashboard=dashboard,
        scrape=(metrics_url(url),),
    )
    spec = LlmSpec(api="chat", model="squall-mock", prompts=synthetic(200, (64, 16), None, 0))
    return build(RequestSpec(url=url, method="POST"), flags, connections=concurrency, llm=spec)


def start_mock(opts: MockOptions) -> tuple[BaseProcess, int | None]:
    """Start the mock in a forked process; (the process, its port, or None if it did not start in time)."""
    ctx = mp.get_context("fork")
    rx, tx = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve_detached, args=(opts, tx.send), name="squall-demo-mock", daemon=True)
    server.start()
    return server, (rx.recv() if rx.poll(START_TIMEOUT_S) else None)


def _serve_detached(opts: MockOptions, ready: Callable[[int], None]) -> None:
    # Its own session: a Ctrl-C at the terminal stops the load (which drains), not the target under it.
    from squall.targets.mock_llm import serve_mock

    os.setsid()
    serve_mock(opts, ready)
