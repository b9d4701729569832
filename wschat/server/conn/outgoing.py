"""One frame to send, built once and serialised at most once for every receiver.

Imports the standard library, ``websockets.frames`` (to serialise) and ``wschat.protocol``;
nothing of the chat layer.
"""

from __future__ import annotations

from typing import Any

from websockets.frames import Frame, Opcode

from wschat.protocol import dumps
from wschat.server.transport.extension import AsgiEvent


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
                frame = Frame(Opcode.TEXT, self.text.encode())
            else:
                frame = Frame(Opcode.BINARY, self.data or b"")
            self._wire = frame.serialize(mask=False)
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
