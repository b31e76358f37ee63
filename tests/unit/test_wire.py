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
        {
            "step": {
                "a": Window(1, 4, 10, 20, {"requests": 1}, {200: 1}, {"expect_body": 1}, {"latency": b"P"}, 0)
            }
        },
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


def test_parts_loop_lag_and_custom_counts_are_typed_fields() -> None:
    step = Window(0, 1, 0, 1, {"requests": 1}, {200: 1}, {}, {}, 0)
    phase = Window(0, 1, 0, 1, {"requests": 2}, {}, {}, {}, 0)
    msg = Window(
        0, 1, 0, 1, {"requests": 3}, {200: 3}, {}, {}, 0, 2,
        {"step": {"a": step}, "phase": {"p": phase}}, {}, 1234, {"carts": 5},
    )  # fmt: skip
    got = decode(encode(msg))
    assert got == msg
    assert isinstance(got, Window)
    assert got.parts["step"]["a"] == step and got.parts["phase"]["p"] == phase
    assert got.loop_lag_p99_us == 1234 and got.custom == {"carts": 5}
    assert "loop_lag_p99_us" not in got.counters


def test_an_unknown_part_kind_is_an_error() -> None:
    part = [0, 1, 0, 1, {}, {}, {}, {}, 0]
    with pytest.raises(WireError, match="unknown part kind 'step:a'"):
        decode(msgpack.packb([2, 0, 1, 0, 1, {}, {}, {}, {}, 0, 0, {"step:a": {"x": part}}]))


def test_failed_says_whether_the_input_was_refused() -> None:
    assert decode(encode(Failed(1, "no such module", usage=True))) == Failed(1, "no such module", True)
    assert decode(encode(Failed(1, "Traceback ..."))).usage is False  # type: ignore[union-attr]
