"""``Outgoing`` writes the same bytes as websockets' ``Frame.serialize`` for every length class."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from wschat.server.conn.outgoing import Outgoing


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_websockets(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # ``size`` bytes of UTF-8
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
    assert Outgoing(text).wire == expected


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_binary_frame_matches_websockets(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = Frame(Opcode.BINARY, data).serialize(mask=False)
    assert Outgoing(data=data).wire == expected


def test_wire_is_built_once() -> None:
    frame = Outgoing("hello")
    assert frame.wire is frame.wire
