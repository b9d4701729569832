"""Answer a WebSocket handshake with a plain HTTP response instead of ``101`` (stdlib only).

Used above the transport wherever a handshake is turned away: the guard (origin, caps,
tokens) and the routes (a path no endpoint serves). The answer is the ASGI
``websocket.http.response`` extension: a status line and a one-line text body saying why, so
a client can show the reason (docs/protocol.md "Refused handshakes"). Without the extension
the handshake is closed with 1008 before accept (the server then answers 403, bodiless).
"""

from __future__ import annotations

from http import HTTPStatus

from wschat.protocol import CloseCode
from wschat.server.transport.asgi import Scope, Send


async def refuse_handshake(
    scope: Scope,
    send: Send,
    status: HTTPStatus,
    detail: str,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """Send ``status`` with ``detail`` as its text body instead of accepting the WebSocket."""
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" not in extensions:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    body = f"{detail}\n".encode()
    head = [(b"content-type", b"text/plain; charset=utf-8")]
    head += [(k.lower().encode(), v.encode()) for k, v in headers or ()]
    await send({"type": "websocket.http.response.start", "status": status, "headers": head})
    await send({"type": "websocket.http.response.body", "body": body})
