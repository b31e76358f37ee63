"""The kernel's floor for one SSE token event: CPU per small write on a loopback TCP socket.

A reader thread pinned to CPU 1 drains the socket; this thread, pinned to CPU 0, writes N messages of 150
bytes (the size of one chat.completion.chunk event) with TCP_NODELAY, and reports writes/s and the
system and user CPU of the writing thread per write. Run: `python3 bench/write_floor.py [N]`.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import time

SIZE = 150


def main(n: int = 300_000) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def drain() -> None:
        os.sched_setaffinity(0, {1})
        conn, _ = srv.accept()
        got = 0
        while got < n * SIZE and (data := conn.recv(1 << 20)):
            got += len(data)
        conn.close()

    reader = threading.Thread(target=drain)
    reader.start()
    os.sched_setaffinity(0, {0})
    s = socket.create_connection(srv.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * SIZE
    r0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    for _ in range(n):
        s.sendall(msg)
    r1, t1 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    s.close()
    reader.join(timeout=60)
    sys_us = (r1.ru_stime - r0.ru_stime) / n * 1e6
    user_us = (r1.ru_utime - r0.ru_utime) / n * 1e6
    rate = n / (t1 - t0)
    print(
        f"{n:,} writes of {SIZE} B: {rate:,.0f} writes/s, {sys_us:.2f} µs system + {user_us:.2f} µs user each"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
