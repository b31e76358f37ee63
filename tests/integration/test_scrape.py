"""--scrape: the target's own metrics in the series, the result and the report; a target whose metrics hang,
404 or send 10 MB of junk leaves the run unharmed (on time, the same requests, warnings with counts)."""

import asyncio
import html
import re
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from squall.cli import app
from squall.report.html import write_html
from squall.report.json import read_json
from squall.targets.serve import ServerThread

TTFT = 'vllm:time_to_first_token_seconds{model_name="m"}'


def _metrics(reads: int) -> bytes:
    """vLLM-like metrics after `reads` reads: 2 running; 10 tokens and 4 TTFTs in (0.1, 0.25] s a read."""
    lines = [
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{model_name="m"} 2',
        "# TYPE vllm:generation_tokens_total counter",
        f'vllm:generation_tokens_total{{model_name="m"}} {10 * reads}',
        "# TYPE vllm:time_to_first_token_seconds histogram",
        *(
            f'vllm:time_to_first_token_seconds_bucket{{model_name="m",le="{le}"}} {n}'
            for le, n in (("0.1", 0), ("0.25", 4 * reads), ("+Inf", 4 * reads))
        ),
        f'vllm:time_to_first_token_seconds_count{{model_name="m"}} {4 * reads}',
    ]
    return ("\n".join(lines) + "\n").encode()


def _servers(byte_server: Callable[..., int]) -> dict[str, str]:
    """Four --scrape targets: good metrics, one that never answers, a 404, 10 MB of junk."""
    reads = [0]

    async def good(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        reads[0] += 1
        body = _metrics(reads[0])
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await w.drain()
        w.close()

    async def hang(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def junk(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for _ in range(160):  # 10 MB with no length: read until the cap
            w.write(b"\x07junk{{" * 8192)
            try:
                await w.drain()
            except ConnectionError:
                return
        w.close()

    url = "http://127.0.0.1:{}/metrics"
    return {
        "good": url.format(byte_server(good)),
        "hang": url.format(byte_server(hang)),
        "junk": url.format(byte_server(junk)),
    }


def _run(args: list[str]) -> tuple[int, str, float]:
    t = time.monotonic()
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output, time.monotonic() - t


def test_a_run_reads_good_metrics_and_shrugs_off_bad_ones(
    target: ServerThread,
    byte_server: Callable[..., int],
    tmp_path: Path,
    check_result: Callable[[dict], None],
) -> None:
    urls = _servers(byte_server)
    urls["404"] = target.url + "/status/404"
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    base = ["run", target.url + "/", "-r", "50", "-d", "2s", "-w", "1", "-q"]
    scrape = [a for u in urls.values() for a in ("--scrape", u)]
    from test_report import _embedded

    code, output, took = _run([*base, *scrape, "-o", str(out), "--html", str(page)])
    assert code == 0, output
    assert took < 2 + 3, took  # (a run's start and end take ~0.5 s; more on a busy box)
    doc = read_json(str(out))
    check_result(doc)
    assert doc["summary"]["requests"] == 100  # the schedule's count, as without scraping

    series = [e.get("target_metrics") or {} for e in doc["timeseries"]]
    assert all(e['vllm:num_requests_running{model_name="m"}'] == 2.0 for e in series[1:]), series
    rates = [e['vllm:generation_tokens_total{model_name="m"}'] for e in series[1:]]
    assert all(5 <= r <= 20 for r in rates), rates  # ~10 a second (a read is once a second, give or take)
    # Every new TTFT fell in (0.1, 0.25]: p50 at its middle, p99 near its top (in seconds, as the target has).
    assert {e[f"{TTFT} p50"] for e in series[1:]} == {0.175}
    assert {e[f"{TTFT} p99"] for e in series[1:]} == {0.2485}
    tm = doc["target_metrics"]
    assert tm["series"][f"{TTFT} p99"]["kind"] == "histogram"
    assert tm["series"]['vllm:num_requests_running{model_name="m"}']["max"] == 2.0
    good = tm["urls"][urls["good"]]
    assert good["failed"] == 0 and good["reads"] >= 2
    for name, kind in (("hang", "timeout"), ("junk", "too large"), ("404", "HTTP 404")):
        got = tm["urls"][urls[name]]
        assert got["reads"] >= 2 and got["failed"] == got["reads"] == got["errors"][kind], (name, got)
        n = got["reads"]
        assert f"--scrape {urls[name]}: {n} of {n} reads failed ({kind} {n})" in doc["warnings"]

    titles = [c["title"] for c in _embedded(page.read_text())["extra"]]
    assert titles == [
        "TTFT: squall vs the server",
        'vllm:num_requests_running {model_name="m"}',
        'vllm:generation_tokens_total {model_name="m"} (per second)',
    ]


def test_the_report_draws_the_target_charts(tmp_path: Path) -> None:
    from test_report import _draw, _embedded  # (_draw skips when chromium is missing)

    running, waiting = (f'vllm:num_requests_{w}{{model_name="m"}}' for w in ("running", "waiting"))
    scraped = [{running: t, waiting: 5 - t, f"{TTFT} p50": 0.07, f"{TTFT} p99": 0.13} for t in range(1, 5)]
    series = [
        {"t": t, "rps": 10.0, "requests": 10, "ok": 10, "errors": 0, "error_kinds": {}}
        | {"p50": 90.0, "p99": 150.0, "ttft_p50": 80.0, "ttft_p99": 140.0, "target_metrics": m}
        for t, m in enumerate(scraped, 1)
    ]
    doc = {"meta": {"command": "squall llm"}, "summary": {"requests": 40, "ok": 40}, "timeseries": series}
    page = tmp_path / "t.html"
    write_html(doc, page)
    (ttft, queue) = _embedded(page.read_text())["extra"]
    names = [tr["name"] for tr in ttft["traces"]]
    assert names == ["squall TTFT p50", "squall TTFT p99", "server TTFT p50", "server TTFT p99"]
    assert ttft["traces"][3]["y"] == [130.0] * 4  # the server's seconds, in ms
    assert queue["title"] == 'vllm:num_requests_* {model_name="m"}'
    got = [(tr["name"], tr["y"]) for tr in queue["traces"]]
    assert got == [("running", [1, 2, 3, 4]), ("waiting", [4, 3, 2, 1])]
    dom = _draw(page)
    charts = [html.unescape(t) for t in re.findall(r'<div class="chart[^"]*" data-title="([^"]*)"', dom)]
    assert "TTFT: squall vs the server" in charts and 'vllm:num_requests_* {model_name="m"}' in charts


def test_a_bad_scrape_url_is_one_line_and_exit_2(target: ServerThread) -> None:
    for args, needle in (
        (["--scrape", "ftp://127.0.0.1/metrics"], "--scrape 'ftp://127.0.0.1/metrics': give an http://"),
        (["--scrape-metric", "vllm:*"], "give --scrape too"),
        (["--scrape", "http://127.0.0.1:99999/m"], "--scrape 'http://127.0.0.1:99999/m': the port must be"),
    ):
        res = CliRunner().invoke(app, ["run", target.url + "/", "-d", "1s", "-w", "1", "-q", *args])
        assert res.exit_code == 2, res.output
        assert needle in res.output and len(res.output.strip().splitlines()) == 1, res.output
