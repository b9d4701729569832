"""The first protocol of every TCP connection: read the request head within limits, then route.

uvicorn takes a protocol class as ``Config(http=...)``. ``HttpFront`` is that class; it
subclasses nothing. It reads the first request head itself, with explicit limits, before any
parser sees it:

- the head must arrive whole within ``handshake_timeout_s`` (else the connection is closed);
- a request line over ``max_header_bytes`` gets ``414``, a header line over it or more than
  ``max_headers`` lines get ``431``, a malformed head ``400``; each is answered and closed at
  once, so it holds no descriptor;
- a WebSocket upgrade goes to ``ws.WebSocketProtocol``, which parses the head (websockets'
  ``ServerProtocol``) and owns the connection from there;
- anything else is plain HTTP, handed to uvicorn's own HTTP protocol (httptools, or h11 when
  httptools is missing) through its constructor and the ``asyncio.Protocol`` methods; the
  front stays in between to enforce two limits uvicorn has not: a plain HTTP connection is
  closed ``http_timeout_s`` after it opened (headers, a trickled body and the response must
  fit), and at most ``max_http_connections`` are open at once (past it: ``503``).

The uvicorn names used here are listed in ``tests/server/test_transport_contract.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from wschat.server.transport.accept import AcceptGate
from wschat.server.transport.limits import TransportLimits
from wschat.server.transport.ws import WebSocketProtocol

try:  # the implementation ``uvicorn --http auto`` picks
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Http
except ImportError:  # pragma: no cover - httptools is in uvicorn[standard]
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Http  # type: ignore[assignment]

log = logging.getLogger("wschat.transport")

_REASONS = {
    400: "Bad Request",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def http_protocol(limits: TransportLimits, ws: type[WebSocketProtocol]) -> type[HttpFront]:
    """Return an ``HttpFront`` class bound to ``limits`` and ``ws``, for ``Config(http=...)``.

    Each returned class counts its own open plain HTTP connections (one per server).
    """
    counter = _Count()
    attrs = {"__slots__": (), "limits": limits, "ws_class": ws, "count": counter}
    return type("HttpFront", (HttpFront,), attrs)


class _Count:
    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = 0


class HttpFront(asyncio.Protocol):
    """Route one TCP connection by its first request head; see the module docstring."""

    limits: ClassVar[TransportLimits] = TransportLimits()
    ws_class: ClassVar[type[WebSocketProtocol]] = WebSocketProtocol
    count: ClassVar[_Count] = _Count()
    gate: ClassVar[AcceptGate | None] = None  # set once serving: pauses accept at capacity

    __slots__ = (
        "_app_state",
        "_buffer",
        "_config",
        "_counted",
        "_head_timer",
        "_inner",
        "_life_timer",
        "_lines",
        "_loop",
        "_scan",
        "_server_state",
        "_upgrade",
        "transport",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._scan = 0  # where the first line not yet checked starts
        self._lines = 0  # complete lines checked, the request line included
        self._upgrade = False
        self._inner: asyncio.Protocol | None = None  # uvicorn's HTTP protocol, once routed
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._life_timer: asyncio.TimerHandle | None = None

    # --- before the head is complete --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        self._server_state.connections.add(self)
        gate = self.gate
        if gate is not None:
            gate.connection_made()
        timeout = self.limits.handshake_timeout_s
        if timeout > 0:
            self._head_timer = self._loop.call_later(timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is not None:
            inner.data_received(data)
            return
        self._buffer += data
        status = self._check()
        if status is None:
            return
        if status:
            self._refuse(status)
        else:
            self._route()

    def _check(self) -> int | None:
        """Check the lines that arrived; return None (need more), 0 (complete) or a status."""
        buffer = self._buffer
        limit = self.limits.max_header_bytes
        while True:
            end = buffer.find(b"\r\n", self._scan)
            if end < 0:
                if len(buffer) - self._scan > limit:
                    return 414 if self._lines == 0 else 431
                return None
            line = bytes(buffer[self._scan : end])
            if end - self._scan > limit:
                return 414 if self._lines == 0 else 431
            self._scan = end + 2
            if self._lines == 0:
                if line.count(b" ") != 2 or not line.endswith((b" HTTP/1.1", b" HTTP/1.0")):
                    return 400
            elif not line:
                return 0  # the empty line: the head is complete
            else:
                name, colon, value = line.partition(b":")
                if not colon or not name or name != name.strip():
                    return 400
                if name.lower() == b"upgrade" and b"websocket" in value.lower():
                    self._upgrade = True
                if self._lines > self.limits.max_headers:
                    return 431
            self._lines += 1

    def _refuse(self, status: int) -> None:
        transport = self.transport
        assert transport is not None
        reason = _REASONS[status]
        body = f"{reason}\n".encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        if status == 503:
            head = head.replace("\r\n\r\n", "\r\nRetry-After: 5\r\n\r\n")
        log.info("%s - refused: %d %s", _peer(transport), status, reason)
        transport.write(head.encode() + body)
        self._stop_head_timer()
        self._buffer = bytearray()
        self._server_state.connections.discard(self)
        transport.close()

    def _route(self) -> None:
        transport = self.transport
        assert transport is not None
        self._stop_head_timer()
        self._server_state.connections.discard(self)
        data, self._buffer = bytes(self._buffer), bytearray()
        if self._upgrade:
            ws = self.ws_class(self._config, self._server_state, self._app_state, self._loop)
            transport.set_protocol(ws)
            ws.connection_made(transport)
            ws.data_received(data)
            return
        limits = self.limits
        count = self.count
        if limits.max_http_connections > 0 and count.open >= limits.max_http_connections:
            self._server_state.connections.add(self)
            self._refuse(503)
            return
        count.open += 1
        self._counted = True
        inner = _Http(
            config=self._config, server_state=self._server_state, app_state=self._app_state
        )
        self._inner = inner
        inner.connection_made(transport)
        self._life_timer = self._loop.call_later(
            limits.http_timeout_s if limits.http_timeout_s > 0 else 5.0, self._life_check
        )
        inner.data_received(data)

    def _head_late(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is not None and not transport.is_closing() and self._inner is None:
            log.info(
                "%s - closing: no complete request head within %gs",
                _peer(transport),
                self.limits.handshake_timeout_s,
            )
            self._server_state.connections.discard(self)
            transport.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # --- plain HTTP, handed to uvicorn ------------------------------------------------------

    def _life_check(self) -> None:
        self._life_timer = None
        transport = self.transport
        if transport is None or transport.get_protocol() is not self:
            # uvicorn upgraded a later request of this connection to a WebSocket: from now
            # on it is counted as one.
            self._release()
            return
        if self.limits.http_timeout_s <= 0:
            self._life_timer = self._loop.call_later(5.0, self._life_check)
            return
        if not transport.is_closing():
            log.info(
                "%s - closing: HTTP connection open for %gs",
                _peer(transport),
                self.limits.http_timeout_s,
            )
            transport.abort()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self.count.open -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._life_timer is not None:
            self._life_timer.cancel()
            self._life_timer = None
        self._release()
        self._server_state.connections.discard(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def shutdown(self) -> None:
        """Close a connection still sending its head (uvicorn calls this at shutdown)."""
        if self._inner is None and self.transport is not None:
            self.transport.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"
