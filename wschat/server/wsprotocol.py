"""Our uvicorn WebSocket protocol class: uvicorn's sans-I/O implementation plus one seam.

uvicorn takes a protocol class as ``Config(ws=...)``. This subclass of its websockets-sansio
implementation publishes the transport's ``abort`` in the ASGI scope under the extension
``wschat.abort``, so the app can drop a peer that stopped reading: ASGI alone can only send a
close frame, which never leaves a full socket buffer. Apps run under another server simply
find no such extension and fall back to a close with a deadline.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

ABORT_EXTENSION = "wschat.abort"


class WschatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that lets the app abort its transport."""

    async def run_asgi(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        if extensions is not None:
            extensions[ABORT_EXTENSION] = {"abort": self.transport.abort}
        await super().run_asgi()
