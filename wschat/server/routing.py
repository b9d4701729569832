"""Route the chat WebSockets straight to their handlers, ahead of FastAPI.

FastAPI's WebSocket routes run every connection through its middleware, exception handling
and dependency machinery, whose frames live as long as the connection: about 10 KB per idle
socket, measured with tracemalloc (docs/performance.md). This ASGI app matches ``/ws`` and
``/ws/{client_id}`` itself and hands everything else to FastAPI unchanged. It returns the
handler's coroutine rather than awaiting it, so it adds no frame of its own to a socket.

Imports Starlette's ``WebSocket`` and the transport's ASGI aliases; it knows no handler, only
their signatures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from wschat.server.transport.asgi import ASGIApp, Receive, Scope, Send

EchoHandler = Callable[[WebSocket], Awaitable[None]]
ChatHandler = Callable[[WebSocket, str], Awaitable[None]]


class WebSocketRoutes:
    """ASGI app: ``/ws`` to ``echo``, ``/ws/{client_id}`` to ``chat``; the rest to ``app``."""

    def __init__(self, app: ASGIApp, echo: EchoHandler, chat: ChatHandler) -> None:
        self.app = app
        self.echo = echo
        self.chat = chat

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            if path == "/ws":
                return self.echo(WebSocket(scope, receive, send))
            if path.startswith("/ws/"):
                client_id = path[4:]
                if client_id and "/" not in client_id:
                    return self.chat(WebSocket(scope, receive, send), client_id)
        return self.app(scope, receive, send)
