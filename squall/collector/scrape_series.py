"""--scrape's pure half: one Prometheus text read becomes values (gauges as read, counters as rates per
second, histograms as p50 and p99 between two reads), and the per-second values the run's summary.

No sockets, no threads: `scrape.py` reads the URLs and hands each text here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from squall.redact import redact_url

QUANTILES = (0.5, 0.99)
_GAUGES = ("gauge", "unknown", "untyped", "stateset")  # read as they are
_PARENTS = ("counter", "histogram", "summary", "gaugehistogram")  # whose NAME_created is no series of its own

Value = float | tuple[float | None, float | None] | None  # a histogram's value is (p50, p99)
Derived = tuple[str, str, str, str, Value]  # (metric, sample name, series, kind, value)
Admit = Callable[[str, str, str, str], bool]  # (metric, sample name, series, kind) -> whether it is kept


class ReadFailed(Exception):
    """A read that gave no metrics; its text is the kind counted ('timeout', 'refused', 'HTTP 404', ...)."""


def series_name(name: str, labels: dict[str, str]) -> str:
    """A series as Prometheus writes it, labels sorted: `name{a="x",b="y"}` (`name` with none)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative `buckets` [(upper bound, count)] (the last +Inf), interpolated linearly
    inside its bucket as Prometheus' histogram_quantile does; None without observations."""
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    cums, run = [], 0.0
    for _, c in buckets:  # (a count that goes down is rounding: made monotonic, as Prometheus does)
        run = max(run, c)
        cums.append(run)
    total = cums[-1]
    if total <= 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(cums) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]  # in the +Inf bucket: the highest finite bound
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, below = (0.0, 0.0) if b == 0 else (buckets[b - 1][0], cums[b - 1])
    end = buckets[b][0]
    return start + (end - start) * (rank - below) / (cums[b] - below)


class Target:
    """One URL's reads: the previous counters and buckets of the series kept, so that each read becomes
    values."""

    def __init__(self) -> None:
        self.counters: dict[str, tuple[float, float]] = {}  # series -> (value, read time)
        self.buckets: dict[str, tuple[list[tuple[float, float]], float]] = {}

    def derive(self, text: str, t: float, admit: Admit | None = None) -> list[Derived]:
        """The values of one read at time `t` (s): [(metric, sample name, series, kind, value or None)] of
        the series `admit` keeps (all without it; only those have state kept); raises ReadFailed('junk')
        when the parser refuses the text (and keeps the previous read then)."""
        try:
            families = list(text_string_to_metric_families(text))
        except Exception:  # the parser's errors are ValueError mostly, but junk is junk whatever it raises
            raise ReadFailed("junk") from None
        keep = admit or (lambda *_: True)
        parents = {f.name for f in families if f.type in _PARENTS}
        counters = {f.name for f in families if f.type == "counter"}
        out: list[Derived] = []
        for f in families:
            if f.type in _GAUGES:
                if f.name.endswith("_created") and f.name.removesuffix("_created") in parents:
                    continue
                if f.name.endswith("_total") and f.name.removesuffix("_total") in counters:
                    # `# TYPE x counter`, then `x_total` (as OpenMetrics has it): the parser says untyped
                    for s in f.samples:
                        name = series_name(s.name, s.labels)
                        if keep(f.name, s.name, name, "counter"):
                            out.append((f.name, s.name, name, "counter", self._rate(name, float(s.value), t)))
                    continue
                for s in f.samples:
                    if math.isfinite(s.value):
                        name = series_name(s.name, s.labels)
                        if keep(f.name, s.name, name, "gauge"):
                            out.append((f.name, s.name, name, "gauge", float(s.value)))
            elif f.type == "summary":
                for s in f.samples:
                    if "quantile" in s.labels and math.isfinite(s.value):
                        name = series_name(s.name, s.labels)
                        if keep(f.name, s.name, name, "gauge"):
                            out.append((f.name, s.name, name, "gauge", float(s.value)))
            elif f.type == "counter":
                for s in f.samples:
                    if s.name.endswith("_total"):
                        name = series_name(s.name, s.labels)
                        if keep(f.name, s.name, name, "counter"):
                            out.append((f.name, s.name, name, "counter", self._rate(name, float(s.value), t)))
            elif f.type == "histogram":
                out.extend(self._histograms(f.name, f.samples, t, keep))
        return out

    def _rate(self, name: str, value: float, t: float) -> float | None:
        before = self.counters.get(name)
        self.counters[name] = (value, t)
        if before is None or value < before[0] or t <= before[1] or not math.isfinite(value):
            return None  # the first read, or the counter was reset: it starts over
        return (value - before[0]) / (t - before[1])

    def _histograms(self, metric: str, samples: list[Any], t: float, keep: Admit) -> list[Derived]:
        by_series: dict[str, list[tuple[float, float]]] = {}
        for s in samples:
            if s.name != metric + "_bucket" or "le" not in s.labels:
                continue
            try:
                le = float(s.labels["le"])
            except ValueError:
                continue
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            by_series.setdefault(series_name(metric, labels), []).append((le, float(s.value)))
        out: list[Derived] = []
        for name, buckets in by_series.items():
            if not keep(metric, metric, name, "histogram"):
                continue
            buckets.sort()
            before = self.buckets.get(name)
            self.buckets[name] = (buckets, t)
            value: Value = None
            if before is not None and [b[0] for b in before[0]] == [b[0] for b in buckets]:
                deltas = [(le, c - c0) for (le, c), (_, c0) in zip(buckets, before[0], strict=True)]
                if all(d >= 0 for _, d in deltas):  # (a drop is a reset: this read starts over)
                    p50, p99 = (quantile(q, deltas) for q in QUANTILES)
                    value = None if p50 is None else (p50, p99)
            out.append((metric, metric, name, "histogram", value))
        return out


def rounded(v: float) -> float:
    """`v` to six significant digits, as the result shows it."""
    return float(f"{v:.6g}")


def accumulate(agg: dict[str, list[float]], values: dict[str, float]) -> None:
    """Add one second's values to the aggregates `agg`: name -> [n, sum, max, last]."""
    for name, v in values.items():
        a = agg.get(name)
        if a is None:
            agg[name] = [1, v, v, v]
        else:
            a[0] += 1
            a[1] += v
            a[2] = max(a[2], v)
            a[3] = v


def summarize(kinds: dict[str, tuple[str, str]], agg: dict[str, list[float]]) -> dict[str, Any]:
    """The summary's `series`: per shown name (`kinds`: name -> (kind, url)) its kind, URL, mean, max and
    last of the per-second values aggregated in `agg`."""
    series: dict[str, Any] = {}
    for name, (kind, url) in kinds.items():
        for n in (f"{name} p50", f"{name} p99") if kind == "histogram" else (name,):
            a = agg.get(n)
            if a is not None:
                count, total, top, last = a
                series[n] = {
                    "kind": kind,
                    "url": redact_url(url),
                    "mean": rounded(total / count),
                    "max": rounded(top),
                    "last": rounded(last),
                }
    return series
