"""The built-in target server, spoken to over loopback with http.client and raw sockets."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from squall.targets.serve import ServeOptions, ServerThread

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello, world"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as srv:
        yield srv


def connect(srv: ServerThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def get(srv: ServerThread, path: str, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=2)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def test_default_response_exact_bytes(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_exactly(sock, len(OK)) == OK


def test_unknown_path_gets_default_response(server: ServerThread) -> None:
    resp, body = get(server, "/anything/at/all?x=1")
    assert (resp.status, body) == (200, b"Hello, world")
    assert resp.getheader("Content-Type") == "text/plain"
    assert resp.getheader("Content-Length") == "12"


def test_keep_alive_serves_several_requests_on_one_connection(server: ServerThread) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    conn.connect()
    local = conn.sock.getsockname()
    for _ in range(5):
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"Hello, world")
        assert conn.sock.getsockname() == local
    conn.close()


def test_pipelined_requests_answered_in_order(server: ServerThread) -> None:
    # The first reply is delayed, so the later ones must wait behind it.
    paths = ["/delay/50", "/status/404", "/bytes/3", "/"]
    with connect(server) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_until_closed(sock)
    want = (
        OK
        + b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n404 Not Found"
        + b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nxxx"
        + OK
        + OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    assert got == want


def test_status_route(server: ServerThread) -> None:
    resp, body = get(server, "/status/503")
    assert (resp.status, body) == (503, b"503 Service Unavailable")


def test_status_out_of_range_is_400(server: ServerThread) -> None:
    resp, body = get(server, "/status/700")
    assert (resp.status, body) == (400, b"/status/{code} must be an integer from 0 to 599, got '700'")


def test_delay_route_waits(server: ServerThread) -> None:
    t0 = time.perf_counter()
    resp, body = get(server, "/delay/100")
    elapsed = time.perf_counter() - t0
    assert (resp.status, body) == (200, b"Hello, world")
    assert 0.1 <= elapsed < 1.0


def test_delay_query_on_any_path(server: ServerThread) -> None:
    t0 = time.perf_counter()
    resp, body = get(server, "/status/201?delay_ms=60")
    elapsed = time.perf_counter() - t0
    assert (resp.status, body) == (201, b"201 Created")
    assert 0.06 <= elapsed < 1.0


def test_bytes_route_length(server: ServerThread) -> None:
    resp, body = get(server, "/bytes/1000")
    assert (resp.status, len(body), resp.getheader("Content-Length")) == (200, 1000, "1000")


def test_bytes_over_cap_is_400(server: ServerThread) -> None:
    resp, _ = get(server, f"/bytes/{10 * 1024 * 1024 + 1}")
    assert resp.status == 400


def test_close_route_closes_after_response(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until_closed(sock) == OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


def test_reset_route_closes_without_response(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(65536)


def test_connection_close_header_is_honoured(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock) == OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


def test_http10_without_keep_alive_closes(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_until_closed(sock) == OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


def test_http10_keep_alive_says_so(server: ServerThread) -> None:
    want = OK.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n")
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        assert read_exactly(sock, 2 * len(want)) == want * 2


def test_head_has_no_body(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        got = read_until_closed(sock)
    want = OK[: -len(b"Hello, world")] + (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxx"
    )
    assert got == want


def test_chunked_post_body_is_read_and_answered(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
        )
        got = read_until_closed(sock)
    assert got == OK + OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


def test_malformed_request_gets_400_and_close(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        got = read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in got


def test_requests_served_counts_responses() -> None:
    with ServerThread() as srv:
        for _ in range(3):
            get(srv, "/")
        get(srv, "/status/500")
        with connect(srv) as sock:
            sock.sendall(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        assert srv.requests_served == 4


def test_server_wide_delay() -> None:
    with ServerThread(delay_s=0.05) as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        t0 = time.perf_counter()
        resp, body = get(srv, "/")
        elapsed = time.perf_counter() - t0
    assert (resp.status, body) == (200, b"Hello, world")
    assert 0.05 <= elapsed < 1.0


def test_request_split_into_single_bytes(server: ServerThread) -> None:
    with connect(server) as sock:
        for byte in b"GET /status/202?delay_ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            sock.sendall(bytes([byte]))
        got = read_until_closed(sock)
    assert got == (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
        b"Connection: close\r\n\r\n202 Accepted"
    )


def test_garbage_after_closing_request_is_ignored(server: ServerThread) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nNOT HTTP\r\n\r\n")
        assert read_until_closed(sock) == OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("kwargs", [{"port": 70000}, {"delay_s": -1.0}])
def test_options_reject_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServeOptions(**kwargs)  # type: ignore[arg-type]


def test_slots_serve_n_at_a_time_and_queue_the_rest_in_order(server: ServerThread) -> None:
    # /slots/2/50: two requests in service at once, 50 ms each. Four sent together: the first two answer
    # after 50 ms, the other two wait for a slot and answer after 100 ms.
    import threading

    done: dict[int, float] = {}
    socks = [connect(server) for _ in range(4)]
    t0 = time.perf_counter()
    for i, sock in enumerate(socks):
        sock.sendall(b"GET /slots/2/50 HTTP/1.1\r\nHost: x\r\n\r\n")
        if i < 3:
            time.sleep(0.005)  # arrive in order, so the queue's order is known

    def wait(i: int) -> None:
        assert read_exactly(socks[i], len(OK)) == OK
        done[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    for sock in socks:
        sock.close()
    assert sorted(done) == [0, 1, 2, 3]
    assert 0.050 <= done[0] < 0.085 and 0.050 <= done[1] < 0.085, done
    assert 0.100 <= done[2] < 0.140 and 0.100 <= done[3] < 0.140, done


def test_slots_throughput_tops_out_at_n_per_service_time(server: ServerThread) -> None:
    # 8 clients on /slots/4/20 for 0.5 s: 4 slots x 50 per s = 200 answers/s, so about 100, never more than
    # 4 x ceil(0.5 / 0.02) = 100 plus the 4 in service at the end.
    import threading

    stop_at = time.perf_counter() + 0.5
    counts = [0] * 8

    def client(i: int) -> None:
        with connect(server) as sock:
            while time.perf_counter() < stop_at:
                sock.sendall(b"GET /slots/4/20 HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_exactly(sock, len(OK)) == OK
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert 70 <= sum(counts) <= 108, counts


def test_slots_with_a_bad_shape_is_a_400(server: ServerThread) -> None:
    for path in ("/slots/0/10", "/slots/2", "/slots/x/10", "/slots/2/10/3"):
        resp, body = get(server, path)
        assert resp.status == 400, path
    resp, body = get(server, "/slots/1/1")
    assert (resp.status, body) == (200, b"Hello, world")


def test_a_client_that_leaves_the_queue_frees_its_place(server: ServerThread) -> None:
    # One slot of 100 ms: a holder, then a client that closes while waiting, then one that waits. The
    # leaver is skipped, so the third is answered after 200 ms (the holder's 100 ms and its own), not 300.
    holder, leaver, waiter = connect(server), connect(server), connect(server)
    t0 = time.perf_counter()
    holder.sendall(b"GET /slots/1/100 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.005)
    leaver.sendall(b"GET /slots/1/100 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.005)
    waiter.sendall(b"GET /slots/1/100 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.01)
    leaver.close()
    assert read_exactly(holder, len(OK)) == OK
    assert read_exactly(waiter, len(OK)) == OK
    took = time.perf_counter() - t0
    holder.close()
    waiter.close()
    assert 0.2 <= took < 0.27, took


def test_slow_every_nth_request_makes_a_tail() -> None:
    # Every 4th request that carries slow_every=4 waits 60 ms more; the others only their delay.
    with ServerThread() as srv:
        took = []
        for _ in range(8):
            t0 = time.perf_counter()
            resp, _ = get(srv, "/delay/5?slow_every=4&slow_ms=60")
            took.append(time.perf_counter() - t0)
            assert resp.status == 200
        resp, body = get(srv, "/delay/1?slow_every=x")
    assert [i for i, t in enumerate(took) if t >= 0.065] == [3, 7], took
    assert all(0.005 <= t < 0.05 for i, t in enumerate(took) if i not in (3, 7)), took
    assert resp.status == 400 and b"slow_every" in body
