"""--scrape: the target's own Prometheus metrics, read by the collector once a second, on a thread.

A read is one GET bounded in time (`Scrape.timeout_s` in all) and size (`BODY_CAP`); its text is parsed by
prometheus_client's parser and turned into values: gauges as read, counters as rates per second between two
reads, histograms as p50 and p99 of the observations between two reads (`scrape_series`, the pure half).
A read that fails is counted by kind, never raised. The collector's thread only takes the latest values
(`second()`), so a slow target never delays it.
"""

from __future__ import annotations

import fnmatch
import http.client
import io
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from squall.collector.scrape_series import Derived, ReadFailed, Target, accumulate, rounded, summarize
from squall.collector.scrape_series import quantile as quantile  # (importable from here, as before)
from squall.collector.scrape_series import series_name as series_name
from squall.plan.plan import Scrape
from squall.redact import redact_url

BODY_CAP = 4 << 20  # a larger answer is a failed read ("too large"), never read into memory whole
LEFT_OUT_SAMPLE = 3  # the names of series left out that the warning shows


def fetch(url: str, timeout_s: float, cap: int = BODY_CAP, verify: bool = True) -> tuple[str, float]:
    """One GET of `url` within `timeout_s` in all: its text and when it was answered (monotonic s)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    try:
        port = parts.port
    except ValueError:  # (a port out of range or not a number: the plan refuses it, this is a backstop)
        raise ReadFailed("bad url") from None
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", port, timeout=timeout_s, context=_tls(verify)
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=timeout_s)
    accept = "text/plain;version=0.0.4;q=1, */*;q=0.1"  # the text format, not OpenMetrics or protobuf
    headers = {"Accept": accept, "Connection": "close", "User-Agent": "squall"}
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    try:
        conn.connect()
        # Every send and receive from here on (request, status line, headers, body) gets what is left.
        conn.sock = _Timed(conn.sock, deadline)
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=headers)
        resp = conn.getresponse()
        t = time.monotonic()
        if resp.status >= 300:
            raise ReadFailed(f"HTTP {resp.status}")
        if (resp.length or 0) > cap:
            raise ReadFailed("too large")
        chunks, size = [], 0
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > cap:
                raise ReadFailed("too large")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8"), t
    except ReadFailed:
        raise
    except UnicodeDecodeError:
        raise ReadFailed("junk") from None
    except ValueError:  # (http.client's word on a URL it cannot send, e.g. a control character)
        raise ReadFailed("bad url") from None
    except TimeoutError:
        raise ReadFailed("timeout") from None
    except ConnectionRefusedError:
        raise ReadFailed("refused") from None
    except socket.gaierror:
        raise ReadFailed("unknown host") from None
    except ssl.SSLError:
        raise ReadFailed("tls") from None
    except (http.client.HTTPException, OSError):
        raise ReadFailed("bad answer") from None
    finally:
        conn.close()


def _tls(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:  # (-k: as the load's own connections)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Timed:
    """A connected socket whose every wait gets what is left before `deadline`, so a target that answers
    slowly, byte by byte or line by line, costs at most the read's time in all."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def _left(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the read's time is spent")
        self._sock.settimeout(left)

    def sendall(self, data: Any) -> None:
        """Send all of `data` within what is left."""
        self._left()
        self._sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        """Receive into `buffer` within what is left."""
        self._left()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *_: Any, **__: Any) -> io.BufferedReader:
        """The reading file http.client takes the answer from: each of its receives is bounded."""
        # As socket.makefile does: the file holds a reference, so the socket's fd outlives a close() of the
        # connection that has read the headers of a `Connection: close` answer until the body is read.
        self._sock._io_refs += 1
        return io.BufferedReader(socket.SocketIO(self, "rb"), 65536)  # type: ignore[arg-type]


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class Scraper:
    """Reads every --scrape URL once a second on a daemon thread (bounded by the spec's timeout, never on a
    worker, never stalling the collector); the collector takes one sample per measured second."""

    def __init__(
        self, spec: Scrape, window_s: float = 1.0, cap_bytes: int = BODY_CAP, verify: bool = True
    ) -> None:
        self.spec = spec
        self.verify = verify
        self.window_s = window_s
        self.cap_bytes = cap_bytes
        self.targets = {url: Target() for url in spec.urls}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Counted by the reading thread, read by the collector's (under the lock).
        self._reads = dict.fromkeys(spec.urls, 0)
        self._errors: dict[str, dict[str, int]] = {url: {} for url in spec.urls}
        self._latest: dict[str, tuple[float, dict[str, float]]] = {}  # url -> (read time, values)
        self._kinds: dict[str, tuple[str, str]] = {}  # shown name -> (kind, url); grows to the cap at most
        self._left_out = dict.fromkeys(spec.urls, 0)  # the most series one read of the URL left out
        self._left_sample: list[str] = []  # a few of their names, for the warning
        # The reading thread's own (never read by another): which series are kept, under which name.
        self._names: dict[tuple[str, str], str] = {}  # (url, series) -> the name it is shown by
        self._kept = 0  # series kept (a histogram is two: p50 and p99), at most spec.cap
        # The per-second values' aggregates, kept by the collector's thread: name -> [n, sum, max, last].
        self._agg: dict[str, list[float]] = {}

    def start(self) -> None:
        """Begin reading (at the run's start)."""
        if self._thread is None and self.targets:
            self._thread = threading.Thread(target=self._loop, name="squall-scrape", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            for url in self.targets:
                if self._stop.is_set():
                    return
                try:
                    self.read(url)
                except Exception:  # a bug of ours never ends the reads (nor prints): a failed read
                    self._failed(url, "internal")
            due += self.window_s
            now = time.monotonic()
            if due < now:  # the reads took longer than a second (silent targets): read again now, no catch-up
                due = now
            self._stop.wait(due - now)

    def read(self, url: str) -> None:
        """Read `url` once and keep its values (or count why it failed)."""
        try:
            text, t = fetch(url, self.spec.timeout_s, self.cap_bytes, self.verify)
        except ReadFailed as e:
            self._failed(url, str(e))
        else:
            self.take(url, text, t)

    def take(self, url: str, text: str, t: float) -> None:
        """Keep the values of `url`'s text read at `t` (monotonic s), or count it as junk."""
        left: list[str] = []  # the series this read leaves out (past the cap)

        def admit(metric: str, sample: str, series: str, kind: str) -> bool:
            return self._admit(url, metric, sample, series, kind, left)

        try:  # (outside the lock: only this thread touches the targets' state and the names)
            values = self._shown(url, self.targets[url].derive(text, t, admit))
        except ReadFailed as e:
            self._failed(url, str(e))
        except Exception as e:  # a bug of ours must not end the run: it is counted, as a fault of the read
            self._failed(url, type(e).__name__)
        else:
            with self._lock:
                self._reads[url] += 1
                self._latest[url] = (t, values)
                self._left_out[url] = max(self._left_out[url], len(left))
                for series in left[: LEFT_OUT_SAMPLE - len(self._left_sample)]:
                    if series not in self._left_sample:
                        self._left_sample.append(series)

    def _failed(self, url: str, kind: str) -> None:
        with self._lock:
            self._reads[url] += 1
            errors = self._errors[url]
            errors[kind] = errors.get(kind, 0) + 1

    def _shown(self, url: str, values: list[Derived]) -> dict[str, float]:
        """The values of the series kept, under their shown names."""
        out = {}
        for _, _, series, _, value in values:
            name = self._names[(url, series)]
            if isinstance(value, tuple):
                for stat, v in zip(("p50", "p99"), value, strict=True):
                    if v is not None:
                        out[f"{name} {stat}"] = rounded(v)
            elif value is not None:
                out[name] = rounded(value)
        return out

    def _admit(self, url: str, metric: str, sample: str, series: str, kind: str, left: list[str]) -> bool:
        """Whether a series is kept: --scrape-metric picks it, and it was kept before or fits in the cap
        (one that does not is added to `left`)."""
        globs = self.spec.metrics
        if globs and not any(fnmatch.fnmatchcase(n, g) for g in globs for n in (metric, sample)):
            return False
        if (url, series) in self._names:
            return True
        width = 2 if kind == "histogram" else 1
        if self._kept + width > self.spec.cap:
            left.append(series)
            return False
        self._kept += width
        name = series
        for prefix in ("", f"{_host(url)} ", f"{redact_url(url)} "):
            name = prefix + series
            if name not in self._kinds:  # a name another URL gave first: this one's is prefixed
                break
        self._names[(url, series)] = name
        with self._lock:  # (summary() copies the kinds from the collector's thread)
            self._kinds[name] = (kind, url)
        return True

    def second(self) -> dict[str, float]:
        """The values for the second that just ended: {series: value} (gauges as read, counters as rates
        per second, histograms as `NAME p50` and `NAME p99` from the buckets' deltas); {} before a read."""
        now, stale = time.monotonic(), 2 * self.window_s + self.spec.timeout_s
        with self._lock:
            latest = list(self._latest.values())
        out: dict[str, float] = {}
        for t, values in latest:
            if now - t <= stale:  # (a target that stopped answering leaves a gap, not its last values)
                out.update(values)
        accumulate(self._agg, out)
        return out

    def close(self) -> None:
        """Stop reading; a read under way is left to end on its own (the thread is a daemon), so the run's
        end never waits for a slow target."""
        self._stop.set()

    def summary(self) -> dict[str, Any]:
        """The result's `target_metrics`: per URL and per series what was read, and the read counts."""
        with self._lock:
            urls = {
                redact_url(url): {
                    "reads": self._reads[url],
                    "failed": sum(self._errors[url].values()),
                    "errors": dict(sorted(self._errors[url].items())),
                }
                for url in self.spec.urls
            }
            kinds = dict(self._kinds)
            left_out = sum(self._left_out.values())
        return {"urls": urls, "series": summarize(kinds, self._agg), "left_out": left_out}

    def warnings(self) -> list[str]:
        """The result's warnings about reads that failed, timed out or returned junk (with counts)."""
        out = []
        with self._lock:
            for url in self.spec.urls:
                errors = self._errors[url]
                failed = sum(errors.values())
                if failed:
                    kinds = ", ".join(f"{k} {n}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1]))
                    out.append(
                        f"--scrape {redact_url(url)}: {failed} of {self._reads[url]} reads failed ({kinds})"
                    )
            left_out = sum(self._left_out.values())
            sample = list(self._left_sample)
        if left_out:
            out.append(
                f"--scrape: {left_out} series were left out (at most {self.spec.cap} are kept; e.g. "
                f"{', '.join(sample)}); pick the ones to keep with --scrape-metric GLOB, e.g. "
                "--scrape-metric 'vllm:*'"
            )
        return out
