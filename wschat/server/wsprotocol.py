"""Our uvicorn WebSocket protocol class: uvicorn's sans-I/O implementation plus two seams.

uvicorn takes a protocol class as ``Config(ws=...)``. This subclass of its websockets-sansio
implementation:

- publishes the transport's ``abort`` in the ASGI scope under the extension ``wschat.abort``,
  so the app can drop a peer that stopped reading: ASGI alone can only send a close frame,
  which never leaves a full socket buffer. Apps run under another server simply find no such
  extension and fall back to a close with a deadline;
- closes a text message that is not UTF-8 with 1007 and logs one line, where uvicorn logs a
  traceback per message (issue 7); every other frame-level failure (1002 malformed frame,
  1009 too big) is logged once, without a traceback, too;
- marks a handshake refused with an HTTP response (``websocket.http.response``) as complete,
  so uvicorn does not log it as an app error.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from wschat.protocol import CloseCode

ABORT_EXTENSION = "wschat.abort"


class WschatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that lets the app abort its transport."""

    async def run_asgi(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        if extensions is not None:
            extensions[ABORT_EXTENSION] = {"abort": self.transport.abort}
        await super().run_asgi()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A handshake refused with an HTTP response (wschat.server.guard) is complete:
            # without this uvicorn logs "ASGI callable returned without completing handshake".
            self.handshake_complete = True

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                # RFC 6455 §8.1: a text message that is not UTF-8 fails the connection (1007).
                self.frames = []
                self.conn.send_close(CloseCode.INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()
                self.logger.info(
                    "%s - WebSocket closed 1007: invalid UTF-8 at byte %d", self._peer(), exc.start
                )
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        logged = getattr(self, "_failure_logged", False)
        super().handle_parser_exception()
        if exc is not None and not logged:
            self._failure_logged = True
            sent = self.conn.close_sent
            code = sent.code if sent is not None else CloseCode.PROTOCOL_ERROR
            self.logger.info("%s - WebSocket closed %d: %s", self._peer(), code, exc)
