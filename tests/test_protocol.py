"""The pure wire format: validation and encoding, no event loop."""

from __future__ import annotations

import pytest

from wschat.errors import ProtocolError
from wschat.protocol import (
    Dm,
    Join,
    Rooms,
    Say,
    Who,
    check_name,
    decode_command,
    encode_command,
    plain_line,
    rooms_event,
)


def test_plain_line_matches_the_article() -> None:
    assert plain_line("client1", "Hello") == "Client client1: Hello"


@pytest.mark.parametrize("name", ["alice", "Zoë", "名前", "a" * 32, "bob_2", "o'neil"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


def test_names_are_nfkc_normalised() -> None:
    assert check_name("\uff42\uff4f\uff42") == "bob"  # fullwidth letters
    assert check_name("Zoe\u0308") == "Zoë"  # combining diaeresis composes


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "bad_field"),
        ("a" * 33, "too_long"),
        ("al ice", "bad_field"),
        ("al\u200bice", "bad_field"),  # zero-width space
        ("al\u202eice", "bad_field"),  # right-to-left override
        ("al\x1bice", "bad_field"),  # escape
        (42, "bad_field"),
    ],
)
def test_invalid_names(name: object, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code == code


@pytest.mark.parametrize(
    "command",
    [
        Say("hi"),
        Say("waves", action=True),
        Say("hi", cid="c-1"),
        Dm("bob", "psst"),
        Join("ops"),
        Join("ops", since=41),
        Join("ops", since=41, epoch="e1a2"),
        Who(),
        Rooms(),
    ],
)
def test_commands_round_trip(command: object) -> None:
    assert decode_command(encode_command(command)) == command  # type: ignore[arg-type]


def test_rooms_event_lists_the_busiest_by_room_and_counts_the_rest() -> None:
    counts = {"b": 3, "a": 1, "c": 3, "empty": 0, "d": 2}
    assert rooms_event(counts, 2, unseen=4) == {
        "type": "rooms",
        "rooms": [{"room": "b", "members": 3}, {"room": "c", "members": 3}],
        "more": 2 + 4,
    }


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"text": "no type"}', "bad_type"),
        ('{"type": "shout", "text": "x"}', "bad_type"),
        ('{"type": "say"}', "bad_field"),
        ('{"type": "say", "text": 5}', "bad_field"),
        ('{"type": "say", "text": ""}', "bad_field"),
        ('{"type": "say", "text": "hi", "action": "yes"}', "bad_field"),
        ('{"type": "say", "text": "hi", "cid": 7}', "bad_field"),
        ('{"type": "say", "text": "hi", "cid": ""}', "bad_field"),
        ('{"type": "say", "text": "hi", "cid": "has space"}', "bad_field"),
        ('{"type": "say", "text": "hi", "cid": "' + "x" * 65 + '"}', "bad_field"),
        ('{"type": "dm", "text": "hi"}', "bad_field"),
        ('{"type": "join", "room": "a b"}', "bad_room"),
        ('{"type": "join", "room": "ops", "since": "3"}', "bad_field"),
        ('{"type": "join", "room": "ops", "since": true}', "bad_field"),
        ('{"type": "join", "room": "ops", "since": 3, "epoch": 7}', "bad_field"),
    ],
)
def test_bad_frames_get_an_error_code(frame: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_command(frame)
    assert info.value.code == code


def test_text_too_long() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_command('{"type": "say", "text": "' + "x" * 5000 + '"}')
    assert info.value.code == "too_long"
