"""The live dashboard in headless Chromium, driven over the DevTools protocol: the page loads from the
collector, its charts grow each second, a users change and a stop click act as specified, and nothing is
logged to the console."""

import asyncio
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from squall.report.json import read_json
from squall.targets.serve import ServerThread

ROOT = Path(__file__).resolve().parents[2]
POINTS = """(() => {
  const d = [...document.querySelectorAll(".chart")].find(e =>
    (e.getAttribute("data-title") || "").startsWith("Throughput"));
  return d && d.data ? d.data[0].x.length : 0;
})()"""
BAD = ("error", "warning")  # console messages and log entries that fail the test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)  # type: ignore[arg-type]
    assert sel.select(timeout), "squall printed nothing"
    return proc.stderr.readline().strip()  # type: ignore[union-attr]


class Tab:
    """One page of a headless Chromium over its DevTools websocket; console errors are kept in `errors`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.calls = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            m = json.loads(msg.data)
            if "id" in m and m["id"] in self.waiting:
                self.waiting.pop(m["id"]).set_result(m)
            elif m.get("method") == "Runtime.exceptionThrown":
                self.errors.append(str(m["params"]["exceptionDetails"]))
            elif m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] in BAD:
                self.errors.append(str(m["params"]["args"]))
            elif m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] in BAD:
                self.errors.append(m["params"]["entry"]["text"])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        done = self.waiting[self.calls] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": self.calls, "method": method, "params": params})
        got = await asyncio.wait_for(done, 10)
        assert "error" not in got, got
        return got["result"]

    async def js(self, expression: str) -> Any:
        got = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in got, got
        return got["result"].get("value")

    async def until(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true: {expression}")


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/status", timeout=5) as r:
        return json.loads(r.read())


async def _drive(browser: str, profile: Path, url: str, proc: subprocess.Popen[str]) -> tuple[list[str], int]:
    chrome = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        devtools = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{devtools}/json/list") as r:
                (page,) = [t for t in await r.json() if t["type"] == "page"]
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = Tab(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await tab.call(f"{domain}.enable")
                await tab.call("Page.navigate", url=url)
                await tab.until(f"{POINTS} >= 1")  # the page loaded from the collector, and drew a second
                before = await tab.js(POINTS)
                # The charts grow as the seconds come (each second on a quiet box; the collector builds the
                # page data less often while building it takes more than its share of the collector's time).
                after = await tab.until(f"(n => n >= {before + 1} && n)({POINTS})", 10)
                assert await tab.js("document.getElementById('live-phase').textContent") == "running"

                await tab.js("document.getElementById('live-value').value = '3'")
                await tab.js("document.getElementById('live-apply').click()")
                said = "document.getElementById('live-msg').textContent"
                await tab.until(f"{said}.startsWith('changed to 3 users')")
                assert [c["users"] for c in _status(url)["changes"]] == [3]

                await tab.js("document.getElementById('live-stop').click()")
                code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
                # The run's last status reached the page, which says so and keeps its charts.
                await tab.until("document.body.getAttribute('data-phase') === 'done'")
                assert await tab.js(POINTS) >= after
                text = await tab.js("document.getElementById('live-msg').textContent")
                assert "the run has ended (interrupted)" in text, text
                tab.reader.cancel()
                return tab.errors, code
    finally:
        chrome.terminate()
        try:
            chrome.wait(10)
        except subprocess.TimeoutExpired:
            chrome.kill()
            chrome.wait(5)


def test_the_live_page_grows_changes_users_and_stops(target: ServerThread, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    out, port = tmp_path / "r.json", _free_port()
    args = ["run", target.url + "/delay/5", "-c", "2", "-d", "30s", "-w", "1", "-q", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "squall", *args, "--dashboard", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = _first_line(proc, 20)
        assert line == f"dashboard: http://127.0.0.1:{port}/", line
        errors, code = asyncio.run(_drive(browser, tmp_path / "chrome", line.split()[1], proc))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert code == 130
    doc = read_json(str(out))
    assert doc["meta"]["stop_reason"] == "interrupted"
    assert [(c["users"], c["by"]) for c in doc["meta"]["changes"]] == [(3, "dashboard")]
    assert errors == []
