"""wschat's WebSocket protocol class for uvicorn: websockets' sans-I/O core, driven by asyncio.

The choice (issue 13). uvicorn takes a protocol class as ``Config(ws=...)``; this one is a
sibling of uvicorn's own three implementations, not a subclass of any. It is an
``asyncio.Protocol`` that drives websockets' documented sans-I/O ``ServerProtocol``
(``receive_data``, ``events_received``, ``data_to_send``, ``accept``, ``send_response``,
``send_close``, ``send_ping``, ``fail``), the way websockets' "Integrate the Sans-I/O layer"
guide describes and the way ``wschat/bench/connection.py`` drives ``ClientProtocol``. Of
uvicorn it uses only what a protocol class receives: the constructor's ``config``
(``loaded_app``, ``root_path``), ``server_state`` (``connections``, ``tasks``: graceful
shutdown) and ``app_state``. ``tests/server/test_transport_contract.py`` lists every name.

The costs: this module owns what uvicorn's classes did (the ASGI bridge for the handshake,
keepalive, close timeouts, UTF-8 checks, message assembly), about 500 lines; a close frame
between the fragments of a message fails the connection with 1002, as websockets' core
decides (Autobahn case 7.1.5, listed in docs/security.md). In return no uvicorn release can
break it silently, and every frame-level limit lives here, in code we own:

- a message may have at most ``max_fragments`` fragments (empty ones count) and must be
  finished within ``fragment_timeout_s``; at most ``max_message_bytes`` in all (1009);
- pings and pongs from the peer are rate-limited (``control_rate_per_s``; 1008);
- incoming bytes are fed to the parser in slices, and not at all while the socket's write
  buffer is over ``write_buffer_bytes`` (the peer does not read our pongs or messages) or
  while the layer above holds reading: a peer cannot make the server buffer without bound;
- the close code recorded is the one sent or received first: 1011 for a keepalive timeout,
  1006 when the TCP connection ended without a close frame.

Above the handshake the layers above reach the socket through ``extension.Transport``
(``write_frame``, ``can_write``, ``on_writable``, ``close``, ``abort``, ``detach``,
``hold_reading``), published in the ASGI scope as ``wschat.transport``. A socket handed to a
``Sink`` by ``detach`` outlives its ASGI call, so an idle chat socket holds no task; this is
an extension of wschat's own server, and an app run elsewhere finds no such key.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import math
import time
from collections.abc import Callable, MutableMapping
from typing import Any, ClassVar, cast
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from wschat.protocol import CloseCode
from wschat.server.transport.extension import TRANSPORT_EXTENSION, AsgiEvent, Sink
from wschat.server.transport.limits import TransportLimits

log = logging.getLogger("wschat.transport")
# websockets' own per-connection lines ("connection open", and at debug every header, tokens
# included) are not ours to print: its logger is held at WARNING. It is made outside the
# logging tree (which a log configuration resets) and hands what it passes to ours.
_core_log = logging.Logger("wschat.transport.websockets", logging.WARNING)
_core_log.parent = log

FEED_BYTES = 16 * 1024  # bytes handed to the parser at once: limits are checked between slices
CLOSING_READ_BYTES = 64 * 1024  # read (and discard) this much after our close, then stop
PONG = 0x8A  # the first byte of an unfragmented, unmasked pong frame
# Recorded, never sent (RFC 6455 §7.4.1): no close frame at all, or one without a code.
ABNORMAL = 1006
NO_STATUS = 1005

Scope = MutableMapping[str, Any]
_IDLE, _AWAITING, _ANSWERED = 0, 1, 2  # keepalive: next due pings; checks for a pong; re-arms


class _Keepalive:
    """One timer for every socket's keepalive, where a timer handle per socket costs ~600 B.

    A socket waits in the set of its due tick; one timer walks the due sets every ``tick_s``
    (at most a second, finer for short intervals), so a ping goes out up to one tick late.
    """

    __slots__ = ("_due", "_handle", "_loop", "tick_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self.tick_s = min(1.0, interval_s / 4)
        self._due: dict[int, set[WebSocketProtocol]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, proto: WebSocketProtocol, delay_s: float) -> int:
        """Call ``proto.keepalive_due()`` in ``delay_s`` (rounded up to a tick); return the tick."""
        tick = math.ceil((self._loop.time() + delay_s) / self.tick_s)
        self._due.setdefault(tick, set()).add(proto)
        if self._handle is None:
            self._handle = self._loop.call_later(self.tick_s, self._run)
        return tick

    def discard(self, proto: WebSocketProtocol, tick: int) -> None:
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
                proto.keepalive_due()
        if self._due:
            self._handle = self._loop.call_later(self.tick_s, self._run)


def websocket_protocol(limits: TransportLimits) -> type[WebSocketProtocol]:
    """Return a ``WebSocketProtocol`` class bound to ``limits``, for ``Config(ws=...)``."""
    return type("WebSocketProtocol", (WebSocketProtocol,), {"__slots__": (), "limits": limits})


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection; see the module docstring. Made by uvicorn or ``HttpFront``."""

    limits: ClassVar[TransportLimits] = TransportLimits()
    _keepalives: ClassVar[dict[asyncio.AbstractEventLoop, _Keepalive]] = {}

    __slots__ = (
        "_app",
        "_app_state",
        "_close_budget",
        "_close_code",
        "_close_timer",
        "_ctl_stamp",
        "_ctl_tokens",
        "_decoder",
        "_drop_pongs",
        "_fragment_timer",
        "_fragments",
        "_held",
        "_inbox",
        "_lost",
        "_parts",
        "_paused",
        "_ping_phase",
        "_ping_tick",
        "_response",
        "_root_path",
        "_scope",
        "_server_state",
        "_sink",
        "_started",
        "_text",
        "_unfed",
        "_waiter",
        "_write_full",
        "_write_waiters",
        "conn",
        "loop",
        "on_writable",
        "transport",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._app = config.loaded_app
        self._root_path: str = config.root_path
        self._server_state = server_state
        self._app_state = app_state
        self.loop = _loop or asyncio.get_running_loop()
        limits = self.limits
        self.conn = ServerProtocol(max_size=limits.max_message_bytes or None, logger=_core_log)
        self.transport: asyncio.Transport | None = None
        self.on_writable: Callable[[], None] | None = None
        self._scope: Scope | None = None
        self._response: Response | None = None  # the 101, kept until the app accepts
        self._sink: Sink | None = None
        self._inbox: list[AsgiEvent] | None = []  # ASGI receive queue; None once detached
        self._waiter: asyncio.Future[None] | None = None
        self._write_waiters: list[asyncio.Future[None]] | None = None
        self._unfed = b""  # received, not yet given to the parser (reading is held)
        self._held = False  # the sink holds reading
        self._write_full = False  # the transport's write buffer is over its limit
        self._paused = False  # transport.pause_reading() is in effect
        self._lost = False
        self._close_code: int | None = None  # sent or received first
        self._close_budget = -1  # bytes still read after our close frame; -1: not closing
        self._drop_pongs = False  # the peer broke the control-frame rate: answer no pings
        self._close_timer: asyncio.TimerHandle | None = None
        self._parts: list[bytes] | None = None  # a fragmented message being assembled
        self._text = False
        self._decoder: codecs.IncrementalDecoder | None = None
        self._fragments = 0
        self._fragment_timer: asyncio.TimerHandle | None = None
        self._ctl_tokens = 0.0
        self._ctl_stamp = 0.0  # 0: no control frame seen yet
        self._ping_tick: int | None = None
        self._ping_phase = _IDLE
        self._started = False  # the ASGI app was called: it hears of the end

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        self._server_state.connections.add(self)
        if self.limits.write_buffer_bytes > 0:
            transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes)

    def data_received(self, data: bytes) -> None:
        budget = self._close_budget
        if budget >= 0:
            # Closing: what the peer still sends is read only up to a budget, then reading
            # stops (a flood after a close costs nothing) until the close timer aborts.
            self._close_budget = budget = max(0, budget - len(data))
            if budget == 0:
                self._unfed = b""
                self._update_reading()
                return
        self._unfed = self._unfed + data if self._unfed else data
        self._feed()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._after_parse()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._server_state.connections.discard(self)
        self.on_writable = None
        for timer in (self._close_timer, self._fragment_timer):
            if timer is not None:
                timer.cancel()
        self._stop_keepalive()
        self._wake_writers()
        code = self._close_code if self._close_code is not None else ABNORMAL
        self._close_code = code
        self._response = None
        self._scope = None
        if self._started:
            self._deliver({"type": "websocket.disconnect", "code": code})

    def pause_writing(self) -> None:
        self._write_full = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_full = False
        self._wake_writers()
        self._update_reading()
        if self.on_writable is not None:
            self.on_writable()

    def shutdown(self) -> None:
        """Close for a server shutdown (uvicorn calls this on every connection it tracks)."""
        if self.conn.state is State.OPEN:
            self.close(CloseCode.SERVICE_RESTART, "server shutting down")
        elif self.conn.state is State.CONNECTING and self.transport is not None:
            self.transport.close()

    # --- reading ----------------------------------------------------------------------------

    def _feed(self) -> None:
        data, self._unfed = self._unfed, b""
        size = len(data)
        at = 0
        conn = self.conn
        while at < size and not self._lost:
            if self._held or self._write_full or self._close_budget == 0:
                self._unfed = data[at:]
                self._update_reading()
                return
            piece = data if size <= FEED_BYTES else data[at : at + FEED_BYTES]
            at += len(piece)
            conn.receive_data(piece)
            self._after_parse()

    def _after_parse(self) -> None:
        conn = self.conn
        for event in conn.events_received():
            if type(event) is Frame:
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        exc = conn.parser_exc
        if exc is not None and self._close_code is None:
            sent = conn.close_sent
            self._close_code = sent.code if sent is not None else ABNORMAL
            if not isinstance(exc, EOFError):  # a vanished peer is not worth a line
                log.info("%s - WebSocket closed %d: %s", self._peer(), self._close_code, exc)
            self._end_fragments()
            self._closing()
        self._flush()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._lost:
            return
        pause = self._held or self._write_full or self._close_budget == 0
        if pause and not self._paused:
            self._paused = True
            transport.pause_reading()
        elif not pause and self._paused:
            self._paused = False
            transport.resume_reading()
            if self._unfed:
                self.loop.call_soon(self._feed)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                if opcode is Opcode.TEXT:
                    try:
                        text = bytes(frame.data).decode()
                    except UnicodeDecodeError:
                        self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                        return
                    self._deliver({"type": "websocket.receive", "text": text})
                else:
                    self._deliver({"type": "websocket.receive", "bytes": bytes(frame.data)})
                return
            self._parts = []
            self._text = opcode is Opcode.TEXT
            self._decoder = codecs.getincrementaldecoder("utf-8")() if self._text else None
            self._fragments = 0
            timeout = self.limits.fragment_timeout_s
            if timeout > 0:
                self._fragment_timer = self.loop.call_later(timeout, self._fragment_late)
            self._add_fragment(frame)
        elif opcode is Opcode.CONT:
            if self._parts is not None:
                self._add_fragment(frame)
        elif opcode is Opcode.PING or opcode is Opcode.PONG:
            if not self._control_allowed():
                # websockets has queued a pong for every ping parsed so far: drop them.
                self._drop_pongs = True
                self._fail(CloseCode.POLICY_VIOLATION, "too many control frames")
                return
            if opcode is Opcode.PONG and self._ping_phase == _AWAITING:
                self._ping_phase = _ANSWERED
        elif opcode is Opcode.CLOSE and self._close_code is None:
            received = self.conn.close_rcvd
            self._close_code = received.code if received is not None else NO_STATUS

    def _add_fragment(self, frame: Frame) -> None:
        parts = self._parts
        assert parts is not None
        self._fragments += 1
        limit = self.limits.max_fragments
        if limit > 0 and self._fragments > limit:
            self._fail(CloseCode.MESSAGE_TOO_BIG, f"more than {limit} fragments in one message")
            return
        data = bytes(frame.data)
        if self._decoder is not None:
            # RFC 6455 §8.1: fail fast, at the first fragment that is not UTF-8.
            try:
                self._decoder.decode(data, frame.fin)
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                return
        parts.append(data)
        if not frame.fin:
            return
        self._end_fragments()
        payload = b"".join(parts)
        if self._text:
            self._deliver({"type": "websocket.receive", "text": payload.decode()})
        else:
            self._deliver({"type": "websocket.receive", "bytes": payload})

    def _end_fragments(self) -> None:
        self._parts = None
        self._decoder = None
        if self._fragment_timer is not None:
            self._fragment_timer.cancel()
            self._fragment_timer = None

    def _fragment_late(self) -> None:
        self._fragment_timer = None
        if self._parts is not None:
            timeout = self.limits.fragment_timeout_s
            self._fail(CloseCode.POLICY_VIOLATION, f"message not finished within {timeout:g} s")
            self._flush()

    def _control_allowed(self) -> bool:
        rate = self.limits.control_rate_per_s
        if rate <= 0:
            return True
        now = time.monotonic()
        if self._ctl_stamp == 0.0:
            self._ctl_tokens = 2 * rate
        else:
            self._ctl_tokens = min(2 * rate, self._ctl_tokens + (now - self._ctl_stamp) * rate)
        self._ctl_stamp = now
        if self._ctl_tokens < 1:
            return False
        self._ctl_tokens -= 1
        return True

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame, then no more parsing."""
        self._end_fragments()
        if self._close_code is None:
            self._close_code = code
        log.info("%s - WebSocket closed %d: %s", self._peer(), code, reason)
        self.conn.fail(code, reason)
        self._unfed = b""
        self._closing()

    def _deliver(self, event: AsgiEvent) -> None:
        sink = self._sink
        if sink is not None:
            if event["type"] == "websocket.disconnect":
                sink.on_disconnect(int(event["code"]))
            else:
                sink.on_message(event)
            return
        inbox = self._inbox
        if inbox is None:
            return
        inbox.append(event)
        if event["type"] == "websocket.receive":
            self._held = True  # one message at a time until the app takes it
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the handshake and the ASGI bridge ---------------------------------------------------

    def _on_request(self, request: Request) -> None:
        transport = self.transport
        assert transport is not None
        response = self.conn.accept(request)
        if response.status_code != 101:
            log.info("%s - WebSocket handshake refused: %d", self._peer(), response.status_code)
            self.conn.send_response(response)
            return
        self._response = response
        path, _, query = request.path.partition("?")
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.raw_items()
        ]
        subprotocols = [
            item.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for item in value.split(",")
            if item.strip()
        ]
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if transport.get_extra_info("sslcontext") else "ws",
            "server": _address(transport.get_extra_info("sockname")),
            "client": _address(transport.get_extra_info("peername")),
            "root_path": self._root_path,
            "path": unquote(path),
            "raw_path": path.encode("ascii", "replace"),
            "query_string": query.encode("ascii", "replace"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self._app_state.copy(),
            "extensions": {
                "websocket.http.response": {},
                TRANSPORT_EXTENSION: {"transport": self},
            },
        }
        # The scope has copies of what the app needs. websockets' parser keeps the Request in
        # its generator's frame for the life of the connection: about 2.4 KB of headers per
        # idle socket (tracemalloc, benchmarks/memory.py --trace), emptied here.
        request.headers.clear()
        self._scope = scope  # until accept, which empties its headers
        assert self._inbox is not None
        self._inbox.append({"type": "websocket.connect"})
        self._started = True
        task = self.loop.create_task(self._run_asgi(scope))
        tasks = self._server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_asgi(self, scope: Scope) -> None:
        try:
            await self._app(scope, self._receive, self._send)
        except Exception:
            log.exception("error in the ASGI app for %s", self._peer())
            if self._response is not None:
                self._reject(500, "Internal Server Error\n")
            elif self.conn.state is State.OPEN:
                self.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        if self._response is not None:
            log.error("%s - the app returned without accepting or refusing", self._peer())
            self._reject(500, "Internal Server Error\n")
        elif self._sink is None and self.conn.state is State.OPEN:
            self.close(1000, "")

    async def _receive(self) -> AsgiEvent:
        while True:
            inbox = self._inbox
            if inbox:
                event = inbox.pop(0)
                if self._held and not any(e["type"] == "websocket.receive" for e in inbox):
                    self._held = False  # the app took every message: read on
                    self._update_reading()
                return event
            if inbox is None or (self._lost and not inbox):
                return {"type": "websocket.disconnect", "code": self._close_code or ABNORMAL}
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self._response is not None or self.conn.state is not State.OPEN:
                raise ConnectionError("the WebSocket is not open")
            while self._write_full and not self._lost:
                await self._writable()
            text = message.get("text")
            if text is not None:
                self.conn.send_text(text.encode())
            else:
                self.conn.send_binary(message.get("bytes") or b"")
            self._flush()
        elif kind == "websocket.accept":
            response = self._response
            if response is None:
                raise RuntimeError("websocket.accept after the handshake")
            self._response = None
            self._access_log("[accepted]")
            subprotocol = message.get("subprotocol")
            if subprotocol is not None:
                response.headers["Sec-WebSocket-Protocol"] = subprotocol
            for name, value in message.get("headers") or ():
                response.headers[name.decode("latin-1")] = value.decode("latin-1")
            self.conn.send_response(response)
            self._flush()
            self._start_keepalive()
            # The handshake's headers are never read again: the app has what it needs.
            if self._scope is not None:
                self._scope["headers"] = []
                self._scope["state"] = {}
                self._scope = None
        elif kind == "websocket.close":
            if self._response is not None:
                self._access_log(403)
                self._reject(403, "")
            else:
                self.close(int(message.get("code") or 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self._response is None:
                raise RuntimeError("websocket.http.response.start after the handshake")
            self._response = Response(
                int(message["status"]),
                "",
                Headers(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers") or ()
                ),
                b"",
            )
        elif kind == "websocket.http.response.body":
            response = self._response
            if response is None or response.status_code == 101:
                raise RuntimeError("websocket.http.response.body without a start")
            body = bytes(response.body) + bytes(message.get("body") or b"")
            self._response = Response(response.status_code, "", response.headers, body)
            if not message.get("more_body"):
                self._response = None
                self._send_refusal(response.status_code, response.headers, body)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _reject(self, status: int, text: str) -> None:
        self._response = None
        if not self._lost:
            self.conn.send_response(self.conn.reject(status, text))
            self._flush()

    def _send_refusal(self, status: int, headers: Headers, body: bytes) -> None:
        self._access_log(status)
        if self._lost:
            return
        reason = self.conn.reject(status, "").reason_phrase
        sent = Headers([("Connection", "close"), ("Content-Length", str(len(body)))])
        for name, value in headers.raw_items():
            if name.lower() not in ("connection", "content-length"):
                sent[name] = value
        self.conn.send_response(Response(status, reason, sent, body))
        self._flush()

    def _access_log(self, status: int | str) -> None:
        """Log the handshake like uvicorn's access line: ``"WebSocket /path?query" status``."""
        scope = self._scope
        if scope is None or not log.isEnabledFor(logging.INFO):
            return  # the line is built only when it is logged: this runs on every handshake
        query = scope["query_string"].decode("ascii", "replace")
        target = scope["path"] + (f"?{query}" if query else "")
        log.info('%s - "WebSocket %s" %s', self._peer(), target, status)

    async def _writable(self) -> None:
        waiter = self.loop.create_future()
        if self._write_waiters is None:
            self._write_waiters = []
        self._write_waiters.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters, self._write_waiters = self._write_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # --- writing and closing ----------------------------------------------------------------

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or self._lost:
            return
        chunks = self.conn.data_to_send()
        if self._drop_pongs:
            self._drop_pongs = False
            chunks = [chunk for chunk in chunks if chunk[:1] != bytes((PONG,))]
        for data in chunks:
            if data:
                transport.write(data)
            elif self.conn.close_rcvd is not None or self.conn.state is not State.CLOSING:
                # The closing handshake is complete, or the handshake was refused: the
                # server closes the TCP connection (RFC 6455 §7.1.1).
                transport.close()
            elif transport.can_write_eof():
                # We failed the connection (§7.1.7): end our side now, but read (and discard)
                # until the peer closes or the close timer aborts, so that what it still
                # sends does not reset the connection before it has read the close frame.
                transport.write_eof()
            else:
                transport.close()

    def can_write(self) -> bool:
        """Return whether a data frame may be written now without overfilling the buffer."""
        return (
            not self._write_full
            and not self._lost
            and self._close_code is None
            and self.conn.state is State.OPEN
        )

    def write_frame(self, frame: bytes) -> None:
        """Write serialised server frames; call only when ``can_write()`` is true."""
        assert self.transport is not None
        self.transport.write(frame)

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after what was written; abort if the handshake does not end."""
        if self.conn.state is not State.OPEN or self._lost:
            return
        if self._close_code is None:
            self._close_code = code
        self._end_fragments()
        self.conn.send_close(code, reason)
        self._flush()
        self._closing()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self.transport is not None and not self._lost:
            if self._close_code is None:
                self._close_code = ABNORMAL
            self.transport.abort()

    def detach(self, sink: Sink) -> None:
        """Hand further messages and the end to ``sink``; the ASGI call may then return."""
        queued, self._inbox = self._inbox or [], None
        self._sink = sink
        if self._held:
            self._held = False
        for event in queued:
            self._deliver(event)
        self._update_reading()

    def hold_reading(self, hold: bool) -> None:
        """Pause (``hold``) or resume reading for the sink."""
        if hold != self._held:
            self._held = hold
            self._update_reading()

    def _closing(self) -> None:
        if self._close_budget < 0:
            self._close_budget = CLOSING_READ_BYTES
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        timeout = self.limits.close_timeout_s
        if self._close_timer is None and timeout > 0 and not self._lost:
            self._close_timer = self.loop.call_later(timeout, self._close_late)

    def _close_late(self) -> None:
        self._close_timer = None
        if not self._lost and self.transport is not None:
            log.info("%s did not finish the closing handshake in time; aborting", self._peer())
            self.transport.abort()

    # --- keepalive ----------------------------------------------------------------------------

    def _keepalive(self) -> _Keepalive | None:
        interval = self.limits.ping_interval_s
        if interval <= 0:
            return None
        keepalive = self._keepalives.get(self.loop)
        if keepalive is None:
            keepalive = self._keepalives[self.loop] = _Keepalive(self.loop, interval)
        return keepalive

    def _start_keepalive(self) -> None:
        keepalive = self._keepalive()
        if keepalive is not None:
            self._ping_tick = keepalive.add(self, self.limits.ping_interval_s)

    def _stop_keepalive(self) -> None:
        keepalive = self._keepalives.get(self.loop)
        if keepalive is not None and self._ping_tick is not None:
            keepalive.discard(self, self._ping_tick)
        self._ping_tick = None

    def keepalive_due(self) -> None:
        """Ping the peer, or close 1011 if the last ping got no pong (the shared timer calls)."""
        self._ping_tick = None
        if self._lost or self.conn.state is not State.OPEN:
            return
        keepalive = self._keepalive()
        assert keepalive is not None
        limits = self.limits
        phase = self._ping_phase
        if phase == _AWAITING:
            # The peer has not answered for the whole timeout: it will not read a closing
            # handshake either. Send the close frame for the record and end the connection.
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        if phase == _ANSWERED:  # checked at the timeout: answered, ping again at the interval
            self._ping_phase = _IDLE
            rest = limits.ping_interval_s - limits.ping_timeout_s
            if rest > 0:
                self._ping_tick = keepalive.add(self, rest)
                return
        self.conn.send_ping(b"")
        self._flush()
        if limits.ping_timeout_s > 0:
            # Due again at the timeout: still awaiting a pong then closes 1011.
            self._ping_phase = _AWAITING
            self._ping_tick = keepalive.add(self, limits.ping_timeout_s)
        else:
            self._ping_tick = keepalive.add(self, limits.ping_interval_s)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
