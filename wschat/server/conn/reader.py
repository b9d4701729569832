"""The one read loop: a ``Reader`` takes a socket's messages and its end, under any server.

Under wschat's own transport (``transport.extension.Transport``) a socket's ASGI task ends
once the connection is set up, and the transport hands the ``Reader`` (an ``extension.Sink``)
each message and the disconnect by callback. A task exists only while a message is being
handled, so an idle socket holds no task and no coroutine frames (about 2.5 KB;
docs/performance.md). Under another ASGI server, ``AsgiPump`` awaits ``receive()`` in the
socket's ASGI task and feeds the same ``Reader``: one policy, two thin drivers.

Messages are handled one at a time and in order: while one is being handled, reading pauses
(``hold_reading``), and what already arrived waits in a short backlog. A handler that has
nothing to wait for (the echo) is a plain function returning None: it runs as the message
arrives, with no task (with wschat's own frame serialisation, 14.3 -> 12.9 µs of server CPU
per echo round trip, docs/performance.md); an ``async`` handler's coroutine runs in a task. An unexpected error in
the handler is logged with its traceback and closes the socket with 1011. A disconnect that
arrives meanwhile is acted on once the message in hand is done. When the connection ends, the
reader stops the outbox, takes the connection out of the hub, calls the handler's ``on_end``
and gives the connection's place in the caps back (``Releasable``).

Imports the connection layer and the transport contract; nothing of the chat layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from wschat.protocol import CloseCode
from wschat.server.conn.connection import Connection
from wschat.server.conn.hub import Hub
from wschat.server.transport.asgi import AsgiEvent, Receive

log = logging.getLogger("wschat.server")

# The code a connection that ended without a close frame is reported with (RFC 6455 §7.1.5).
NO_CLOSE_FRAME = 1006

C = TypeVar("C", bound=Connection)
# A message handler: returns None when it is done, or an awaitable (its coroutine) to finish.
OnFrame = Callable[[C, AsgiEvent], "Awaitable[None] | None"]
OnEnd = Callable[[C, "int | None"], None]


class Releasable(Protocol):
    """A connection's place in the caps (the guard's ``Lease``), given back once it ends."""

    def release(self) -> None: ...


class ReadControl(Protocol):
    """What a ``Reader`` needs of its driver: the transport, or ``AsgiPump``."""

    def hold_reading(self, hold: bool) -> None: ...


class Reader(Generic[C]):
    """Handle one connection's messages and its end; see the module docstring."""

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
        "_reading",
        "_task",
    )

    def __init__(
        self,
        conn: C,
        reading: ReadControl,
        hub: Hub,
        on_frame: OnFrame[C],
        on_end: OnEnd[C],
        lease: Releasable | None = None,
    ) -> None:
        self._conn = conn
        self._reading = reading
        self._hub = hub
        self._on_frame = on_frame
        self._on_end = on_end
        self._lease = lease
        self._backlog: list[AsgiEvent] | None = None  # arrived while a message is handled
        self._task: asyncio.Task[None] | None = None
        self._gone = False  # the peer disconnected (or we closed): no more messages
        self._ended = False
        self._code: int | None = None

    @property
    def busy(self) -> bool:
        """Return whether a message is being handled now."""
        return self._task is not None

    @property
    def ended(self) -> bool:
        """Return whether the connection has ended and ``on_end`` was called."""
        return self._ended

    def on_message(self, message: AsgiEvent) -> None:
        """Take one ``websocket.receive`` event (called by the driver)."""
        if self._gone:
            return
        if self._task is not None:
            if self._backlog is None:
                self._backlog = []
            self._backlog.append(message)
            self._reading.hold_reading(True)
            return
        pending = self._call(message)
        if pending is not None:
            self._task = asyncio.get_running_loop().create_task(self._handle(pending))

    def on_disconnect(self, code: int) -> None:
        """Take the ``websocket.disconnect`` event (called by the driver; the first counts)."""
        if self._gone:
            return
        self._gone = True
        self._code = code
        if self._task is None:
            self._end()

    async def wait_idle(self) -> None:
        """Wait until the message in hand, if any, and the backlog are handled."""
        task = self._task
        if task is not None:
            await task

    def _call(self, message: AsgiEvent) -> Awaitable[None] | None:
        """Call the handler on ``message``; return what is left to await, if anything."""
        conn = self._conn
        if conn.close_code is not None:  # closing: ignore what the peer still sends
            return None
        try:
            return self._on_frame(conn, message)
        except Exception:
            self._failed()
            return None

    def _failed(self) -> None:
        log.exception("error handling a frame from %s", self._conn.label)
        self._conn.close(CloseCode.INTERNAL_ERROR, "internal error")

    async def _handle(self, pending: Awaitable[None] | None) -> None:
        try:
            while True:
                if pending is not None:
                    try:
                        await pending
                    except Exception:
                        self._failed()
                if not self._backlog:  # what came before a disconnect is still handled
                    break
                pending = self._call(self._backlog.pop(0))
        finally:
            self._task = None
            self._backlog = None
            if self._gone:
                self._end()
            else:
                self._reading.hold_reading(False)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        conn = self._conn
        code = self._code
        conn.stop_now()
        self._hub.remove(conn, code)
        try:
            self._on_end(conn, code)
        finally:
            if self._lease is not None:
                self._lease.release()


class AsgiPump:
    """Drive a ``Reader`` with plain ASGI ``receive()`` calls (no wschat transport).

    ``hold_reading`` is an ``asyncio.Event`` the pump waits on before each ``receive()``.
    """

    __slots__ = ("_resumed",)

    def __init__(self) -> None:
        self._resumed = asyncio.Event()
        self._resumed.set()

    def hold_reading(self, hold: bool) -> None:
        """Pause (``hold``) or resume the pump's ``receive()`` calls."""
        if hold:
            self._resumed.clear()
        else:
            self._resumed.set()

    async def run(self, receive: Receive, reader: Reader[C]) -> int:
        """Feed ``reader`` until the peer disconnects and its messages are handled.

        Returns the close code. If this task is cancelled (a server shutting down), the
        reader is told of a lost connection (1006), so its end still runs.
        """
        code = NO_CLOSE_FRAME
        try:
            while True:
                await self._resumed.wait()
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    code = int(message.get("code", CloseCode.NORMAL))
                    break
                reader.on_message(message)
        finally:
            reader.on_disconnect(code)
        await reader.wait_idle()
        return code


async def serve_connection(
    conn: C,
    hub: Hub,
    on_frame: OnFrame[C],
    on_end: OnEnd[C],
    lease: Releasable | None = None,
    receive: Receive | None = None,
) -> None:
    """Serve an accepted ``conn`` until it ends, then call ``on_end(conn, code)`` once.

    Registers ``conn`` with the hub, starts its outbox and hands its messages to a ``Reader``.
    Under wschat's transport this returns at once (the socket holds no task); elsewhere it
    runs an ``AsgiPump`` on ``receive`` (default: the socket's) until the connection ends.
    ``lease``, if any, is released after ``on_end``.
    """
    hub.add(conn)
    conn.start()
    proto = conn.protocol
    if proto is not None:
        proto.detach(Reader(conn, proto, hub, on_frame, on_end, lease))
        return
    pump = AsgiPump()
    reader = Reader(conn, pump, hub, on_frame, on_end, lease)
    try:
        await pump.run(receive or conn.socket.receive, reader)
    finally:
        await conn.stop()  # the writer and closer tasks end with the ASGI call
