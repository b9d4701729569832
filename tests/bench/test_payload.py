"""The stamp carried in each load-test message, and how it is found in server frames."""

from __future__ import annotations

import json

import pytest

from wschat.bench.payload import (
    Dialect,
    Stamp,
    client_frame,
    event_type,
    find_stamp,
    message_text,
    v1_event,
    v1_message_stamp,
)
from wschat.protocol import dumps, echo_text, message_event, plain_line


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


def _message(text: str, **dumps: object) -> str:
    event = {"type": "message", "room": "r", "id": 7, "from": "b1-2", "text": text, "ts": 1.5}
    return json.dumps(event, **dumps)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 64, 500])
def test_v1_stamp_is_read_from_the_raw_json(size: int) -> None:
    stamp = Stamp("a1b2c3", 12, 345, 6_789_012_345)
    frame = dumps(message_event("r", 7, "b1-2", stamp.encode(size), 1.5))
    assert v1_message_stamp(frame) == stamp
    assert v1_event(frame) == ("message", stamp.encode(size))


@pytest.mark.parametrize(
    "frame",
    [
        # an encoder that escapes the stamp's characters: only the JSON parser can read it
        _message("wb|r1|1|2|3|").replace("|", "\\u007c"),
        _message("wb|r1|1|2|3|").replace("r1", "\\u0072\\u0031"),
        _message("wb|r1|1|2|3|").replace("|2|", "|\\u0032|"),
        # other layouts than wschat's compact one
        _message("wb|r1|1|2|3|", separators=(", ", ": ")),
        json.dumps({"text": "wb|r1|1|2|3|", "type": "message"}),
    ],
)
def test_escaped_or_unusual_v1_frames_are_left_to_the_parser(frame: str) -> None:
    assert v1_message_stamp(frame) is None  # cannot tell without parsing ...
    kind, text = v1_event(frame)
    assert kind == "message" and text is not None
    assert find_stamp(text) == Stamp("r1", 1, 2, 3)  # ... and the parser finds it


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"dm","from":"a","to":"b","text":"wb|r1|1|2|3|","ts":1}',  # not a message
        '{"type":"message","room":"r","from":"wb|r1|1|2|3|","text":"hi","ts":1}',  # not text
        '{"type":"message","room":"r","text":"say \\"text\\":\\"wb|r1|1|2|3|\\""}',  # quoted
        '{"type":"message","room":"r","text":"wb|r1|1|2","ts":1}',  # cut short
        '{"type":"message","room":"r","text":"wb|r1","from":"a|1|2|3","ts":1}',  # runs over
        '{"type":"welcome","name":"b1-0","room":"r","members":[]}',
        "Client b1-0: wb|r1|1|2|3|",
    ],
)
def test_frames_without_a_readable_v1_stamp(frame: str) -> None:
    assert v1_message_stamp(frame) is None


def test_v1_event_types() -> None:
    assert v1_event('{"type":"error","code":"rate_limited","detail":"x"}') == ("error", None)
    assert v1_event('{"type":"joined","room":"x","name":"b"}') == ("joined", None)
    assert v1_event('{"type":"message","text":5}') == ("message", None)
    assert v1_event("[1, 2]") == (None, None)
    assert v1_event("Client a: wb|r|1|2|3|") == (None, "Client a: wb|r|1|2|3|")
