"""One WebSocket connection on the server: its bounded outbox and the writer that drains it.

Fan-out never awaits a peer: ``offer()`` puts a ready-made ASGI message in the outbox and
returns at once, and each connection's own writer task sends them in order. A peer that does
not read fills its outbox; the next ``offer()`` fails, and the caller closes the connection
with ``CloseCode.SLOW_CONSUMER``. Nothing here is unbounded: the outbox holds at most
``outbox_size`` frames, and a close that the peer does not read within ``close_timeout_s``
aborts the TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket

from wschat.server.wsprotocol import ABORT_EXTENSION

Message = dict[str, Any]

log = logging.getLogger("wschat.server")


class Connection:
    """A live WebSocket, its name, room and outbox; owned by the endpoint that accepted it."""

    __slots__ = (
        "_abort",
        "_close_timeout_s",
        "_outbox",
        "_outbox_size",
        "_ready",
        "_writer",
        "close_code",
        "last_id",
        "name",
        "pending",
        "replaced",
        "room",
        "v1",
        "websocket",
    )

    def __init__(
        self,
        websocket: WebSocket,
        name: str,
        room: str | None,
        *,
        v1: bool,
        outbox_size: int,
        close_timeout_s: float,
    ) -> None:
        self.websocket = websocket
        self.name = name
        self.room = room
        self.v1 = v1
        self.close_code: int | None = None  # set once we decided to close
        self.last_id = 0  # v1: the newest room message id queued for this peer
        # v1: while the room's history is being read, live messages wait here (see chat.py)
        self.pending: list[Any] | None = None
        self.replaced = False  # the same user reconnected; this socket no longer owns the name
        self._outbox: deque[Message | list[Message]] = deque()
        self._outbox_size = outbox_size
        self._ready = asyncio.Event()
        self._close_timeout_s = close_timeout_s
        self._writer: asyncio.Task[None] | None = None
        ext = websocket.scope.get("extensions") or {}
        abort = (ext.get(ABORT_EXTENSION) or {}).get("abort")
        self._abort: Callable[[], None] | None = abort

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} room={self.room!r}>"

    @property
    def queued(self) -> int:
        """Return how many frames wait in the outbox."""
        return len(self._outbox)

    def start(self) -> None:
        """Start the writer task; call once, after the handshake, before the first offer()."""
        self._writer = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, message: Message) -> bool:
        """Queue ``message`` for sending and return True, or return False if the outbox is full.

        The message dict is shared by every receiver of a broadcast and must not be mutated.
        A False return means the peer is too slow: the caller must ``close()`` it.
        """
        if self.close_code is not None:
            return True  # closing: drop silently, the peer will resume from history
        if len(self._outbox) >= self._outbox_size:
            return False
        self._outbox.append(message)
        self._ready.set()
        return True

    def push(self, batch: list[Message]) -> None:
        """Queue ``batch`` (a welcome and its replay) as one outbox entry, whatever the fill.

        The batch is bounded by the caller (the history cap), and it is sent in order, before
        anything offered afterwards.
        """
        if self.close_code is None and batch:
            self._outbox.append(batch)
            self._ready.set()

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close the connection with ``code``; idempotent, never blocks the caller.

        With ``flush`` the frames already queued are sent first (a graceful close); without it
        they are dropped (a slow consumer). Either way a peer that does not read its close frame
        within ``close_timeout_s`` has its TCP connection aborted.
        """
        if self.close_code is not None:
            return
        self.close_code = code
        if not flush:
            self._outbox.clear()
        self._outbox.append({"type": "websocket.close", "code": int(code), "reason": reason})
        self._ready.set()
        if not flush and self._writer is not None:
            # The writer may be parked on a full socket buffer: restart it so the close frame
            # goes out as soon as the peer reads, and a deadline bounds the wait.
            self._writer.cancel()
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self._abort is not None:
            self._abort()

    async def stop(self) -> None:
        """Stop the writer task; call when the endpoint is done with the connection."""
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _drain(self) -> None:
        send = self.websocket.send
        outbox = self._outbox
        try:
            while True:
                if not outbox:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                message = outbox.popleft()
                if isinstance(message, list):
                    for item in message:
                        await send(item)
                elif message["type"] == "websocket.close":
                    await self._send_close(message)
                    return
                else:
                    await send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer vanished mid-send: make the reader see it now
            log.debug("send to %s failed: %r", self.name, exc)
            self.abort()

    async def _send_close(self, message: Message) -> None:
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await self.websocket.send(message)
        except TimeoutError:
            log.info("%s did not read its close frame in time; aborting", self.name)
            self.abort()
