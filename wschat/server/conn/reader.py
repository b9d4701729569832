"""Read a chat socket without a task of its own: the protocol calls back for each message.

Under wschat's own uvicorn protocol (``wsprotocol``), a chat socket's ASGI task ends once the
connection is set up, and a ``Reader`` takes over: the protocol hands it each message from
``data_received`` and the disconnect from wherever uvicorn reports it. A task exists only
while a message is being handled, so an idle socket holds no task and no coroutine frames
(about 2.5 KB; docs/performance.md).

Messages are handled one at a time and in order, as the ASGI loop did: while one is being
handled, reading pauses, and what already arrived waits in a short backlog. A disconnect
that arrives meanwhile is acted on once the message in hand is done. When the connection
ends, the reader stops the outbox, takes the connection out of the hub, logs the close, calls
the endpoint's ``on_end`` and gives the connection's place in the caps back (``Lease``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from wschat.protocol import CloseCode

if TYPE_CHECKING:
    from wschat.server.conn.connection import Connection
    from wschat.server.conn.hub import Hub
    from wschat.server.guard import Lease
    from wschat.server.handlers import Frame, OnFrame
    from wschat.server.transport.extension import Transport

log = logging.getLogger("wschat.server")

OnEnd = Callable[["Connection", "int | None"], None]


class Reader:
    """Handle one detached connection's messages and its end; see the module docstring."""

    __slots__ = (
        "_backlog",
        "_code",
        "_conn",
        "_ended",
        "_gone",
        "_hub",
        "_lease",
        "_on_end",
        "_on_frame",
        "_proto",
        "_task",
    )

    def __init__(
        self,
        conn: Connection,
        proto: Transport,
        hub: Hub,
        on_frame: OnFrame,
        on_end: OnEnd,
        lease: Lease | None,
    ) -> None:
        self._conn = conn
        self._proto = proto
        self._hub = hub
        self._on_frame = on_frame
        self._on_end = on_end
        self._lease = lease
        self._backlog: list[Frame] | None = None  # arrived while a message is being handled
        self._task: asyncio.Task[None] | None = None
        self._gone = False  # the peer disconnected (or we closed): no more messages
        self._ended = False
        self._code: int | None = None

    @property
    def busy(self) -> bool:
        """Return whether a message is being handled now."""
        return self._task is not None

    def on_message(self, message: Frame) -> None:
        """Take one ``websocket.receive`` event (called by the protocol)."""
        if self._gone:
            return
        if self._task is not None:
            if self._backlog is None:
                self._backlog = []
            self._backlog.append(message)
            self._proto.hold_reading(True)
            return
        self._task = asyncio.get_running_loop().create_task(self._handle(message))

    def on_disconnect(self, code: int) -> None:
        """Take the ``websocket.disconnect`` event (called by the protocol; the first counts)."""
        if self._gone:
            return
        self._gone = True
        self._code = code
        if self._task is None:
            self._end()

    async def _handle(self, message: Frame) -> None:
        conn = self._conn
        try:
            while True:
                if conn.close_code is None:  # closing: ignore what the peer still sends
                    try:
                        await self._on_frame(conn, message)
                    except Exception:
                        log.exception("error handling a frame from %s", conn.name)
                        conn.close(CloseCode.INTERNAL_ERROR, "internal error")
                if not self._backlog:  # what came before a disconnect is still handled
                    break
                message = self._backlog.pop(0)
        finally:
            self._task = None
            self._backlog = None
            if self._gone:
                self._end()
            else:
                self._proto.hold_reading(False)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        conn = self._conn
        code = self._code
        conn.stop_now()
        self._hub.remove(conn, code)
        log_close(conn, code)
        try:
            self._on_end(conn, code)
        finally:
            if self._lease is not None:
                self._lease.release()


def log_close(conn: Connection, code: int | None) -> None:
    """Log the one line per closed connection (never message text, never the query)."""
    peer = conn.peer
    log.info(
        "close %s room=%s peer=%s code=%s",
        conn.name,
        conn.room,
        peer,
        code,
        extra={
            "event": "close",
            "user": conn.name,
            "room": conn.room or "",
            "peer": peer,
            "code": code if code is not None else 1006,
        },
    )
