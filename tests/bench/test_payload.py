"""The stamp carried in each load-test message, and how it is found in server frames."""

from __future__ import annotations

import json

import pytest

from wschat.bench.payload import Dialect, Stamp, client_frame, event_type, find_stamp, message_text
from wschat.protocol import echo_text, plain_line


@pytest.mark.parametrize("size", [0, 10, 64, 1000])
def test_stamp_round_trips_and_pads(size: int) -> None:
    stamp = Stamp("a1b2c3", 17, 42, 123_456_789_012)
    text = stamp.encode(size)
    assert len(text) == max(size, len(stamp.encode()))
    assert find_stamp(text) == stamp


@pytest.mark.parametrize(
    "wrap", [echo_text, lambda t: plain_line("b1-3", t), lambda t: f"noise {t} noise"]
)
def test_stamp_is_found_inside_relayed_text(wrap: object) -> None:
    stamp = Stamp("r", 3, 0, 5)
    assert find_stamp(wrap(stamp.encode(80))) == stamp  # type: ignore[operator]


@pytest.mark.parametrize("text", ["", "hello", "wb|", "wb|r|1|2", "wb|r|x|2|3|", "Client a: hi"])
def test_text_without_a_stamp(text: str) -> None:
    assert find_stamp(text) is None


def test_v1_frames() -> None:
    text = Stamp("r", 1, 2, 3).encode()
    assert json.loads(client_frame(Dialect.V1, text)) == {"type": "say", "text": text}
    assert client_frame(Dialect.PLAIN, text) == text
    event = {"type": "message", "room": "x", "id": 1, "from": "b", "text": text, "ts": 1.0}
    assert message_text(Dialect.V1, json.dumps(event)) == text
    assert message_text(Dialect.V1, '{"type":"joined","room":"x","name":"b"}') is None
    assert message_text(Dialect.PLAIN, b"You said: hi") == "You said: hi"
    assert event_type('{"type":"welcome"}') == "welcome"
    assert event_type("Client a: hi") is None
