"""The application: ``create_app(settings)`` wires routes to the hub.

Routes: ``GET /`` (the browser chat page, its files under ``/static``, ``/favicon.ico``; their
headers are ``page``'s), ``GET /healthz``,
``GET /metrics`` (Prometheus), ``WS /echo`` (FastAPI), ``WS /ws`` (echo) and
``WS /ws/{client_id}`` (chat). The WebSocket handlers live in ``handlers``.

What is served is ``App``: the guard, then the chat and echo sockets routed straight to their
handlers (``routing``), then FastAPI (wrapped in ``page.PageHeaders``) for everything else. This module only wires: it is the
top of the server's layers (transport → conn → chat → guard, handlers, routing → app). A chat socket's coroutine frames live
as long as the socket, and each layer of FastAPI's stack (the app, error middleware, exception
middleware, body limit) costs about 300 bytes per idle socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import Response
from starlette.routing import WebSocketRoute

from wschat import __version__
from wschat.server.chat.engine import build_chat
from wschat.server.conn.hub import Hub
from wschat.server.guard import Guard
from wschat.server.handlers import ChatEndpoint, EchoHandler
from wschat.server.metrics import CONTENT_TYPE, make_registry, render
from wschat.server.page import PageHeaders, add_page_routes
from wschat.server.pool import Pool
from wschat.server.routing import WebSocketRoutes
from wschat.server.settings import ServerSettings
from wschat.server.transport.asgi import ASGIApp, Receive, Scope, Send


class App:
    """The ASGI app ``wschat serve`` runs: ``Guard`` → ``WebSocketRoutes`` → ``api`` (FastAPI)."""

    def __init__(self, api: FastAPI, entry: ASGIApp) -> None:
        self.api = api
        self.state = api.state
        self._entry = entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)


def create_app(settings: ServerSettings | None = None, pool_dir: str | None = None) -> App:
    """Return a new app with its own hub; nothing is shared between two apps.

    ``pool_dir``: this app is one worker of ``wschat serve --workers N``; ``/metrics`` and
    ``/healthz`` answer for all of them (``pool``).
    """
    settings = settings or ServerSettings()
    hub = Hub()
    chat = build_chat(hub, settings)
    pool: Pool | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await chat.start()
        writer = None if pool is None else asyncio.get_running_loop().create_task(pool.run())
        try:
            yield
        finally:
            if writer is not None:
                writer.cancel()
            await chat.close()

    app = FastAPI(
        title="wschat", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.chat = chat
    add_page_routes(app)
    registry = app.state.metrics = make_registry(chat)

    @app.get("/metrics")
    async def metrics() -> Response:
        text = render(registry) if pool is None else pool.metrics()
        return Response(text, media_type=CONTENT_TYPE)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return health() if pool is None else pool.health()

    def health() -> dict[str, Any]:
        broker = chat.broker.state()
        return {
            # "degraded": the broker is slow, reconnecting or down (chat may refuse to store).
            "status": "ok" if broker == "ok" else "degraded",
            "version": __version__,
            "connections": len(hub.connections),
            "rooms": len(hub.rooms),
            "tasks": len(asyncio.all_tasks()),
            "names": len(chat.presence.holders),
            "broker": {"engine": chat.broker.name, "state": broker},
            "replays": chat.replays,
            "slow_consumers": hub.stats.slow_consumers,
            "closed_by_code": {
                str(code): n for code, n in sorted(hub.stats.closed_by_code.items())
            },
        }

    if pool_dir is not None:
        pool = Pool(pool_dir, registry, health)
    serve_raw_echo = EchoHandler(hub, settings, raw=True)

    @app.websocket("/echo")
    async def raw_echo(websocket: WebSocket) -> None:
        await serve_raw_echo(websocket)

    routes = WebSocketRoutes(
        PageHeaders(app),
        echo=EchoHandler(hub, settings, raw=False),
        chat=ChatEndpoint(chat),
        others=frozenset(r.path for r in app.routes if isinstance(r, WebSocketRoute)),
    )
    # Outermost: origin, caps and tokens are checked before any route (issue 7).
    return App(app, Guard(routes, settings))
