"""The ASGI type aliases, defined once for every layer of the server, and a lean WebSocket.

The shapes are the ASGI specification's, the same as ``starlette.types``, so our apps and
Starlette's are interchangeable. Messages are ``extension.AsgiEvent``.

``AsgiWebSocket`` is what the chat and echo routes (``routing``) hand their handlers instead
of Starlette's ``WebSocket``: the four calls they make (``accept``, ``close``, ``receive``,
``send``) as plain ASGI messages, without Starlette's state machine and its per-socket
``__dict__`` (the connection keeps the socket for its whole life). ``HandshakeSocket`` is what
a handler needs; Starlette's ``WebSocket`` (FastAPI's ``/echo``) fits it too. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from wschat.server.transport.extension import AsgiEvent

__all__ = [
    "ASGIApp",
    "AsgiEvent",
    "AsgiWebSocket",
    "HandshakeSocket",
    "Receive",
    "Scope",
    "Send",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiEvent]]
Send = Callable[[AsgiEvent], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HandshakeSocket(Protocol):
    """A WebSocket handed to a handler before its handshake is answered."""

    @property
    def scope(self) -> Scope: ...

    async def receive(self) -> AsgiEvent: ...

    async def send(self, message: AsgiEvent) -> None: ...

    async def accept(self, subprotocol: str | None = None) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class AsgiWebSocket:
    """One ASGI WebSocket call as a ``HandshakeSocket``: ``accept`` and ``close`` as messages."""

    __slots__ = ("_receive", "_send", "scope")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send

    async def receive(self) -> AsgiEvent:
        """Return the next ASGI event of this WebSocket."""
        return await self._receive()

    async def send(self, message: AsgiEvent) -> None:
        """Send one ASGI message."""
        await self._send(message)

    async def accept(self, subprotocol: str | None = None) -> None:
        """Take the ``websocket.connect`` event, then accept; call once, first.

        Raises ``RuntimeError`` if the first event is not ``websocket.connect``.
        """
        event = await self.receive()
        if event["type"] != "websocket.connect":
            raise RuntimeError(f"expected websocket.connect, got {event['type']!r}")
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code`` (before accept: refuse the handshake, 403)."""
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})
