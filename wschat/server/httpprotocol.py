"""Our uvicorn HTTP protocol class: uvicorn's httptools implementation plus a request deadline.

uvicorn takes a protocol class as ``Config(http=...)``, like ``wsprotocol`` for WebSockets.
Bare uvicorn keeps a connection that never completes its request head open forever (its
keep-alive timeout only runs *between* requests), and ``--limit-concurrency`` does not count
WebSocket upgrades; an idle or half-sent handshake would hold a socket and memory
indefinitely (a slowloris). This subclass gives every request head — the first one on a
connection and each later one — ``handshake_timeout_s`` seconds to arrive complete, then
closes the TCP connection (issue 7).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class WschatHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that closes connections whose request head is too slow."""

    handshake_timeout_s: float = 10.0  # set by ``with_deadline``

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_deadline(cls, handshake_timeout_s: float) -> type[WschatHttpProtocol]:
        """Return a subclass whose request heads must arrive within ``handshake_timeout_s``."""
        return type(cls.__name__, (cls,), {"handshake_timeout_s": handshake_timeout_s})

    def _arm(self) -> None:
        self._disarm()
        if self.handshake_timeout_s > 0:
            self._head_timer = self.loop.call_later(self.handshake_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            self.logger.info(
                "%s - closing: no complete request within %gs", client, self.handshake_timeout_s
            )
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the transport over; its own deadlines apply from here.
        self._disarm()
        super().handle_websocket_upgrade()
