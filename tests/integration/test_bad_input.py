"""Bad input over every command: one line on stderr naming the problem, exit 2, never a traceback.

Each case runs the whole command line in-process (the same path `squall ...` takes, usage errors of the
option parser included); none of them gets as far as starting a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from squall.cli.commands import run_cli
from squall.targets.serve import ServerThread

U = "http://127.0.0.1:9/"  # never reached: every case fails before a run starts
L = "http://127.0.0.1:9/v1/chat/completions"

# name -> file content (str is UTF-8 text, bytes are written as they are)
FILES: dict[str, str | bytes] = {
    "empty.txt": "",
    "blank.txt": "\n\n   \n",
    "binary.txt": b"\xff\xfe\x00\x81garbage\x00",
    "bad.jsonl": '{"prompt": "hi"}\n{not json\n',
    "list.jsonl": "[1, 2, 3]\n",
    "noprompt.jsonl": '{"other": 1}\n',
    "numprompt.jsonl": '{"prompt": 5}\n',
    "badmsgs.jsonl": '{"messages": "hello"}\n',
    "badmsg.jsonl": '{"messages": [{"role": 5}]}\n',
    "nullmsg.jsonl": '{"messages": [null]}\n',
    "prompts.csv": "a,b\n",
    "keys-empty.txt": "\n\n",
    "keys-binary.txt": b"\xff\xfe\xfd\n",
    "body.json": '{"a": 1}',
    "notjson.json": "not json at all",
    "array.json": "[1, 2]",
    "nulls.json": "null",
    "other-schema.json": json.dumps({"schema": "other@1"}),
    "old-schema.json": json.dumps({"schema": "squall/result@0"}),
    "s-empty.yaml": "",
    "s-list.yaml": "- a\n- b\n",
    "s-scalar.yaml": "42\n",
    "s-badyaml.yaml": "base_url: [unclosed\n",
    "s-tabs.yaml": "base_url: x\n\tscenarios: []\n",
    "s-binary.yaml": b"\xff\xfe\x00\x00",
    "s-ctrl.yaml": "base_url: http://127.0.0.1:9\nusers: 2\x1a\n",
    "s-unknown.yaml": "base_url: http://127.0.0.1:9\nscenarios: []\nfoo: 1\n",
    "s-nourl.yaml": "scenarios: [{name: a, steps: [{name: s, request: {path: /}}]}]\n",
    "s-badurl.yaml": "base_url: ftp://x\nscenarios: [{name: a, steps: [{name: s, request: {path: /}}]}]\n",
    "s-noscen.yaml": "base_url: http://127.0.0.1:9\n",
    "s-emptyscen.yaml": "base_url: http://127.0.0.1:9\nscenarios: []\n",
    "s-scenstr.yaml": "base_url: http://127.0.0.1:9\nscenarios: hello\n",
    "s-users0.yaml": "base_url: http://127.0.0.1:9\nusers: 0\nscenarios: [{name: a, steps: [{name: s}]}]\n",
    "s-usersstr.yaml": "base_url: http://127.0.0.1:9\nusers: many\nscenarios: [{name: a, steps: []}]\n",
    "s-dur.yaml": "base_url: http://127.0.0.1:9\nduration: soon\nscenarios: [{name: a, steps: []}]\n",
    "s-think.yaml": "base_url: http://127.0.0.1:9\nthink: [1]\nscenarios: [{name: a, steps: []}]\n",
    "s-stage.yaml": "base_url: http://127.0.0.1:9\nstages: [abc]\nscenarios: [{name: a, steps: []}]\n",
    "s-thr.yaml": (
        "base_url: http://127.0.0.1:9\nthresholds: ['rps>nan']\n"
        "scenarios: [{name: a, steps: [{name: s, request: {path: /}}]}]\n"
    ),
    "s-nosteps.yaml": "base_url: http://127.0.0.1:9\nscenarios: [{name: a}]\n",
    "s-stepstr.yaml": "base_url: http://127.0.0.1:9\nscenarios: [{name: a, steps: [hello]}]\n",
    "s-noname.yaml": "base_url: http://127.0.0.1:9\nscenarios: [{steps: [{request: {path: /}}]}]\n",
    "s-weight.yaml": "base_url: http://127.0.0.1:9\nscenarios: [{name: a, weight: .nan, steps: [x]}]\n",
    "s-both.yaml": "base_url: http://127.0.0.1:9\nscenarios: [{name: a, steps: [{name: s}]}]\n",
    "s-method.yaml": (
        "base_url: http://127.0.0.1:9\nscenarios: [{name: a, steps: [{name: s, request: {method: FETCH}}]}]\n"
    ),
    "s-path.yaml": (
        "base_url: http://127.0.0.1:9\nscenarios: [{name: a, steps: [{name: s, request: {path: 5}}]}]\n"
    ),
    "s-var.yaml": (
        "base_url: http://127.0.0.1:9\n"
        "scenarios: [{name: a, steps: [{name: s, request: {path: '/{{nope}}'}}]}]\n"
    ),
    "s-hdr.yaml": (
        "base_url: http://127.0.0.1:9\nheaders: {'Bad Name': x}\n"
        "scenarios: [{name: a, steps: [{name: s, request: {path: /}}]}]\n"
    ),
    "s-bigint.yaml": (
        "base_url: http://127.0.0.1:9\n"
        "scenarios: [{name: a, steps: [{name: s, request:\n"
        "  {path: /, json: {a: 123456789012345678901234567890}}}]}]\n"
    ),
    "s-deep.yaml": (
        "base_url: http://127.0.0.1:9\nscenarios:\n- name: a\n  steps:\n  - name: s\n    request:\n"
        "      path: /\n      json: " + "[" * 500 + "]" * 500 + "\n"
    ),
    "s-deepmap.yaml": (
        "base_url: http://127.0.0.1:9\nscenarios:\n- name: a\n  steps:\n  - name: s\n    request:\n"
        "      path: /\n      json: " + "{a: " * 500 + "1" + "}" * 500 + "\n"
    ),
    "s-anchors.yaml": (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    ),
    "s-data.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: missing.csv}\nscenarios: [{name: a}]\n",
    "s-datastr.yaml": "base_url: http://127.0.0.1:9\ndata: users.csv\nscenarios: [{name: a}]\n",
    "s-databin.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: binary.txt}\nscenarios: [{name: a}]\n",
    "s-dataempty.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: empty.txt}\nscenarios: [{name: a}]\n",
    "s-datacols.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: cols.csv}\nscenarios: [{name: a}]\n",
    "s-datarows.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: rows.csv}\nscenarios: [{name: a}]\n",
    "s-dataper.yaml": (
        "base_url: http://127.0.0.1:9\ndata: {csv: rows.csv, per: always}\nscenarios: [{name: a}]\n"
    ),
    "s-datadir.yaml": "base_url: http://127.0.0.1:9\ndata: {csv: .}\nscenarios: [{name: a}]\n",
    "s-llm.yaml": (
        "base_url: http://127.0.0.1:9\nscenarios: [{name: a, steps: [{name: s, llm: {prompt: ''}}]}]\n"
    ),
    "s-llmapi.yaml": (
        "base_url: http://127.0.0.1:9\n"
        "scenarios: [{name: a, steps: [{name: s, llm: {prompt: hi, api: nope}}]}]\n"
    ),
    "s-extract.yaml": (
        "base_url: http://127.0.0.1:9\n"
        "scenarios: [{name: a, steps: [{name: s, request: {path: /}, extract: {x: 'not a path'}}]}]\n"
    ),
    "s-expect.yaml": (
        "base_url: http://127.0.0.1:9\n"
        "scenarios: [{name: a, steps: [{name: s, request: {path: /}, expect: {status: abc}}]}]\n"
    ),
    "cols.csv": "not a name,x\n1,2\n",
    "rows.csv": "a,b\n1\n",
    "users.csv": "a\n1\n",
    "dir/keep.txt": "",
}


def _results(d: Path, good: dict) -> None:
    """Result files that are squall results on the outside and wrong inside."""

    def variant(name: str, change: Callable[[dict], None]) -> None:
        doc = json.loads(json.dumps(good))
        change(doc)
        (d / name).write_text(json.dumps(doc))

    def each_hist(value: object) -> Callable[[dict], None]:
        def change(doc: dict) -> None:
            for key in doc["histograms"]:
                doc["histograms"][key] = value

        return change

    variant("r-hist-str.json", each_hist("not base64 HDR"))
    variant("r-hist-b64.json", each_hist("aGVsbG8gd29ybGQ="))  # valid base64, not a histogram
    variant("r-hist-empty.json", each_hist(""))
    variant("r-hist-num.json", each_hist(5))
    variant("r-hist-null.json", each_hist(None))
    variant("r-hist-list.json", each_hist([1, 2]))
    variant("r-hist-dict.json", each_hist({"a": 1}))
    variant("r-hist-trunc.json", lambda doc: _truncate_hists(doc))
    variant("r-histograms-list.json", lambda doc: doc.__setitem__("histograms", []))
    variant("r-meta-list.json", lambda doc: doc.__setitem__("meta", []))
    variant("r-summary-str.json", lambda doc: doc.__setitem__("summary", "x"))
    variant("r-timeseries-dict.json", lambda doc: doc.__setitem__("timeseries", {}))
    variant("r-timeseries-junk.json", lambda doc: doc.__setitem__("timeseries", [1, "a", None]))
    variant("r-counters-str.json", lambda doc: doc.__setitem__("counters", {"requests": "many"}))
    variant("r-summary-junk.json", lambda doc: doc["summary"].update(requests="x", latency_ms=5, rps="y"))
    variant("r-meta-junk.json", lambda doc: doc["meta"].update(started="x", duration_s="y", workers="z"))
    variant("r-no-schema.json", lambda doc: doc.pop("schema"))
    text = json.dumps(good)
    (d / "r-cut.json").write_text(text[: len(text) // 2])
    deep = "[" * 100_000 + "]" * 100_000
    (d / "r-deep.json").write_text(deep)


def _truncate_hists(doc: dict) -> None:
    for key, value in doc["histograms"].items():
        if isinstance(value, str):
            doc["histograms"][key] = value[: len(value) // 2]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    for name, content in FILES.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    os.mkfifo(d / "fifo")
    with ServerThread() as server:
        good = d / "good.json"
        code, err, _ = _invoke(
            ["run", server.url + "/", "-n", "20", "-c", "2", "-w", "1", "-q", "-o", str(good)]
        )
        assert code == 0, err
    _results(d, json.loads(good.read_text()))
    return d


def _invoke(args: list[str]) -> tuple[int, str, str]:
    with CliRunner().isolation() as (out, err, _):
        code = run_cli(args)
        got = err.getvalue().decode(errors="replace"), out.getvalue().decode(errors="replace")
    return code, *got


def _one_line_exit_2(args: list[str], needle: str) -> None:
    code, err, out = _invoke(args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err + out, err
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("squall: error: "), err
    assert needle.lower() in lines[0].lower(), (needle, lines[0])


CASES: list[tuple[str, str]] = [
    # ---- option parser: types, unknown options, missing arguments (every command) ----
    ("nosuch", "no such command"),
    ("run", "missing argument"),
    (f"run {U} --nope", "no such option"),
    (f"run {U} -c abc", "--connections"),
    (f"run {U} -n 1.5", "--requests"),
    (f"run {U} -w two", "--workers"),
    (f"run {U} -r fast", "--rate"),
    (f"run {U} --burstiness x", "--burstiness"),
    (f"run {U} --seed x", "--seed"),
    (f"run {U} --target-pid x", "--target-pid"),
    (f"run {U} --start-at soon", "--start-at"),
    (f"run {U} -c", "requires an argument"),
    ("llm", "missing argument"),
    (f"llm {L} --max-tokens x", "--max-tokens"),
    (f"llm {L} --temperature hot", "--temperature"),
    ("scenario", "missing argument"),
    ("scenario {d}/s-list.yaml -u x", "--users"),
    ("py", "missing argument"),
    ("py m:f -n x", "--iterations"),
    (f"hunt {U} --start x", "--start"),
    (f"hunt {U} --max x", "--max"),
    (f"hunt {U} --growth x", "--growth"),
    (f"soak {U} --leak-threshold x", "--leak-threshold"),
    ("serve --port x", "--port"),
    ("mock --jitter x", "--jitter"),
    ("mock --seed x", "--seed"),
    ("demo -c x", "--concurrency"),
    ("plan --rpm x", "--rpm"),
    ("report", "missing argument"),
    ("merge", "missing argument"),
    ("compare {d}/good.json", "missing argument"),
    # ---- run: URL, request, load, stop, outputs ----
    ("run ''", "not an http"),
    ("run http://", "host"),
    ("run http://[::1", "url"),
    ("run 'http://127.0.0.1:99999/'", "port"),
    ("run 'http://127.0.0.1:abc/'", "port"),
    ("run 'http://127.0.0.1/ space'", "url"),
    ("run javascript:alert(1)", "not an http"),
    ("run 127.0.0.1:8080", "not an http"),
    (f"run {U} -m 'GET X'", "method"),
    (f"run {U} -m ''", "method"),
    (f"run {U} -H ':v'", "malformed"),
    (f"run {U} -H 'A B: v'", "malformed"),
    (f"run {U} -H 'X: a\rb'", "line break"),
    (f"run {U} -H 'Authorization; Bearer sk-x'", "malformed"),
    (f"run {U} --body-file {{d}}/dir", "--body-file"),
    (f"run {U} -b x --body-file {{d}}/body.json", "--body"),
    (f"run {U} -c 0", "--connections"),
    (f"run {U} -c 100000000", "--connections"),
    (f"run {U} -n 0", "--requests"),
    (f"run {U} -w 0", "--workers"),
    (f"run {U} -w -1", "--workers"),
    (f"run {U} -w 100000", "--workers"),
    (f"run {U} -r 0", "--rate"),
    (f"run {U} -r nan", "--rate"),
    (f"run {U} -r -inf", "--rate"),
    (f"run {U} -d ''", "--duration"),
    (f"run {U} -d 0s", "--duration"),
    (f"run {U} -d -5s", "--duration"),
    (f"run {U} -d 1e400", "--duration"),
    (f"run {U} -d nan", "--duration"),
    (f"run {U} -d inf", "--duration"),
    (f"run {U} -d 10x", "--duration"),
    (f"run {U} --timeout 0s", "--timeout"),
    (f"run {U} --timeout never", "--timeout"),
    (f"run {U} --warmup x", "--warmup"),
    (f"run {U} -r 5 --arrival gamma --burstiness 0", "--burstiness"),
    (f"run {U} -r 5 --arrival gamma --burstiness nan", "--burstiness"),
    (f"run {U} -r 5 --arrival gamma --burstiness inf", "--burstiness"),
    (f"run {U} --target-pid -1", "--target-pid"),
    (f"run {U} --target-pid 0", "--target-pid"),
    (f"run {U} --threshold ''", "--threshold"),
    (f"run {U} --threshold 'rps>nan'", "--threshold"),
    (f"run {U} --threshold 'rps>inf'", "--threshold"),
    (f"run {U} --threshold 'rps>-inf'", "--threshold"),
    (f"run {U} --threshold 'requests>1e999'", "--threshold"),
    (f"run {U} --threshold 'errors<nan%'", "--threshold"),
    (f"run {U} --threshold 'errors<150%'", "--threshold"),
    (f"run {U} --threshold 'p99<nan'", "--threshold"),
    (f"run {U} --threshold 'p99<inf'", "--threshold"),
    (f"run {U} --threshold 'p99<-1s'", "--threshold"),
    (f"run {U} --threshold 'p99=1s'", "--threshold"),
    (f"run {U} --threshold 'p99<'", "--threshold"),
    (f"run {U} --threshold 'step..p99<1s'", "--threshold"),
    (f"run {U} --threshold 'p99<infms'", "--threshold"),
    (f"run {U} --threshold 'p99<300'", "--threshold"),
    (f"run {U} --threshold 'errors.nope<1%'", "--threshold"),
    (f"run {U} --threshold 'errors.timeout<0.5'", "--threshold"),
    (f"run {U} --threshold 'errors.http_429<nan%'", "--threshold"),
    (f"run {U} --threshold 'target_rss<600'", "--threshold"),
    (f"run {U} --threshold 'target_cpu<inf%'", "--threshold"),
    (f"run {U} --threshold 'errors<1'", "reads as the fraction"),
    (f"hunt {U} -c 10 --threshold 'p99<1s'", "in concurrency mode"),
    (f"run {U} --threshold 'target_rss<600MB'", "--target-pid"),
    (f"run {U} --threshold 'errors.Timeout<1%'", "outside squall py"),
    (f"llm {U} --threshold 'target_cpu<80%'", "--target-pid"),
    (f"run {U} --threshold 'p99<1s' --abort-on-fail --abort-grace x", "--abort-grace"),
    (f"run {U} --stage ''", "--stage"),
    (f"run {U} --stage 1s:x", "--stage"),
    (f"run {U} --stage x:10", "--stage"),
    (f"run {U} --stage 1s:-5", "--stage"),
    (f"run {U} --stage 1s:nan", "--stage"),
    (f"run {U} --stage 1s:inf/s", "--stage"),
    (f"run {U} --stage 1s:1e400", "--stage"),
    (f"run {U} --stage 1s:10/m", "--stage"),
    (f"run {U} --stage 0s:10", "--stage"),
    (f"run {U} --profile '' -d 5s", "--profile"),
    (f"run {U} --think ''", "--think"),
    (f"run {U} --think 5s-1s", "--think"),
    (f"run {U} --think exp:nan", "--think"),
    (f"run {U} --think 1s-inf", "--think"),
    (f"run {U} --think abc", "--think"),
    (f"run {U} --shard x", "--shard"),
    (f"run {U} --shard 2/2", "--shard"),
    (f"run {U} --shard 0/0", "--shard"),
    (f"run {U} --shard -1/2", "--shard"),
    (f"run {U} --shard 1/2/3", "--shard"),
    (f"run {U} --start-at nan", "--start-at"),
    (f"run {U} --start-at inf", "--start-at"),
    (f"run {U} --start-at -5", "--start-at"),
    (f"run {U} --start-at 1e300", "--start-at"),
    (f"run {U} --prometheus-port x", "--prometheus-port"),
    (f"run {U} --prometheus-port 70000", "--prometheus-port"),
    (f"run {U} --prometheus-port -1", "--prometheus-port"),
    (f"run {U} --prometheus-port ''", "--prometheus-port"),
    (f"run {U} --prometheus-port host:", "--prometheus-port"),
    (f"run {U} --transport curl", "--transport"),
    (f"run {U} -o {{d}}/dir", "is a directory"),
    (f"run {U} -o /proc/version", "--out"),
    (f"run {U} -o ''", "--out"),
    (f"run {U} -o {{d}}/fifo", "not a regular file"),  # a rename would replace the node itself
    (f"run {U} --target-pid 99999999999999999999", "--target-pid"),
    (f"run {U} --stage 1s:{'9' * 400}", "--stage"),
    (f"run {U} --html /nonexistent/x.html", "--html"),
    (f"run {U} --csv {{d}}/dir", "--csv"),
    (f"run {U} --threshold p99<1s --junit {{d}}/dir", "--junit"),
    # ---- llm ----
    (f"llm {L} --api nope", "--api"),
    (f"llm {L} --max-tokens 0", "--max-tokens"),
    (f"llm {L} --max-tokens -1", "--max-tokens"),
    (f"llm {L} --temperature nan", "--temperature"),
    (f"llm {L} --temperature inf", "--temperature"),
    (f"llm {L} --temperature -1", "--temperature"),
    (f"llm {L} --body-json ''", "--body-json"),
    (f"llm {L} --body-json '{{'", "--body-json"),
    (f"llm {L} --body-json '[1]'", "--body-json"),
    (f"llm {L} --body-json 'null'", "--body-json"),
    (f"llm {L} --body-json '\"s\"'", "--body-json"),
    (f"llm {L} --body-json '{{\"a\": NaN}}'", "--body-json"),
    (f"llm {L} --body-json '{{\"a\": 1e999}}'", "--body-json"),
    ("llm " + L + " --body-json '{\"a\": {deep}}'", "--body-json"),
    (f"llm {L} --prompts /nonexistent.txt", "--prompts"),
    (f"llm {L} --prompts {{d}}/dir", "--prompts"),
    (f"llm {L} --prompts {{d}}/empty.txt", "--prompts"),
    (f"llm {L} --prompts {{d}}/blank.txt", "--prompts"),
    (f"llm {L} --prompts {{d}}/binary.txt", "--prompts"),
    (f"llm {L} --prompts {{d}}/bad.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/list.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/noprompt.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/numprompt.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/badmsgs.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/badmsg.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/nullmsg.jsonl", "--prompts"),
    (f"llm {L} --prompts {{d}}/prompts.csv", "--prompts"),
    (f"llm {L} --input-tokens x", "--input-tokens"),
    (f"llm {L} --input-tokens 0", "--input-tokens"),
    (f"llm {L} --input-tokens -5", "--input-tokens"),
    (f"llm {L} --input-tokens 10:-1", "--input-tokens"),
    (f"llm {L} --input-tokens 10:inf", "--input-tokens"),
    (f"llm {L} --output-tokens 1.5", "--output-tokens"),
    (f"llm {L} --output-tokens ''", "--output-tokens"),
    (f"llm {L} --api-key ''", "api key"),
    (f"llm {L} --api-key 'a\nb'", "api key"),
    (f"llm {L} --api-key-file /nonexistent", "--api-key-file"),
    (f"llm {L} --api-key-file {{d}}/dir", "--api-key-file"),
    (f"llm {L} --api-key-file {{d}}/keys-empty.txt", "--api-key-file"),
    (f"llm {L} --api-key-file {{d}}/keys-binary.txt", "--api-key-file"),
    (f"llm {L} --goodput ''", "--goodput"),
    (f"llm {L} --goodput 'ttft<nan'", "--goodput"),
    (f"llm {L} --goodput 'rps>5'", "--goodput"),
    (f"llm {L} --goodput 'ttft<-1s'", "--goodput"),
    (f"llm {L} --prompts {{d}}/bad.jsonl --input-tokens 5", "--prompts"),
    (f"llm {L} -c 0", "--connections"),
    # ---- scenario (the file and its data) ----
    ("scenario /nonexistent.yaml", "cannot be read"),
    ("scenario {d}/dir", "cannot be read"),
    ("scenario {d}/s-empty.yaml", "mapping"),
    ("scenario {d}/s-list.yaml", "mapping"),
    ("scenario {d}/s-scalar.yaml", "mapping"),
    ("scenario {d}/s-badyaml.yaml", "not valid yaml"),
    ("scenario {d}/s-tabs.yaml", "yaml"),
    ("scenario {d}/s-ctrl.yaml", "s-ctrl.yaml:2: not valid yaml: unacceptable character"),
    ("scenario {d}/s-binary.yaml", "cannot be read"),
    ("scenario {d}/s-unknown.yaml", "unknown field"),
    ("scenario {d}/s-nourl.yaml", "base_url"),
    ("scenario {d}/s-badurl.yaml", "base_url"),
    ("scenario {d}/s-noscen.yaml", "scenarios"),
    ("scenario {d}/s-emptyscen.yaml", "scenarios"),
    ("scenario {d}/s-scenstr.yaml", "scenarios"),
    ("scenario {d}/s-users0.yaml", "users"),
    ("scenario {d}/s-usersstr.yaml", "users"),
    ("scenario {d}/s-dur.yaml", "duration"),
    ("scenario {d}/s-think.yaml", "think"),
    ("scenario {d}/s-stage.yaml", "stages"),
    ("scenario {d}/s-thr.yaml", "thresholds"),
    ("scenario {d}/s-nosteps.yaml", "steps"),
    ("scenario {d}/s-stepstr.yaml", "steps[0]"),
    ("scenario {d}/s-noname.yaml", "name"),
    ("scenario {d}/s-weight.yaml", "weight"),
    ("scenario {d}/s-both.yaml", "exactly one of request or llm"),
    ("scenario {d}/s-method.yaml", "method"),
    ("scenario {d}/s-path.yaml", "path"),
    ("scenario {d}/s-var.yaml", "nope"),
    ("scenario {d}/s-hdr.yaml", "headers"),
    ("scenario {d}/s-bigint.yaml", "json"),
    ("scenario {d}/s-deep.yaml", "nested too deeply"),
    ("scenario {d}/s-deepmap.yaml", "nested too deeply"),
    ("scenario {d}/s-anchors.yaml", "unknown field"),
    ("scenario {d}/s-data.yaml", "data.csv"),
    ("scenario {d}/s-datastr.yaml", "data"),
    ("scenario {d}/s-databin.yaml", "data.csv"),
    ("scenario {d}/s-dataempty.yaml", "data.csv"),
    ("scenario {d}/s-datacols.yaml", "data.csv"),
    ("scenario {d}/s-datarows.yaml", "data.csv"),
    ("scenario {d}/s-dataper.yaml", "data.per"),
    ("scenario {d}/s-datadir.yaml", "data.csv"),
    ("scenario {d}/s-llm.yaml", "prompt"),
    ("scenario {d}/s-llmapi.yaml", "api"),
    ("scenario {d}/s-extract.yaml", "extract"),
    ("scenario {d}/s-expect.yaml", "expect"),
    ("scenario {d}/s-nourl.yaml -u 0", "base_url"),
    # ---- py ----
    ("py ''", "module:factory"),
    ("py nocolon", "module:factory"),
    ("py 'no such:f'", "cannot import"),
    ("py no_such_module_xyz:f", "no_such_module_xyz"),
    ("py examples.agent_sdk:nope", "nope"),
    ("py examples.agent_sdk:workload --param x", "--param"),
    ("py examples.agent_sdk:workload --param =1", "--param"),
    ("py examples.agent_sdk:workload --param 'concurrency=abc'", "concurrency"),
    ("py examples.agent_sdk:workload --param 'concurrency=0'", "concurrency"),
    ("py examples.agent_sdk:workload -c 0", "-c"),
    # ---- hunt ----
    (f"hunt {U}", "--slo"),
    (f"hunt {U} --slo ''", "--threshold"),
    (f"hunt {U} --threshold 'rps>nan'", "--threshold"),
    (f"hunt {U} --slo p99<1s --mode fast", "--mode"),
    (f"hunt {U} --slo p99<1s --start 0", "--start"),
    (f"hunt {U} --slo p99<1s --start nan", "--start"),
    (f"hunt {U} --slo p99<1s --max inf", "--max"),
    (f"hunt {U} --slo p99<1s --max -5", "--max"),
    (f"hunt {U} --slo p99<1s --growth 1", "--growth"),
    (f"hunt {U} --slo p99<1s --growth nan", "--growth"),
    (f"hunt {U} --slo p99<1s --resolution 0", "--resolution"),
    (f"hunt {U} --slo p99<1s --resolution nan", "--resolution"),
    (f"hunt {U} --slo p99<1s --step-duration x", "--step-duration"),
    (f"hunt {U} --slo p99<1s --warmup x", "--warmup"),
    (f"hunt {U} --slo p99<1s --mode rate -c 0", "--connections"),
    (f"hunt {U} --slo p99<1s -o {{d}}/dir", "--out"),
    ("hunt --slo p99<1s", "url"),
    (f"hunt {U} --slo p99<1s --scenario {{d}}/s-list.yaml", "scenario"),
    (f"hunt {U} --slo p99<1s -H bad", "malformed"),
    # ---- soak ----
    (f'soak {U} --target-cmd "echo \'x"', "--target-cmd"),
    (f"soak {U} --target-cmd ''", "--target-cmd"),
    (f"soak {U} --target-pid 1 --target-cmd true", "not both"),
    (f"soak {U} --leak-threshold nan", "--leak-threshold"),
    (f"soak {U} --leak-threshold -1", "--leak-threshold"),
    (f"soak {U} --checkpoint x", "--checkpoint"),
    (f"soak {U} --checkpoint 0s", "--checkpoint"),
    (f"soak {U} -d x", "--duration"),
    (f"soak {U} -c 0", "--connections"),
    (f"soak {U} --hdr-log {{d}}/dir", "--hdr-log"),
    (f"soak {U} --hdr-log {{d}}/fifo", "not a regular file"),
    (f"soak {U} -o ''", "--out"),
    ("soak", "url"),
    # ---- serve, mock, demo, plan ----
    ("serve --port -1", "--port"),
    ("serve --port 65536", "--port"),
    ("serve --delay x", "--delay"),
    ("serve --delay -1s", "--delay"),
    ("serve --host ' '", "--host"),
    ("mock --port 70000", "port"),
    ("mock --port -1", "port"),
    ("mock --host ''", "--host"),
    ("mock --ttft x", "--ttft"),
    ("mock --itl x", "--itl"),
    ("mock --tokens x", "--tokens"),
    ("mock --tokens 0", "--tokens"),
    ("mock --tokens 10:nan", "--tokens"),
    ("mock --jitter 2", "--jitter"),
    ("mock --jitter nan", "--jitter"),
    ("mock --fail-429 1.5", "--fail-429"),
    ("mock --fail-500 -0.1", "--fail-500"),
    ("mock --hang nan", "--hang"),
    ("mock --drop-mid-stream 2", "--drop-mid-stream"),
    ("mock --bad-chunk inf", "--bad-chunk"),
    ("mock --empty -1", "--empty"),
    ("demo -d x", "--duration"),
    ("demo -c 0", "--concurrency"),
    ("demo -o {d}/dir", "--out"),
    ("demo --html {d}/dir", "--html"),
    ("demo --csv /nonexistent/x.csv", "--csv"),
    ("plan", "--rpm"),
    ("plan --rpm 0", "--rpm"),
    ("plan --rpm nan", "--rpm"),
    ("plan --rpm inf", "--rpm"),
    ("plan --tpm -5", "--tpm"),
    ("plan --rpm 60 --calls-per-action 0", "--calls-per-action"),
    ("plan --rpm 60 --calls-per-action nan", "--calls-per-action"),
    ("plan --tpm 600 --tokens-per-call 0", "--tokens-per-call"),
    ("plan --rpm 60 --action-duration x", "--action-duration"),
    ("plan --rpm 60 --think x", "--think"),
    ("plan --rpm 60 --headroom 0", "--headroom"),
    ("plan --rpm 60 --headroom 2", "--headroom"),
    ("plan --rpm 60 --headroom nan", "--headroom"),
    ("plan --rpm 60 --input-tokens nan", "--input-tokens"),
    ("plan --tpm 60 --tokens-per-call 5 --input-tokens 5", "either"),
    # ---- report, merge, compare: files that are not whole results ----
    ("report /nonexistent.json --html {d}/o.html", "cannot be read"),
    ("report {d}/dir --html {d}/o.html", "cannot be read"),
    ("report {d}/empty.txt --html {d}/o.html", "cannot be read"),
    ("report {d}/binary.txt --html {d}/o.html", "cannot be read"),
    ("report {d}/notjson.json --html {d}/o.html", "cannot be read"),
    ("report {d}/array.json --html {d}/o.html", "not a squall result"),
    ("report {d}/nulls.json --html {d}/o.html", "not a squall result"),
    ("report {d}/other-schema.json --html {d}/o.html", "not a squall result"),
    ("report {d}/old-schema.json --html {d}/o.html", "schema"),
    ("report {d}/r-cut.json --html {d}/o.html", "cannot be read"),
    ("report {d}/r-deep.json --html {d}/o.html", "r-deep.json"),
    ("report {d}/r-no-schema.json --html {d}/o.html", "not a squall result"),
    ("report {d}/r-histograms-list.json --html {d}/o.html", "histograms"),
    ("report {d}/r-meta-list.json --html {d}/o.html", "meta"),
    ("report {d}/r-summary-str.json --html {d}/o.html", "summary"),
    ("report {d}/r-timeseries-dict.json --html {d}/o.html", "timeseries"),
    ("report {d}/r-hist-str.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-b64.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-empty.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-num.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-null.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-list.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-dict.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-trunc.json --html {d}/o.html", "histogram"),
    ("report {d}/r-hist-str.json --csv {d}/o.csv", "histogram"),
    ("report {d}/r-timeseries-junk.json --csv {d}/o.csv", "r-timeseries-junk.json"),
    ("report {d}/good.json", "--html"),
    ("report {d}/good.json --html {d}/dir", "--html"),
    ("report {d}/good.json --html {d}/good.json", "same file"),
    ("report {d}/good.json --csv {d}/fifo", "not a regular file"),
    ("merge {d}/good.json {d}/r-cut.json -o {d}/fifo", "not a regular file"),
    ("merge {d}/good.json {d}/good.json -o {d}/m.json", "given twice"),
    ("merge {d}/good.json -o {d}/m.json", "merge needs at least two results"),
    ("merge {d}/good.json {d}/r-hist-str.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-hist-b64.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-hist-empty.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-hist-num.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-hist-list.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-hist-trunc.json -o {d}/m.json", "histogram"),
    ("merge {d}/good.json {d}/r-counters-str.json -o {d}/m.json", "counter 'requests'"),
    ("merge {d}/good.json {d}/r-timeseries-junk.json -o {d}/m.json", "timeseries[0]"),
    ("merge {d}/good.json {d}/r-meta-junk.json -o {d}/m.json", "merged"),
    ("merge {d}/good.json {d}/notjson.json -o {d}/m.json", "cannot be read"),
    ("merge {d}/good.json {d}/r-cut.json -o {d}/m.json", "cannot be read"),
    ("merge {d}/good.json /nonexistent.json -o {d}/m.json", "cannot be read"),
    ("merge {d}/good.json {d}/r-deep.json -o {d}/m.json", "r-deep.json"),
    ("merge {d}/good.json {d}/r-cut.json -o {d}/dir", "--out"),
    ("compare {d}/good.json {d}/r-hist-str.json", "histogram"),
    ("compare {d}/r-hist-b64.json {d}/good.json", "histogram"),
    ("compare {d}/good.json {d}/r-hist-empty.json", "histogram"),
    ("compare {d}/good.json {d}/r-hist-num.json", "histogram"),
    ("compare {d}/good.json {d}/r-hist-trunc.json", "histogram"),
    ("compare {d}/good.json {d}/r-summary-junk.json", "compared"),
    ("compare {d}/good.json {d}/notjson.json", "cannot be read"),
    ("compare {d}/good.json {d}/good.json --max-regression x", "--max-regression"),
    ("compare {d}/good.json {d}/good.json --max-regression nan", "--max-regression"),
    ("compare {d}/good.json {d}/good.json --max-regression inf", "--max-regression"),
    ("compare {d}/good.json {d}/good.json --noise -5%", "--noise"),
    ("compare {d}/good.json {d}/good.json --noise nan%", "--noise"),
]

DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(("line", "needle"), CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input(files: Path, line: str, needle: str) -> None:
    import shlex

    args = [a.replace("{d}", str(files)).replace("{deep}", DEEP) for a in shlex.split(line)]
    _one_line_exit_2(args, needle)


def test_corpus_covers_every_command() -> None:
    commands = {line.split()[0] for line, _ in CASES}
    want = {"run", "llm", "scenario", "py", "hunt", "soak", "mock", "serve", "demo", "plan", "report"}
    assert want | {"merge", "compare"} <= commands
    assert len(CASES) >= 150


def test_ctrl_c_during_start_up_is_one_line_and_exit_130() -> None:
    # The interrupt lands while the command modules are imported: the first thing main() does.
    code = (
        "import builtins, signal, os, squall.cli\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'squall.cli.commands':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "squall.cli.main(['run', 'http://127.0.0.1:9/'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 130
    assert out.stderr.strip() == "squall: interrupted"


def test_usage_error_through_the_module_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "squall", "run", U, "-c", "many"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("squall: error: ") and "--connections" in out.stderr
