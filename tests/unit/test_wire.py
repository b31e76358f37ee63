import msgpack
import pytest

from squall.wire import (
    PROTOCOL_VERSION,
    Done,
    Failed,
    Final,
    Hello,
    Start,
    Stop,
    Window,
    WireError,
    decode,
    encode,
)

MESSAGES = [
    Hello(1, 4242),
    Window(
        0, 3, 10, 20, {"requests": 5, "ok": 4}, {200: 4, 503: 1}, {"http_5xx": 1}, {"latency": b"HIST"}, 7
    ),
    Window(
        1,
        4,
        10,
        20,
        {"requests": 2},
        {200: 2},
        {},
        {"latency": b"H"},
        0,
        3,
        {"step": {"a": Window(1, 4, 10, 20, {"requests": 1}, {200: 1}, {"expect_body": 1}, {"latency": b"P"}, 0)}},
    ),
    Done(2, 9, "duration"),
    Failed(0, "Traceback ..."),
    Start(123456789, [10, 11]),
    Stop("interrupted", 2.0),
    Final({"schema": "squall/result@1", "summary": {"requests": 1}}),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


def test_unknown_tag_is_an_error() -> None:
    with pytest.raises(WireError, match="unknown message tag 99"):
        decode(msgpack.packb([99, 1, 2]))


def test_version_mismatch_is_an_error() -> None:
    with pytest.raises(WireError, match="protocol version"):
        decode(msgpack.packb([1, 0, 100, PROTOCOL_VERSION + 1]))


def test_malformed_and_garbage() -> None:
    with pytest.raises(WireError, match="malformed Done"):
        decode(msgpack.packb([3, 1]))
    with pytest.raises(WireError):
        decode(b"\xc1")
    with pytest.raises(WireError, match="tagged array"):
        decode(msgpack.packb({"a": 1}))
