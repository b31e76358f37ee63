"""`squall soak`'s target process: started with the run, stopped with it, never left behind."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

from squall.units import PlanError


def parse_target_cmd(command: str) -> list[str]:
    """`--target-cmd` split as a shell would (no shell runs it); PlanError when it is empty or misquoted."""
    try:
        argv = shlex.split(command)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise PlanError(f"--target-cmd {command!r} cannot be split into words: {e}") from None
    if not argv:
        raise PlanError("--target-cmd is empty")
    return argv


def start_target(command: str) -> subprocess.Popen[bytes]:
    """Start `--target-cmd` in its own session, dying with squall; raises PlanError if it cannot run."""
    argv = parse_target_cmd(command)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as e:
        raise PlanError(f"--target-cmd {argv[0]!r} cannot be started: {e.strerror or e}") from None
    time.sleep(0.5)
    if proc.poll() is not None:
        raise PlanError(f"--target-cmd exited at once with code {proc.returncode}")
    return proc


def _die_with_parent() -> None:
    """In a --target-cmd child, before exec: SIGTERM it when squall dies, even by SIGKILL (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def stop_target(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a --target-cmd process group: SIGTERM, then SIGKILL after 5 s."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def target_process(command: str | None) -> Iterator[int | None]:
    """Start `--target-cmd` (None: nothing to start) and yield its pid; stop it when the block ends."""
    proc = None
    try:
        proc = start_target(command) if command is not None else None
        yield None if proc is None else proc.pid
    finally:
        stop_target(proc)
