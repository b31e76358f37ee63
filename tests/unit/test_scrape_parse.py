"""--scrape's parsing and derivation: Prometheus texts made by hand become gauges, rates and p50/p99."""

import asyncio
import math
import time
from collections.abc import Callable

import pytest

from squall.collector.scrape import ReadFailed, Scraper, Target, fetch, quantile, series_name
from squall.plan.plan import Scrape
from squall.report.target_charts import target_charts

U1, U2 = "http://127.0.0.1:9001/metrics", "http://127.0.0.1:9002/metrics"

HIST = """# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{model_name="m",le="0.1"}} {0}
vllm:time_to_first_token_seconds_bucket{{model_name="m",le="0.5"}} {1}
vllm:time_to_first_token_seconds_bucket{{model_name="m",le="1.0"}} {2}
vllm:time_to_first_token_seconds_bucket{{model_name="m",le="2.0"}} {3}
vllm:time_to_first_token_seconds_bucket{{model_name="m",le="+Inf"}} {4}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {4}
vllm:time_to_first_token_seconds_sum{{model_name="m"}} 1.0
vllm:time_to_first_token_seconds_created{{model_name="m"}} 1.7e9
"""
TTFT = 'vllm:time_to_first_token_seconds{model_name="m"}'


def _values(target: Target, text: str, t: float) -> dict[str, object]:
    return {series: value for _, _, series, _, value in target.derive(text, t)}


def _hist(*cumulative: int) -> str:
    return HIST.format(*cumulative)


def test_gauges_as_read_with_their_labels_sorted() -> None:
    text = """# HELP vllm:num_requests_running Running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 3
untyped_thing 4.5
# TYPE lat summary
lat{quantile="0.5"} 0.25
lat{quantile="0.99"} NaN
lat_sum 2
lat_count 3
"""
    got = Target().derive(text, 0.0)
    assert [(s, k, v) for _, _, s, k, v in got] == [
        ('vllm:num_requests_running{engine="0",model_name="m"}', "gauge", 3.0),
        ("untyped_thing", "gauge", 4.5),
        ('lat{quantile="0.5"}', "gauge", 0.25),  # a summary's quantiles are gauges (NaN: none)
    ]
    assert series_name("x", {"b": 'say "hi"\n', "a": "1"}) == 'x{a="1",b="say \\"hi\\"\\n"}'


def test_counters_as_rates_and_a_reset_starts_over() -> None:
    target, name = Target(), 'vllm:prompt_tokens_total{model_name="m"}'
    reads = [(10.0, 100), (11.0, 110), (13.0, 150), (14.0, 5), (16.0, 11)]
    rates = []
    for t, v in reads:
        text = f'# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{{model_name="m"}} {v}\n'
        text += 'vllm:prompt_tokens_created{model_name="m"} 1.7e9\n'  # (not a series of its own)
        got = _values(target, text, t)
        assert list(got) == [name]
        rates.append(got[name])
    assert rates == [None, 10.0, 20.0, None, 3.0]  # none at first, none at the drop: never negative
    openmetrics = Target()  # (the counter typed by its name without _total, and the text ended by # EOF)
    for t, v, want in ((0.0, 1, None), (2.0, 5, 2.0)):
        got = _values(
            openmetrics, f"# TYPE c counter\n# UNIT c seconds\nc_total {v}\nc_created 1\n# EOF\n", t
        )
        assert got == {"c_total": want}


def test_histograms_as_p50_and_p99_of_the_new_observations() -> None:
    target = Target()
    assert _values(target, _hist(5, 7, 9, 9, 9), 0.0) == {TTFT: None}  # one read: no deltas yet
    # New observations per bucket: 10, 60, 20, 10, 0 (cumulative 10, 70, 90, 100, 100).
    p50, p99 = _values(target, _hist(15, 77, 99, 109, 109), 1.0)[TTFT]  # type: ignore[misc]
    assert p50 == pytest.approx(0.1 + (0.5 - 0.1) * (50 - 10) / 60)
    assert p99 == pytest.approx(1.0 + (2.0 - 1.0) * (99 - 90) / 10)
    assert _values(target, _hist(15, 77, 99, 109, 109), 2.0) == {TTFT: None}  # nothing new: no value
    assert _values(target, _hist(1, 1, 1, 1, 1), 3.0) == {TTFT: None}  # a reset starts over
    assert _values(target, _hist(1, 1, 1, 1, 3), 4.0)[TTFT] == (2.0, 2.0)  # past the last bound: it


def test_quantile_interpolates_as_histogram_quantile() -> None:
    inf = math.inf
    assert quantile(0.5, [(1.0, 4), (inf, 4)]) == 0.5  # the first bucket starts at 0
    assert quantile(0.99, [(1.0, 0), (2.0, 0), (inf, 5)]) == 2.0
    assert quantile(0.5, [(1.0, 0), (inf, 0)]) is None
    assert quantile(0.5, [(1.0, 2)]) is None  # no +Inf bucket
    assert quantile(0.75, [(0.25, 2), (0.5, 1), (1.0, 4), (inf, 4)]) == 0.75  # a drop is made monotonic


def test_junk_is_a_failed_read_and_keeps_the_previous_one() -> None:
    target, name = Target(), "c_total"
    assert _values(target, "# TYPE c_total counter\nc_total 1\n", 0.0) == {name: None}
    for junk in ("<html><body>Not found</body></html>", "c_total {{{", "\x00\x07\x08 1 2"):
        with pytest.raises(ReadFailed, match="junk"):
            target.derive(junk, 0.5)
    assert _values(target, "# TYPE c_total counter\nc_total 3\n", 1.0) == {name: 2.0}


def _scraper(*urls: str, metrics: tuple[str, ...] = (), cap: int = 200) -> Scraper:
    return Scraper(Scrape(urls, metrics, cap=cap))


def test_the_glob_picks_series_and_the_cap_leaves_out_the_rest_with_a_warning() -> None:
    text = "".join(f"vllm:g{i} {i}\nother{i} {i}\n" for i in range(4)) + _hist(1, 2, 3, 4, 5)
    picked = _scraper(U1, metrics=("vllm:g*", "*first_token*"))
    picked.take(U1, text, time.monotonic())
    assert picked.second() == {f"vllm:g{i}": float(i) for i in range(4)}  # (the histogram: none yet)
    assert picked.warnings() == []

    capped = _scraper(U1, cap=7)
    now = time.monotonic()
    capped.take(U1, text, now - 1)
    capped.take(U1, text.replace('+Inf"}} 5', '+Inf"}} 6'), now)
    got = capped.second()
    assert list(got) == ["vllm:g0", "other0", "vllm:g1", "other1", "vllm:g2", "other2", "vllm:g3"]
    summary = capped.summary()
    assert summary["left_out"] == 2  # other3 and the histogram (two series: p50 and p99)
    assert summary["urls"] == {U1: {"reads": 2, "failed": 0, "errors": {}}}
    (warning,) = capped.warnings()
    assert warning.startswith("--scrape: 2 series were left out (at most 7 are kept; e.g. other3, vllm:time")
    assert "--scrape-metric GLOB" in warning


def test_a_second_url_with_the_same_name_is_prefixed_and_failures_are_counted() -> None:
    s = _scraper(U1, U2)
    now = time.monotonic()
    for t, v in ((now - 2, 1), (now - 1, 5), (now, 2)):
        s.take(U1, f"g {v}\n", t)
        s.take(U2, f"g {v * 10}\n# TYPE h histogram\n", t)
        s.take(U2, "}junk{", t)
        s.second()
    assert s.second() == {"g": 2.0, "127.0.0.1:9002 g": 20.0}
    summary = s.summary()
    assert summary["series"]["g"] == {"kind": "gauge", "url": U1, "mean": 2.5, "max": 5.0, "last": 2.0}
    assert summary["series"]["127.0.0.1:9002 g"]["mean"] == 25.0
    assert summary["urls"][U2] == {"reads": 6, "failed": 3, "errors": {"junk": 3}}
    assert s.warnings() == [f"--scrape {U2}: 3 of 6 reads failed (junk 3)"]


def test_stale_values_leave_a_gap() -> None:
    s = _scraper(U1)
    s.take(U1, "g 1\n", time.monotonic() - 10)  # a target that stopped answering long ago
    assert s.second() == {}
    assert s.summary()["series"] == {}


def test_target_charts_group_by_metric_within_limits() -> None:
    metrics = {f"m{i}_total": 1.0 for i in range(12)}  # twelve counters: twelve charts asked, eight drawn
    metrics |= {f'lat_ms{{route="/{i}"}} p{q}': 3.0 for i in range(6) for q in (50, 99)}  # 12 traces
    metrics |= {"127.0.0.1:9002 ttft_ms p50": 40.0, "127.0.0.1:9002 ttft_ms p99": 90.0}
    metrics["time_to_first_token_ms p99"] = 70.0
    charts = target_charts([{"target_metrics": metrics, "ttft_p99": 60.0}, {}])
    assert len(charts) == 8
    ttft = charts[0]
    assert ttft["title"] == "TTFT: squall vs the server" and ttft["ytitle"] == "ms"
    server = [(t["name"], t["y"]) for t in ttft["traces"][2:]]
    assert server == [("server TTFT p99", [70.0, None])]  # (in ms already)
    assert [c["title"] for c in charts[1:3]] == ["m0_total (per second)", "m1_total (per second)"]
    more = "(7 more not charted: see target_metrics in the result)"  # m7 to m11, lat_ms, 9002's ttft_ms
    assert charts[-1]["title"] == f"m6_total (per second) {more}"
    assert all(len(c["traces"]) <= 10 for c in charts)
    assert target_charts([{"t": 1}]) == []


def test_target_charts_cap_traces_and_name_a_second_url() -> None:
    metrics = {f'lat_seconds{{route="/{i}"}} p{q}': 3.0 for i in range(6) for q in (50, 99)}
    metrics |= {"127.0.0.1:9002 time_to_first_token_seconds p50": 0.04}
    ttft, lat = target_charts([{"target_metrics": metrics}])
    assert lat["title"] == "lat_seconds p50 and p99 (the first 10 of 12 series)" and lat["ytitle"] == "s"
    assert [t["name"] for t in lat["traces"][:2]] == ['{route="/0"} p50', '{route="/0"} p99']
    assert lat["traces"][1]["dash"] == "dash"
    assert ttft["traces"][2] == {"name": "server TTFT p50", "y": [40.0], "dash": "dot"}


def test_churning_labels_keep_state_only_for_the_series_kept() -> None:
    s = _scraper(U1, cap=3)
    now = time.monotonic()
    for i in range(50):  # each read a new label value: only the first three series are ever kept
        text = f'# TYPE c counter\nc_total{{id="{i}"}} {i}\nc_total{{id="{i + 1}"}} {i}\n'
        s.take(U1, text, now - 50 + i)
    assert len(s.targets[U1].counters) == 3
    assert s.summary()["left_out"] == 2  # the most any one read left out
    (warning,) = s.warnings()
    assert warning.count('c_total{id="') == 3  # a sample of their names, not all of them


def test_a_gauge_named_like_a_counter_is_charted_as_the_scraper_says() -> None:
    points = [{"target_metrics": {"queue_total": 4.0, "sent_total": 2.0}}]
    summary = {"series": {"queue_total": {"kind": "gauge"}, "sent_total": {"kind": "counter"}}}
    gauge, counter = target_charts(points, summary)
    assert (gauge["title"], gauge["ytitle"]) == ("queue_total", "value")
    assert (counter["title"], counter["ytitle"]) == ("sent_total (per second)", "per second")


def test_a_bad_url_and_a_bug_are_failed_reads() -> None:
    for url in ("http://127.0.0.1:99999/metrics", "http://127.0.0.1:abc/metrics"):
        with pytest.raises(ReadFailed, match="bad url"):
            fetch(url, 0.5)

    class Broken(Scraper):
        def read(self, url: str) -> None:
            raise RuntimeError("a bug")

    s = Broken(Scrape((U1,), (), timeout_s=0.1), window_s=0.05)
    s.start()
    deadline = time.monotonic() + 5
    while s.summary()["urls"][U1]["reads"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s._thread is not None and s._thread.is_alive()  # (the bug ended no read loop)
    s.close()
    errors = s.summary()["urls"][U1]["errors"]
    assert list(errors) == ["internal"] and errors["internal"] >= 1


def test_a_target_that_drips_its_headers_is_cut_at_the_deadline(byte_server: Callable[..., int]) -> None:
    async def drip(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(20):  # a header line every 0.3 s: each wait is short, the whole answer is not
            await asyncio.sleep(0.3)
            w.write(b"X-Drip-%d: 1\r\n" % i)
            try:
                await w.drain()
            except ConnectionError:
                return

    url = f"http://127.0.0.1:{byte_server(drip)}/metrics"
    t = time.monotonic()
    with pytest.raises(ReadFailed, match="timeout"):
        fetch(url, 0.5)
    assert time.monotonic() - t < 0.5 + 0.3
