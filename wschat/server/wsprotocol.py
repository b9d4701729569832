"""Our uvicorn WebSocket protocol class: uvicorn's sans-I/O implementation plus one seam.

uvicorn takes a protocol class as ``Config(ws=...)``. This subclass of its websockets-sansio
implementation publishes itself in the ASGI scope under the extension ``wschat.transport``
(``{"protocol": self}``), which lets the app

- write a server frame that was serialised once for every receiver of a broadcast straight
  to the transport (``write_frame``), when the socket can take it (``can_write``), instead of
  one ASGI ``send`` — and one encoding — per receiver;
- hear when a full socket buffer drains again (``on_writable``), so a connection needs no
  writer task of its own;
- drop a peer that stopped reading (``abort``): ASGI alone can only send a close frame, which
  never leaves a full socket buffer.

Apps run under another server find no such extension and use plain ASGI sends.
Data frames written here are complete, unfragmented and unmasked (RFC 6455 §5.1 to 5.2), so they
interleave safely with the control frames uvicorn writes itself; the closing handshake stays
with uvicorn (an ASGI ``websocket.close``).
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

TRANSPORT_EXTENSION = "wschat.transport"


class WschatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with a direct write path for prepared frames."""

    on_writable: Callable[[], None] | None = None

    async def run_asgi(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        if extensions is not None:
            extensions[TRANSPORT_EXTENSION] = {"protocol": self}
        await super().run_asgi()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response (with their headers) are never read
            # again; the ASGI scope keeps what the app needs. About 3 KB per idle socket.
            self.request = self.response = None  # type: ignore[assignment]

    def can_write(self) -> bool:
        """Return whether a data frame may be written now without overfilling the buffer."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
        )

    def write_frame(self, frame: bytes) -> None:
        """Write one serialised server frame; call only when ``can_write()`` is true."""
        self.transport.write(frame)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        self.transport.abort()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_writable = None
        super().connection_lost(exc)
