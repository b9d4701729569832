"""Route the chat WebSockets straight to their handlers, ahead of FastAPI.

FastAPI's WebSocket routes run every connection through its middleware, exception handling
and dependency machinery, whose frames live as long as the connection: about 10 KB per idle
socket, measured with tracemalloc (docs/performance.md). This ASGI app matches ``/ws`` and
``/ws/{client_id}`` itself and hands everything else to FastAPI unchanged. It returns the
handler's coroutine rather than awaiting it, so it adds no frame of its own to a socket.

Hands each handler the transport's lean ``AsgiWebSocket`` (a slotted object; Starlette's
``WebSocket`` has a ``__dict__`` and a state machine on the handshake's path). Imports the
transport's ASGI module only; it knows no handler, only their signatures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from wschat.server.transport.asgi import (
    ASGIApp,
    AsgiWebSocket,
    HandshakeSocket,
    Receive,
    Scope,
    Send,
)
from wschat.server.transport.refuse import refuse_handshake

EchoHandler = Callable[[HandshakeSocket], Awaitable[None]]
ChatHandler = Callable[[HandshakeSocket, str], Awaitable[None]]


class WebSocketRoutes:
    """ASGI app: ``/ws`` to ``echo``, ``/ws/{client_id}`` to ``chat``; the rest to ``app``.

    A WebSocket handshake for a path no endpoint serves (neither these nor ``others``, the
    app's own WebSocket paths) is answered ``404`` with a body naming the endpoints, rather
    than the bodiless ``403`` a router gives: ``wschat join --url ws://host/ws`` then says
    what is wrong (issue 18).
    """

    def __init__(
        self,
        app: ASGIApp,
        echo: EchoHandler,
        chat: ChatHandler,
        others: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.echo = echo
        self.chat = chat
        self.others = others
        self.endpoints = ", ".join(["/ws (echo)", "/ws/{client_id} (chat)", *sorted(others)])

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            if path == "/ws":
                return self.echo(AsgiWebSocket(scope, receive, send))
            if path.startswith("/ws/"):
                client_id = path[4:]
                if client_id and "/" not in client_id:
                    return self.chat(AsgiWebSocket(scope, receive, send), client_id)
            if path not in self.others:
                detail = f"no WebSocket endpoint at {path[:100]}: this server has {self.endpoints}"
                return refuse_handshake(scope, send, HTTPStatus.NOT_FOUND, detail)
        return self.app(scope, receive, send)
