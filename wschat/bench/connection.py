"""One load-test client connection: websockets' sans-I/O ``ClientProtocol`` on an ``asyncio.Protocol``.

The receive path is the generator's bottleneck, so it has no per-message hop: inside
``data_received`` each complete text message is handed to ``on_text`` right there,
synchronously, with the time its bytes were read. Whole unfragmented text frames are split
off the byte stream here (about seven times faster than ``ClientProtocol``'s generator-based
parser); every other frame goes to ``ClientProtocol.receive_data``.

This is the smallest adapter we could write on websockets' documented sans-I/O API: it never
reads ``ClientProtocol``'s internals (its reader's buffer, its fragment size, its write queue).
It finds the switch-over point itself: it looks for the end of the HTTP response head
(``\r\n\r\n``), feeds ``ClientProtocol`` exactly the head so that it validates the handshake,
and, when that leaves it ``OPEN``, knows ``ClientProtocol`` stands at a frame boundary and
splits the rest itself. Every websockets name used here is listed, with its signature, in
``tests/bench/test_dependency_contract.py``.
Nothing is queued: while ``on_text`` runs, the event loop reads nothing else, so a generator
that cannot keep up slows its own reads (TCP backpressure) and shows it as latency and loop
lag, as before. Pings are answered and close frames echoed by ``ClientProtocol``; this shell
writes what it asks to send and closes the TCP connection when it is expected to (RFC 6455
7.1.1: the client waits for the server to close first, ``CLOSE_TIMEOUT_S`` at most).

Imports asyncio and ``websockets``' sans-I/O core only (no ``websockets.asyncio``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidMessage
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

CLOSE_TIMEOUT_S = 2.0
MAX_MESSAGE_BYTES = 16 * 2**20  # far above any --size; a bound, not a limit a run meets
HEAD_END = b"\r\n\r\n"  # the end of the HTTP response head (RFC 9112 2.1)
HEAD_KEEP_BYTES = 4096  # of a response that is not an upgrade: kept to say what it was

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_OPEN = State.OPEN


class BenchConnection(asyncio.Protocol):
    """A client WebSocket whose messages are handled in ``data_received``.

    Use ``open()`` to create one; then ``send()`` text, ``close()`` it, and read ``closed``
    and ``close_kind()``. ``on_text(text, now_ns)`` is called for each text message (binary
    ones decoded as UTF-8 with replacement) and must not raise; ``on_lost(self)`` is called
    once when the TCP connection ends, for whatever reason.
    """

    def __init__(
        self,
        uri: str,
        subprotocols: Sequence[str] | None,
        user_agent: str,
        on_text: Callable[[str, int], None],
        max_size: int = MAX_MESSAGE_BYTES,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ClientProtocol(
            parse_uri(uri),
            subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
            max_size=max_size,
        )
        self._request = self.ws.connect()
        self._request.headers["User-Agent"] = user_agent
        self.on_text = on_text
        self.on_lost: Callable[[BenchConnection], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.subprotocol: str | None = None
        self.closed = False  # a close frame arrived or the TCP connection ended
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        # a fragmented message so far (bounded by max_size); not empty while one is under way
        self._parts: list[bytes] = []
        self._max_size = max_size
        self._handshaking = True  # the response head has not all arrived yet
        self._head_tail = b""  # the last bytes fed during the handshake (HEAD_END may span reads)
        self._framing = False  # True once open: data_received splits frames itself
        self._tail = bytearray()  # the start of a frame whose end has not arrived
        self._binary = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._abort: asyncio.TimerHandle | None = None
        # the first bytes the server answered with, until the connection is open
        self.head = bytearray()

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a TCP transport (uvloop's is not an asyncio.Transport subclass, but behaves as one)
        self.transport = cast(asyncio.Transport, transport)
        self.ws.send_request(self._request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self._framing:
            self._split(data, now)
            return
        if len(self.head) < HEAD_KEEP_BYTES:
            self.head += data[: HEAD_KEEP_BYTES - len(self.head)]
        if self._handshaking:
            self._handshake(data, now)
            return
        self._feed(data, now)

    def _handshake(self, data: bytes, now: int) -> None:
        """Feed ``ClientProtocol`` the response head; once it is open, split frames from here.

        The 101 response has no body (RFC 9110 15.2), so the byte after its head is the first
        byte of the first frame, and ``ClientProtocol`` has consumed everything it was fed.
        """
        seen = self._head_tail + data
        end = seen.find(HEAD_END)
        if end < 0:
            self._head_tail = seen[-(len(HEAD_END) - 1) :]
            self._feed(data, now)  # ClientProtocol bounds the head's size and checks its syntax
            return
        cut = end + len(HEAD_END) - len(self._head_tail)  # > 0: the tail is shorter than HEAD_END
        self._handshaking = False
        self._head_tail = b""
        self._feed(data[:cut], now)
        rest = data[cut:]
        if self.ws.state is _OPEN:
            self._framing = True
            if rest:
                self._split(rest, now)
        elif rest:  # a refused upgrade's body, or bytes after a bad head: ClientProtocol's
            self._feed(rest, now)

    def _split(self, data: bytes, now: int) -> None:
        """Split ``data`` into frames; handle whole unfragmented text frames right here.

        Every other frame (control, fragment, binary, oversized, masked, RSV bits set) goes to
        ``ClientProtocol`` whole, so it always starts at a frame boundary and keeps full
        RFC 6455 checking; text frames skip its generator-based parser, the largest cost per
        message. A partial frame waits in ``_tail`` (at most one frame, bounded by max_size).
        """
        buf: bytes | bytearray = data
        if self._tail:
            self._tail += data
            buf = self._tail
        end, pos, on_text, max_size = len(buf), 0, self.on_text, self._max_size
        while end - pos >= 2:
            b1 = buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if end - start < 2:
                    break
                length, start = int.from_bytes(buf[start : start + 2]), start + 2
            elif length == 127:
                if end - start < 8:
                    break
                length, start = int.from_bytes(buf[start : start + 8]), start + 8
            if length > max_size:
                # let ClientProtocol fail it (1009) and parse from here on
                self._framing = False
                self._tail = bytearray()
                self._feed(bytes(buf[pos:]), now)
                return
            stop = start + length + (4 if b1 & 0x80 else 0)
            if stop > end:
                break
            if buf[pos] == 0x81 and b1 < 0x80 and not self._parts:
                try:  # FIN, text, no RSV bits, unmasked, not inside a fragmented message
                    text = buf[start:stop].decode()
                except UnicodeDecodeError:
                    self._fail_utf8()
                    return
                on_text(text, now)
            else:
                self._feed(bytes(buf[pos:stop]), now)
                if self.ws.state is not _OPEN:
                    self._framing = False
                    self._tail = bytearray()
                    return
            pos = stop
        self._tail = bytearray(buf[pos:]) if pos < end else bytearray()

    def _feed(self, data: bytes, now: int) -> None:
        """Hand ``data`` to ``ClientProtocol`` and act on what it makes of it."""
        ws = self.ws
        ws.receive_data(data)
        events = ws.events_received()
        self._flush()  # pongs, the echo of a close frame
        for event in events:
            if type(event) is Frame:
                opcode = event.opcode
                if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                    self._fragment(event, now)
                elif opcode is Opcode.CLOSE:
                    self.closed = True
            elif isinstance(event, Response):
                self._handshake_done(event)
        if not self.opened.done() and ws.handshake_exc is not None:
            self.opened.set_exception(ws.handshake_exc)
        if ws.state is not _OPEN and ws.close_expected():
            self._schedule_abort()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._abort is not None:
            self._abort.cancel()
        # idempotent; sets handshake_exc when no response came, and close_code in any case
        self.ws.receive_eof()
        if not self.opened.done():
            error: BaseException = (
                exc
                or self.ws.handshake_exc
                or InvalidMessage("connection closed during the opening handshake")
            )
            self.opened.set_exception(error)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self.lost.done():
            self.lost.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- what the runner calls ------------------------------------------------------------

    async def send(self, text: str) -> bool:
        """Send one text message; return ``False`` when the connection is no longer open.

        Waits while the transport's write buffer is above its high-water mark, like
        ``websockets``' own ``send()``.
        """
        if self.ws.state is not _OPEN or self.transport is None:
            return False
        self.ws.send_text(text.encode())
        self._flush()
        if self._paused and not self.closed:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            self._drained = None
        return True

    async def close(self) -> None:
        """Close with 1000 and wait (``CLOSE_TIMEOUT_S`` at most) for the TCP connection to end."""
        if self.transport is None:
            return
        if self.ws.state is _OPEN:
            self.ws.send_close(1000)
            self._flush()
        self._schedule_abort()
        await asyncio.shield(self.lost)

    def abort(self) -> None:
        """Drop the TCP connection now."""
        if self.transport is not None:
            self.transport.abort()

    def close_kind(self) -> str:
        """Name how the peer closed: its close code, or 1006 when no close frame came.

        Call it once the TCP connection has ended (from ``on_lost`` or after ``lost``).
        """
        code = self.ws.close_code  # None until closed; 1006 when no close frame came
        if code is None or code == CloseCode.ABNORMAL_CLOSURE:
            return "close 1006 (no close frame)"
        return f"close {int(code)}"

    # --- internals ------------------------------------------------------------------------

    def _handshake_done(self, response: Response) -> None:
        if self.ws.handshake_exc is None and not self.opened.done():
            # ClientProtocol has checked that it is one of those offered
            self.subprotocol = response.headers.get("Sec-WebSocket-Protocol")
            self.opened.set_result(None)

    def _fragment(self, frame: Frame, now: int) -> None:
        if frame.opcode is not _CONT:
            self._parts = []
            self._binary = frame.opcode is _BINARY
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return
        data, self._parts = b"".join(self._parts), []
        if self._binary:
            self.on_text(data.decode("utf-8", "replace"), now)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._fail_utf8()
            return
        self.on_text(text, now)

    def _fail_utf8(self) -> None:
        # RFC 6455 8.1: a text message that is not UTF-8 fails the connection with 1007
        self.ws.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
        self._framing = False  # ClientProtocol discards whatever follows
        self._flush()
        self.closed = True
        self._schedule_abort()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.ws.data_to_send()
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    def _schedule_abort(self) -> None:
        if self._abort is None and self.transport is not None:
            self._abort = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.abort)


async def open_connection(
    sock: Any, conn: BenchConnection, server_hostname: str | None = None
) -> BenchConnection:
    """Run ``conn``'s opening handshake on the connected socket ``sock``; return ``conn``, open.

    The caller bounds the time. Raises ``InvalidHandshake`` (``InvalidStatus`` for a refused
    upgrade) or ``OSError`` like ``websockets.asyncio.client.connect``; on failure or
    cancellation the transport is closed, and ``conn.head`` holds the start of what the server
    answered instead of an upgrade.
    """
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if server_hostname is not None else None
    await loop.create_connection(
        lambda: conn, sock=sock, ssl=context, server_hostname=server_hostname
    )
    try:
        await conn.opened
    except BaseException:
        if not conn.opened.done():
            conn.opened.cancel()  # cancelled: connection_lost must not set an unread exception
        conn.abort()
        raise
    return conn
