"""squall/redact.py: secrets judged by name and by look; ordinary text, numbers and counts left alone."""

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from squall.redact import (
    MARK,
    is_secret_name,
    redact_argv,
    redact_body,
    redact_doc,
    redact_header,
    redact_json,
    redact_text,
    redact_url,
)
from squall.report.json import read_json, write_json

SECRET_NAMES = [
    "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Goog-Api-Key",
    "Ocp-Apim-Subscription-Key", "api_key", "apikey", "apiKey", "PRIVATE-TOKEN", "X-Amz-Security-Token",
    "X-Auth-Token", "x-api-key", "access_token", "client_secret", "password", "X-Signature", "sig",
    "session_id", "PHPSESSID", "X-Session", "X-Amz-Credential", "passwd", "key", "token", "secret",
]  # fmt: skip
PLAIN_NAMES = [
    "max_tokens",
    "api_keys",
    "tokens",
    "keyword",
    "Content-Type",
    "X-Trace",
    "model",
    "n",
    "monkeys",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "header 'Authorization; Bearer sk-abcdefgh123' is malformed",
            "header 'Authorization; ***' is malformed",
        ),
        ("header 'Authorization=Bearer abc' is malformed", "header 'Authorization=***' is malformed"),
        ("header 'X-Goog-Api-Key k1' is malformed", "header 'X-Goog-Api-Key ***' is malformed"),
        ("URL 'http://h:1/?key=k1&n=2' is not valid", "URL 'http://h:1/?key=***&n=2' is not valid"),
        ("http://u:p4ss@h/x", "http://u:***@h/x"),
        ("http://tok3n@h/x", "http://***@h/x"),
        ('{"api_key": "k1", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("failed with Bearer abc.DEF-123", "failed with Bearer ***"),
        ("Cookie: a=b; c=d", "Cookie: ***"),
        (
            "keys sk-ant-api03-abcdefgh, AKIAIOSFODNN7EXAMPLE, hf_abcdefghijklmnopqrstuv",
            f"keys {MARK}, {MARK}, {MARK}",
        ),
        ("password=hunter2&user=bob", "password=***&user=bob"),
        ("send them with -H 'Authorization: ...'", "send them with -H 'Authorization: ...'"),
        ("Authorization: Bearer {{token}}", "Authorization: Bearer {{token}}"),
    ],
)
def test_redact_text(text: str, want: str) -> None:
    assert redact_text(text) == want


ORDINARY = [
    "  5 requests in 0.02s, 234.6 req/s, 100.00% ok, 0 errors, 5,695 bytes in",
    "  tokens: 15 out (703.7/s, from usage), 160 in; goodput 234.57 req/s",
    "  token count check: squall's estimate agrees with the server's usage (5 answers with usage)",
    "  status codes: 200: 5, 429: 3",
    "  threshold pass  errors<100%  (value 0.000)",
    "squall POST http://127.0.0.1:8080/v1/chat/completions?model=m&max_tokens=5  (raw, 1 worker, closed)",
    "2026-12-02T14:11:40+0000",
    "Basic Information about Bearer tokens and a disk-backed sk-learn run",
    "worker 0 was lost: exit code -9",
    "/tmp/out/r.json",
    "p99<300ms",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@given(st.text(max_size=200))
def test_redaction_is_idempotent_and_never_raises(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@given(
    name=st.sampled_from(SECRET_NAMES),
    key=st.text(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~+/", min_size=6, max_size=40
    ),
    shape=st.sampled_from(
        [
            "header {q}{n}: {k}{q} is malformed",
            "header {q}{n}; {k}{q} is malformed",
            "header {q}{n}={k}{q} is malformed",
            "{n}: {k}",
            "{n}={k}",
            '{{"{n}": "{k}"}}',
            "http://127.0.0.1:1/x?a=1&{n}={k}&b=2",
        ]
    ),
    q=st.sampled_from(["'", '"']),
)
def test_a_key_under_a_secret_name_never_shows(name: str, key: str, shape: str, q: str) -> None:
    text = shape.format(n=name, k=key, q=q)
    assert key not in redact_text(text).replace(name, "")


@pytest.mark.parametrize(
    "text",
    [
        "'key" + " " * 200_000,
        "Bearer " + "a" * 200_000 + "!",
        "key=1&" * 40_000,
        "a://" * 50_000,
        "'token " * 30_000,
    ],
)
def test_hostile_text_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < 3  # quadratic would take minutes


def test_urls() -> None:
    got = redact_url("http://u:p@h:1/x?key=1&a=2&Signature=3&max_tokens=4#f")
    assert got == "http://u:***@h:1/x?key=***&a=2&Signature=***&max_tokens=4#f"


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("Authorization: Bearer sk-1", "Authorization: ***"),
        ("Cookie: a=b; c=d", "Cookie: ***"),
        ("api_key;k", "api_key;***"),
        ("X-Trace: 1", "X-Trace: 1"),
        ("X-Trace: sk-abcdefgh1234", "X-Trace: ***"),
    ],
)
def test_headers(header: str, want: str) -> None:
    assert redact_header(header) == want


def test_json_at_any_depth_keeps_numbers_and_plain_fields() -> None:
    body = {
        "a": {"b": [{"api_key": "k"}]},
        "auth": {"user": "u", "pass": "p"},
        "max_tokens": 5,
        "token_id": 7,
    }
    want = {
        "a": {"b": [{"api_key": MARK}]},
        "auth": {"user": MARK, "pass": MARK},
        "max_tokens": 5,
        "token_id": 7,
    }
    assert redact_json(body) == want
    assert redact_body('{"model": "m"}') == '{"model": "m"}'  # unchanged: as typed
    assert json.loads(redact_body('{"password": "x"}')) == {"password": MARK}
    assert redact_body("user=bob&password=x") == "user=bob&password=***"


def test_argv() -> None:
    argv = [
        "llm", "http://h/?api_key=k", "--api-key", "k1", "--api-key=k2", "-H", "X-Goog-Api-Key: k3",
        "-kH", "Cookie: k4", "-HPRIVATE-TOKEN: k5", "--header=apikey: k6", "--body-json", '{"token": "k7"}',
        "-b", "password=k8", "--param", "secret=k9", "-n", "5", "--threshold", "p99<1s",
    ]  # fmt: skip
    got = redact_argv(argv)
    assert not {f"k{i}" for i in range(1, 10)} & {w for a in got for w in a.replace('"', " ").split()}
    assert got[-4:] == ["-n", "5", "--threshold", "p99<1s"]


@given(
    key=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=6, max_size=40),
    where=st.sampled_from(
        [
            ["--api-key", "{k}"],
            ["--api-key={k}"],
            ["-H", "{n}: {k}"],
            ["-kH", "{n}; {k}"],
            ["-H{n}={k}"],
            ["--header={n}: Bearer {k}"],
            ["-b", '{{"x": {{"{n}": "{k}"}}}}'],
            ["--body-json", '{{"{n}": ["{k}"]}}'],
            ["http://127.0.0.1:1/v1?a=1&{n}={k}"],
            ["--param", "{n}={k}"],
            ["--target-cmd", "srv --{n} {k}"],
        ]
    ),
    name=st.sampled_from(["api_key", "X-Goog-Api-Key", "PRIVATE-TOKEN", "Authorization", "password", "sig"]),
)
def test_a_key_typed_anywhere_on_the_command_line_never_shows(key: str, where: list[str], name: str) -> None:
    argv = ["llm", "http://127.0.0.1:1/", "-n", "5", *(a.format(n=name, k=key) for a in where)]
    assert key not in " ".join(redact_argv(argv)).replace(name, "")


def test_a_target_command_and_secret_options_in_it() -> None:
    argv = ["soak", "URL", "--target-cmd", "srv --token k1 --port 8 --password=k2 -H 'X-Api-Key: k3'"]
    argv += ["--target-cmd=env API_KEY=k4 srv", "--api-key-file", "keys.txt", "--max-tokens", "5"]
    got = redact_argv(argv)
    assert not [a for a in got if any(f"k{i}" in a for i in range(1, 5))]
    assert "--port 8" in got[3] and got[-4:] == ["--api-key-file", "keys.txt", "--max-tokens", "5"]


def test_documents_are_redacted_when_written_and_read(tmp_path: Path) -> None:
    """-o, checkpoints, hunt and matrix files all go through write_json; report/merge/compare through
    read_json."""
    doc = {
        "meta": {
            "url": "http://h/?token=k1",
            "command": "squall run -H 'apikey: k2'",
            "py": {"params": {"pwd": "k3"}},
        },
        "warnings": ["worker 0 failed: Authorization: Bearer k4abcdef"],
        "histograms": {"latency": "HISTFAAAAtoken=k5"},  # encoded: never touched
        "timeseries": [{"latency_hist": "HISTFAAAA+apiKey==", "rps": 1.0}],
        "parts": {"step:a": {"ttft_hist": "HISTFAAAB+xKey=="}},
        "summary": {"requests": 5, "token_source": "usage"},
    }
    write_json(dict(doc), str(tmp_path / "r.json"))
    text = (tmp_path / "r.json").read_text()
    assert not [k for k in ("k1", "k2", "k3", "k4abcdef") if k in text]
    assert '"token_source": "usage"' in text
    assert all(h in text for h in ("HISTFAAAAtoken=k5", "HISTFAAAA+apiKey==", "HISTFAAAB+xKey=="))
    (tmp_path / "old.json").write_text(json.dumps({"meta": {"url": "http://h/?sig=k6"}}))
    assert read_json(str(tmp_path / "old.json")) == {"meta": {"url": "http://h/?sig=***"}}
    assert redact_doc([1, "x"]) == [1, "x"]


@pytest.mark.parametrize(
    "text",
    [
        "monkey=banana",
        "hockey=1",
        "session_count=10",
        "token_discrepancy: 4",
        "auth_mode: none",
        "s.yaml:3: token: must be a string",
        "--param session_id: give name=value",
    ],
)
def test_ordinary_words_and_sentences_about_a_secret_name_stay(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("X-Session-Id: abc123", "X-Session-Id: ***"),
        ("X-Api-Key: secretvalue", "X-Api-Key: ***"),
        ("token: s3cr3t", "token: ***"),
        ("PHPSESSID=abc", "PHPSESSID=***"),
    ],
)
def test_secret_values_after_such_names_still_go(text: str, shown: str) -> None:
    assert redact_text(text) == shown
