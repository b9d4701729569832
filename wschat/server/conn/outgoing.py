"""One frame to send, built once and serialised at most once for every receiver.

A server frame is written here, not by websockets' ``Frame.serialize``: unmasked, unfragmented,
no extension, it is two to ten bytes of header (RFC 6455 §5.2) before the payload, and
serialising it ourselves costs a third of ``Frame.serialize``'s checks and buffers (0.4 against
1.1 µs, once per echo reply; ``tests/server/conn/test_outgoing.py`` checks that both agree).

Imports the standard library and ``wschat.protocol``; nothing of the chat layer.
"""

from __future__ import annotations

import struct
from typing import Any

from wschat.protocol import dumps
from wschat.server.transport.extension import AsgiEvent

TEXT, BINARY = 0x1, 0x2  # RFC 6455 §5.2 opcodes
FIN = 0x80
_HEAD16 = struct.Struct("!BBH").pack  # payload length 126-65535: 126, then 16 bits
_HEAD64 = struct.Struct("!BBQ").pack  # longer: 127, then 64 bits


def server_frame(opcode: int, payload: bytes) -> bytes:
    """Return one final, unmasked frame of ``opcode`` carrying ``payload``, as sent on the wire."""
    size = len(payload)
    if size < 126:
        return bytes((FIN | opcode, size)) + payload
    if size < 65536:
        return _HEAD16(FIN | opcode, 126, size) + payload
    return _HEAD64(FIN | opcode, 127, size) + payload


class Outgoing:
    """One frame to send, shared by every receiver: built once, serialised at most once."""

    __slots__ = ("_wire", "data", "text")

    def __init__(self, text: str | None = None, data: bytes | None = None) -> None:
        self.text = text
        self.data = data
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """Return the frame as bytes on the wire (server frames are unmasked: one for all)."""
        if self._wire is None:
            if self.text is not None:
                self._wire = server_frame(TEXT, self.text.encode())
            else:
                self._wire = server_frame(BINARY, self.data or b"")
        return self._wire

    def serialized(self) -> Outgoing:
        """Serialise the frame now and return it, so that writing it later costs no encoding.

        For long batches built a slice at a time (a replay): otherwise every frame of the
        batch would be serialised in the one pass that writes it (issue 15).
        """
        if self._wire is None:
            self._wire = self.wire
        return self

    def asgi(self) -> AsgiEvent:
        """Return the ASGI ``websocket.send`` message for this frame."""
        if self.text is not None:
            return {"type": "websocket.send", "text": self.text}
        return {"type": "websocket.send", "bytes": self.data or b""}


def text_frame(obj: dict[str, Any]) -> Outgoing:
    """Return the frame carrying ``obj`` as one JSON text frame."""
    return Outgoing(dumps(obj))
