"""No planted key reaches any output: the console, stderr, -o, --html, --csv, --junit, report/merge/compare,
a soak checkpoint and every error message; the target still gets the real key."""

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from squall.targets.mock_llm import MockThread
from squall.targets.serve import ServerThread

# Each place gets its own key; none looks like a key by itself, so only the name or the place can hide it.
HEADERS = {
    "X-Goog-Api-Key": "PLANThdrgoog1",
    "Ocp-Apim-Subscription-Key": "PLANThdrocp2",
    "api_key": "PLANThdrunder3",
    "apikey": "PLANThdrapikey4",
    "PRIVATE-TOKEN": "PLANThdrprivate5",
    "X-Amz-Security-Token": "PLANThdramz6",
    "Cookie": "sid=PLANThdrcookie7; theme=PLANThdrcookie7b",
    "Set-Cookie": "a=PLANThdrsetcookie8",
    "X-Auth-Token": "PLANThdrauth9",
    "X-Session-Id": "PLANThdrsession10",
    "X-Signature": "PLANThdrsig11",
    "X-Client-Secret": "PLANThdrsecret12",
    "X-Password": "PLANThdrpassword13",
}
QUERY = "?key=PLANTquerykey1&api_key=PLANTqueryapi2&token=PLANTquerytoken3&sig=PLANTquerysig4&n=1"
BODY_JSON = {"user": "u", "meta": {"deep": {"api_key": "PLANTbodyjson1"}}, "client_secret": "PLANTbodyjson2"}
BODY = {"password": "PLANTbody1", "n": 3, "nested": [{"access_token": "PLANTbody2"}]}
PLANT = re.compile(r"PLANT\w*|sk-PLANT\w*")


def squall(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "squall", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def leaks(proc: subprocess.CompletedProcess[str], folder: Path | None = None) -> list[str]:
    """Every planted key found in the process's output or in any file of `folder`."""
    texts = [("stdout", proc.stdout), ("stderr", proc.stderr)]
    if folder is not None:
        texts += [(p.name, p.read_text(errors="replace")) for p in sorted(folder.iterdir()) if p.is_file()]
    return [f"{where}: {m}" for where, text in texts for m in PLANT.findall(text)]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockThread]:
    with MockThread(ttft_s=0.001, itl_s=0.001, tokens=3, record_sends=True) as m:
        yield m


@pytest.fixture(scope="module")
def llm_result(mock: MockThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One llm run with a key in every header, the query, --body-json, --api-key and --api-key-file."""
    out = tmp_path_factory.mktemp("llm")
    keys = out.parent / "keys.txt"
    keys.write_text("PLANTkeyfile1\nsk-PLANTkeyfile2abcdef\n")
    args = ["llm", f"{mock.url}/v1/chat/completions{QUERY}", "-n", "5", "-w", "1", "-c", "1"]
    for name, value in HEADERS.items():
        args += ["-H", f"{name}: {value}"]
    args += [
        "--body-json",
        json.dumps(BODY_JSON),
        "--api-key",
        "PLANTcliapikey1",
        "--api-key-file",
        str(keys),
    ]
    args += ["-o", str(out / "r.json"), "--html", str(out / "r.html"), "--csv", str(out / "r.csv")]
    args += ["--junit", str(out / "r.xml"), "--threshold", "errors<100%"]
    proc = squall(*args)
    assert proc.returncode == 0, proc.stderr
    assert leaks(proc, out) == []
    assert {p.name for p in out.iterdir()} == {"r.json", "r.html", "r.csv", "r.summary.csv", "r.xml"}
    return out / "r.json"


def test_an_llm_run_writes_no_key_anywhere_but_sends_them_all(llm_result: Path, mock: MockThread) -> None:
    doc = json.loads(llm_result.read_text())
    assert doc["summary"]["requests"] == 5
    meta = doc["meta"]
    assert meta["url"].endswith("?key=***&api_key=***&token=***&sig=***&n=1")
    assert "-H 'X-Goog-Api-Key: ***'" in meta["command"]
    assert "--api-key '***'" in meta["command"]
    assert '"api_key": "***"' in meta["command"] and '"user": "u"' in meta["command"]
    assert meta["llm"]["api_keys"] == 3  # counted, not shown


def test_the_target_gets_the_real_keys(byte_server: Callable[..., int], tmp_path: Path) -> None:
    got: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            got.append(head + await reader.readexactly(int(length[1]) if length else 0))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    port = byte_server(handler)
    proc = squall(
        "run", f"http://127.0.0.1:{port}/echo{QUERY}", "-n", "2", "-w", "1", "-c", "1", "-m", "POST",
        "-H", "X-Goog-Api-Key: PLANTsent1", "-b", json.dumps(BODY), "-o", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert leaks(proc, tmp_path) == []
    assert len(got) == 2
    sent = got[0].decode()
    assert f"POST /echo{QUERY} HTTP/1.1" in sent
    assert "X-Goog-Api-Key: PLANTsent1" in sent
    assert sent.endswith(json.dumps(BODY))


@pytest.mark.parametrize("command", ["report", "merge", "compare"])
def test_report_merge_and_compare_of_the_result_show_no_key(
    llm_result: Path, command: str, tmp_path: Path
) -> None:
    second = tmp_path.parent / f"{tmp_path.name}-second.json"  # merge takes two files, not one twice
    second.write_bytes(llm_result.read_bytes())
    args = {
        "report": [
            "report",
            str(llm_result),
            "--html",
            str(tmp_path / "r.html"),
            "--csv",
            str(tmp_path / "r.csv"),
        ],
        "merge": ["merge", str(llm_result), str(second), "-o", str(tmp_path / "m.json")],
        "compare": ["compare", str(llm_result), str(llm_result), "--json"],
    }[command]
    proc = squall(*args)
    assert proc.returncode in (0, 1), proc.stderr
    assert leaks(proc, tmp_path) == []
    assert proc.stdout or any(tmp_path.iterdir())


def test_a_result_written_before_redaction_is_redacted_when_read(llm_result: Path, tmp_path: Path) -> None:
    doc = json.loads(llm_result.read_text())
    doc["meta"]["url"] = "http://127.0.0.1:1/v1?api_key=PLANTold1"
    doc["meta"]["command"] = "squall run URL -H 'X-Goog-Api-Key: PLANTold2' --api-key sk-PLANTold3abcdef"
    doc["warnings"] = ["worker 0 failed: Authorization: Bearer PLANTold4"]
    old = tmp_path / "old" / "old.json"
    old.parent.mkdir()
    old.write_text(json.dumps(doc))
    proc = squall("report", str(old), "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "r.csv"))
    assert proc.returncode == 0, proc.stderr
    assert leaks(proc, tmp_path) == []


SCENARIO = """\
base_url: {url}
headers: {{X-Goog-Api-Key: PLANTscenfile1, Authorization: "Bearer PLANTscenfile2"}}
scenarios:
  - name: s
    steps:
      - name: create
        request:
          method: POST
          path: /echo?api_key=PLANTscenquery3
          headers: {{PRIVATE-TOKEN: PLANTscenstep4}}
          json: {{title: t, auth: {{password: PLANTscenjson5}}}}
"""


def test_a_scenario_run_shows_no_key(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with ServerThread() as server:
        (tmp_path / "s.yaml").write_text(SCENARIO.format(url=server.url))
        proc = squall(
            "scenario", str(tmp_path / "s.yaml"), "-n", "5", "-w", "1", "-u", "1", "-o", str(out / "r.json")
        )
    assert proc.returncode == 0, proc.stderr
    assert leaks(proc, out) == []
    assert json.loads((out / "r.json").read_text())["summary"]["ok"] == 5


def test_a_soak_checkpoint_and_its_target_command_show_no_key(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cmd = shlex.join([sys.executable, "-c", "import time; time.sleep(60)", "--token", "PLANTtargetcmd1"])
    checkpoint = ""
    with ServerThread() as server:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "squall", "soak", f"{server.url}/echo{QUERY}", "-d", "3s",
                "--warmup", "0s", "-w", "1", "-c", "1", "--checkpoint", "1s",
                "-H", "X-Goog-Api-Key: PLANTsoak1", "--target-cmd", cmd,
                "-o", str(out / "soak.json"), "--hdr-log", str(out / "soak.hlog"),
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            # Read the -o file while the run goes on: a checkpoint, not the final document.
            while '"checkpoint"' not in checkpoint and time.monotonic() < deadline:
                time.sleep(0.1)
                with contextlib.suppress(OSError):
                    checkpoint = (out / "soak.json").read_text()
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert '"checkpoint"' in checkpoint and PLANT.findall(checkpoint) == []
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, stderr
    assert leaks(done, out) == []
    assert "--target-cmd" in json.loads((out / "soak.json").read_text())["meta"]["command"]


# Bad input whose error message would quote the key.
BAD = [
    ["run", "URL", "-n", "1", "-H", "Authorization; Bearer sk-PLANTerr1abcdef"],
    ["run", "URL", "-n", "1", "-H", "Authorization=Bearer PLANTerr2"],
    ["run", "URL", "-n", "1", "-H", "X-Goog-Api-Key PLANTerr3"],
    ["run", "URL", "-n", "1", "-H", "api_key;PLANTerr4"],
    ["run", "http://127.0.0.1:99999/v1?api_key=PLANTerr5", "-n", "1"],
    ["run", "http://bob:PLANTerr6@127.0.0.1:1/", "-n", "1"],
    ["run", "http://127.0.0.1:1/ ?token=PLANTerr7", "-n", "1"],
    ["run", "URL", "-n", "1", "sk-ant-PLANTerr8abcdef"],
    ["llm", "URL", "-n", "1", "--body-json", '{"api_key": "PLANTerr9",}'],
    ["llm", "URL", "-n", "1", "--threshold", "api_key=PLANTerr10"],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a[3:] or a[1:2])[:40] for a in BAD])
def test_an_error_message_shows_no_key(args: list[str], tmp_path: Path) -> None:
    proc = squall(*(a.replace("URL", "http://127.0.0.1:1/v1/chat/completions") for a in args))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert leaks(proc) == []


def test_a_scenario_file_error_shows_no_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "base_url: http://127.0.0.1:1\nheaders: {'Authorization; Bearer PLANTscenerr1': x}\n"
        "scenarios: [{name: s, steps: [{name: a, request: {path: /}}]}]\n"
    )
    proc = squall("scenario", str(path), "-n", "1")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert leaks(proc) == []
