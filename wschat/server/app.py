"""The FastAPI application: ``create_app(settings)`` wires routes to the hub.

Routes: ``GET /`` (the browser page), ``GET /healthz``, ``WS /ws`` (echo) and
``WS /ws/{client_id}`` (room broadcast). The WebSocket loops live in ``endpoint``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse

from wschat import __version__
from wschat.server.endpoint import serve_chat, serve_echo
from wschat.server.engine import build_chat
from wschat.server.hub import Hub
from wschat.server.settings import ServerSettings


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Return a new app with its own hub; nothing is shared between two apps."""
    settings = settings or ServerSettings()
    hub = Hub()
    chat = build_chat(hub, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await chat.start()
        try:
            yield
        finally:
            await chat.close()

    app = FastAPI(
        title="wschat", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.chat = chat
    page = resources.files("wschat.server").joinpath("static/index.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "connections": len(hub.connections),
            "rooms": len(hub.rooms),
            "tasks": len(asyncio.all_tasks()),
            "names": len(chat.presence.holders),
            "broker": {"engine": chat.broker.name, "state": chat.broker.state()},
            "replays": chat.replays,
            "slow_consumers": hub.slow_consumers,
            "closed_by_code": {str(code): n for code, n in sorted(hub.closed_by_code.items())},
        }

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await serve_echo(websocket, hub, settings)

    @app.websocket("/ws/{client_id}")
    async def chat_endpoint(websocket: WebSocket, client_id: str) -> None:
        await serve_chat(websocket, client_id, chat)

    return app
