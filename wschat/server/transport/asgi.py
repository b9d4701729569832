"""The ASGI type aliases, defined once for every layer of the server (stdlib only).

The shapes are the ASGI specification's, the same as ``starlette.types``, so our apps and
Starlette's are interchangeable. Messages are ``extension.AsgiEvent``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from wschat.server.transport.extension import AsgiEvent

__all__ = ["ASGIApp", "AsgiEvent", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiEvent]]
Send = Callable[[AsgiEvent], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
