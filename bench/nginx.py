"""The nginx the benches aim at: a loopback target started from a temporary config, always stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONF = """worker_processes {workers};
worker_rlimit_nofile {nofile};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  default_type text/plain;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port}{reuseport} backlog=4096;
    location / {{ return 200 "{body}"; }}
    location = /nginx_status {{ stub_status; }}
  }}
}}
"""


class BenchError(Exception):
    """A problem to print as a sentence."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    *, workers: int, connections: int, nofile: int, body: str, reuseport: bool = False, cpu: str | None = None
) -> Iterator[dict[str, Any]]:
    """nginx on 127.0.0.1 (on CPU `cpu` when given) answering `body`: {url, config, tmp, pid}."""
    if shutil.which("nginx") is None:
        raise BenchError("nginx is not installed (apt-get install -y nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="squall-bench-nginx-"))
    port = free_port()
    conf = CONF.format(
        tmp=tmp,
        port=port,
        nofile=nofile,
        connections=connections,
        workers=workers,
        body=body,
        reuseport=" reuseport" if reuseport else "",
    )
    (tmp / "nginx.conf").write_text(conf)
    argv = [*(["taskset", "-c", cpu] if cpu else []), "nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")]
    argv += ["-e", str(tmp / "error.log")]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(50):
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
                if resp.read() == body.encode():
                    break
            time.sleep(0.1)
        else:
            log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
            raise BenchError(f"nginx did not answer on {url} within 5 s: {log.strip()[-500:]}")
        yield {"url": url, "config": conf, "tmp": tmp, "pid": proc.pid}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
