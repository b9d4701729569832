"""Our uvicorn WebSocket protocol class: uvicorn's sans-I/O implementation plus our seams.

uvicorn takes a protocol class as ``Config(ws=...)``. This subclass of its websockets-sansio
implementation:

- publishes itself in the ASGI scope under the extension ``wschat.transport``
  (``{"protocol": self}``), which lets the app write a server frame that was serialised once
  for every receiver of a broadcast straight to the transport (``write_frame``) when the
  socket can take it (``can_write``), instead of one ASGI ``send`` (and one encoding) per
  receiver; hear when a full socket buffer drains again (``on_writable``), so a connection
  needs no writer task of its own; and drop a peer that stopped reading (``abort``): ASGI
  alone can only send a close frame, which never leaves a full socket buffer. Apps run under
  another server find no such extension and use plain ASGI sends. Data frames written here
  are complete, unfragmented and unmasked (RFC 6455 §5.1 to 5.2), so they interleave safely
  with the control frames uvicorn writes itself; the closing handshake stays with uvicorn;
- lets the app hand a socket's further messages and its disconnect to a reader object
  (``detach``, see ``reader.py``) and return from its ASGI call, so an idle chat socket holds
  no task; ``run_asgi`` then leaves the socket open, and the reader pauses and resumes
  reading (``hold_reading``) while it handles a message;
- closes a text message that is not UTF-8 with 1007 and logs one line, where uvicorn logs a
  traceback per message (issue 7); every other frame-level failure (1002 malformed frame,
  1009 too big) is logged once, without a traceback, too;
- answers a close frame that arrives between the fragments of a message with a normal close
  (RFC 6455 §5.4), where the websockets core fails the connection with 1002;
- pings every socket from one shared keepalive timer (``_Keepalive``) instead of one timer
  handle per socket;
- keeps less per socket: a list-based receive queue, a lean writable flag, and the
  handshake's headers and state copy dropped at accept;
- marks a handshake refused with an HTTP response (``websocket.http.response``) as complete,
  so uvicorn does not log it as an app error.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from wschat.protocol import CloseCode

if TYPE_CHECKING:
    from wschat.server.transport.extension import Sink as Reader

TRANSPORT_EXTENSION = "wschat.transport"
CLOSE_TIMEOUT_S = 5.0


class _Inbox:
    """The received-events queue uvicorn needs (``put_nowait``, ``get``, ``empty``), lean.

    uvicorn keeps one ``asyncio.Queue`` per socket (with two waiter deques and an Event for
    ``join()``, about 2.4 KB) for a queue that holds one batch at a time: reading is paused
    after each message until the app takes it. A list (56 bytes empty, where a deque
    preallocates about 600) and one waiter do the same job.
    """

    __slots__ = ("_items", "_waiter", "sink")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None
        self.sink: Callable[[Any], None] | None = None  # set once the socket is detached

    def put_nowait(self, item: Any) -> None:
        if self.sink is not None:
            self.sink(item)
            return
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def forward(self, sink: Callable[[Any], None]) -> list[Any]:
        """From now on pass each item to ``sink``; return (and forget) those queued so far."""
        self.sink = sink
        queued, self._items = self._items, []
        return queued

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """The ``asyncio.Event`` uvicorn keeps per socket for "the transport may be written",
    without the Event's preallocated waiter deque (about 700 bytes per socket): a waiter list
    exists only while a send waits for a full buffer to drain.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class _Keepalive:
    """One timer for every socket's keepalive ping, where uvicorn arms one per socket.

    A timer handle per socket costs about 600 bytes (more in the event loop's own memory)
    for something that fires every 20 seconds. Here a socket waits in the set of its due
    tick, and one timer walks the due sets every ``tick_s`` (at most a second, finer for
    short intervals), so a ping goes out up to one tick late.
    """

    __slots__ = ("_due", "_handle", "_loop", "tick_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self.tick_s = min(1.0, interval_s / 4)
        self._due: dict[int, set[WschatWebSocketProtocol]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, proto: WschatWebSocketProtocol, delay_s: float) -> int:
        """Ping ``proto`` in ``delay_s`` (rounded up to the next tick); return its tick."""
        tick = math.ceil((self._loop.time() + delay_s) / self.tick_s)
        self._due.setdefault(tick, set()).add(proto)
        if self._handle is None:
            self._handle = self._loop.call_later(self.tick_s, self._run)
        return tick

    def discard(self, proto: WschatWebSocketProtocol, tick: int) -> None:
        waiting = self._due.get(tick)
        if waiting is not None:
            waiting.discard(proto)
            if not waiting:
                del self._due[tick]

    def _run(self) -> None:
        self._handle = None
        now = self._loop.time() / self.tick_s
        for tick in sorted(t for t in self._due if t <= now):
            for proto in self._due.pop(tick):
                proto.ping_due()
        if self._due:
            self._handle = self._loop.call_later(self.tick_s, self._run)


class _ServerProtocol(ServerProtocol):
    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE and self.current_size is not None:
            # RFC 6455 §5.4: control frames may come between the fragments of a message. A
            # close there ends the unfinished message; answer it like any close, where the
            # websockets core fails the connection with 1002 (Autobahn case 7.1.5).
            self.current_size = None
        super().recv_frame(frame)


class WschatWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with a direct write path and strict framing."""

    on_writable: Callable[[], None] | None = None
    _reader: Reader | None = None  # set by detach(): events go to it, not to the ASGI queue
    _ping_tick: int | None = None  # the keepalive tick this socket waits in, if any

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn = _ServerProtocol(
            extensions=self.conn.available_extensions,
            max_size=self.config.ws_max_size,
            logger=logging.getLogger("uvicorn.error"),
        )
        self._inbox = _Inbox()
        self.queue = self._inbox  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self._utf8 = _NO_DECODER
        self._failure_logged = False
        if self.ping_interval:
            keepalive = getattr(server_state, "wschat_keepalive", None)
            if keepalive is None:
                keepalive = _Keepalive(self.loop, self.ping_interval)
                server_state.wschat_keepalive = keepalive  # type: ignore[attr-defined]
            self._keepalive: _Keepalive = keepalive

    async def run_asgi(self) -> None:
        # uvicorn's run_asgi, except that a detached socket outlives the app's call.
        extensions = self.scope.setdefault("extensions", {})
        if extensions is not None:
            extensions[TRANSPORT_EXTENSION] = {"transport": self}
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None and self._reader is None:
            self.transport.close()

    # --- detached reading: no ASGI task once the chat is set up (see reader.py) ---------------

    def detach(self, reader: Reader) -> None:
        """Hand this socket's further events to ``reader``; the app's call may then return.

        Events that arrived before are handed over first, in order. Call after accept.
        """
        self._reader = reader
        for event in self._inbox.forward(self._dispatch):
            self._dispatch(event)
        if not reader.busy:
            self.hold_reading(False)

    def _dispatch(self, event: Any) -> None:
        reader = self._reader
        assert reader is not None
        if event["type"] == "websocket.receive":
            reader.on_message(event)
        elif event["type"] == "websocket.disconnect":
            reader.on_disconnect(int(event.get("code", 1005)))

    def hold_reading(self, hold: bool) -> None:
        """Pause (``hold``) or resume reading from the socket: the detached reader's backpressure.

        uvicorn pauses reading after each message it hands over (through the inbox, which
        forwards to the reader); the reader resumes it once it has handled what it got.
        """
        if hold and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not hold and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def send(self, message: Any) -> None:
        await super().send(message)
        kind = message["type"]
        if kind == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response (with their headers) are never read
            # again; the ASGI scope keeps what the app needs. About 3 KB per idle socket.
            # The websockets parser's generator frame keeps the request for the life of the
            # connection, so its headers are emptied, not just dropped here.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]
            # So are the request headers in the scope (the guard read them before accept)
            # and the per-connection copy of the lifespan state, which the chat never reads.
            self.scope["headers"] = []
            self.scope["state"] = {}
        elif kind == "websocket.http.response.body" and not message.get("more_body"):
            # A handshake refused with an HTTP response (wschat.server.guard) is complete:
            # without this uvicorn logs "ASGI callable returned without completing handshake".
            self.handshake_complete = True

    # --- the direct write path ----------------------------------------------------------------

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

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; abort if the peer has not read it within the close timeout."""
        self.loop.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        message = {"type": "websocket.close", "code": int(code), "reason": reason}
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.send(message)
        except TimeoutError:
            self.abort()
        except Exception:  # already gone
            self.logger.debug("close failed", exc_info=True)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_writable = None
        super().connection_lost(exc)

    # --- keepalive: one shared timer (see _Keepalive) --------------------------------------------

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self._ping_tick = self._keepalive.add(self, delay)

    def ping_due(self) -> None:
        """Send the keepalive ping now (called by the shared keepalive timer)."""
        self._ping_tick = None
        self.send_keepalive_ping()

    def stop_keepalive(self) -> None:
        if self._ping_tick is not None:
            self._keepalive.discard(self, self._ping_tick)
            self._ping_tick = None
        super().stop_keepalive()

    # --- strict framing -------------------------------------------------------------------------

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"

    def handle_text(self, event: Any) -> None:
        # Validate each fragment as it arrives (RFC 6455 §8.1: fail fast), not the whole
        # message once it is complete: a stream of bad fragments is refused at the first.
        if event.fin:
            # A whole message in one frame (the common case): one decode, no decoder object.
            try:
                event.data.decode()
            except UnicodeDecodeError as exc:
                self._fail_utf8(exc)
                return
            super().handle_text(event)
            return
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        if self._valid_utf8(event.data, event.fin):
            super().handle_text(event)

    def handle_cont(self, event: Any) -> None:
        if self.curr_msg_data_type != "text" or self._valid_utf8(event.data, event.fin):
            super().handle_cont(event)

    def _valid_utf8(self, data: bytes, final: bool) -> bool:
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            self._fail_utf8(exc)
            return False
        return True

    def _fail_utf8(self, exc: UnicodeDecodeError) -> None:  # uvicorn would log a traceback
        self.frames = []
        if self.close_sent:
            return
        self.conn.send_close(CloseCode.INVALID_DATA, "invalid UTF-8")
        self.handle_parser_exception()
        self.logger.info("%s - WebSocket closed 1007: invalid UTF-8", self._peer())

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        logged = self._failure_logged
        super().handle_parser_exception()
        if exc is not None and not logged:
            self._failure_logged = True
            sent = self.conn.close_sent
            code = sent.code if sent is not None else CloseCode.PROTOCOL_ERROR
            self.logger.info("%s - WebSocket closed %d: %s", self._peer(), code, exc)


_NO_DECODER = codecs.getincrementaldecoder("utf-8")()
