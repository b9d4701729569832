"""A tiny wschat.v1 test client over the websockets library."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import Server


async def connect(
    server: Server, name: str, **query: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """Open a v1 connection as ``name`` and return it with its welcome."""
    qs = urlencode({k: v for k, v in query.items() if v is not None})
    url = f"{server.ws}/ws/{quote(name)}" + (f"?{qs}" if qs else "")
    ws = await websockets.connect(url, subprotocols=["wschat.v1"])  # type: ignore[list-item]
    welcome = await recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def closed_with(url: str, subprotocols: list[str] | None = None) -> tuple[int | None, str]:
    """Connect to ``url``, read until the server closes, and return its close code and reason."""
    ws = await websockets.connect(url, subprotocols=subprotocols)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""


async def recv(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        frame = await ws.recv()
    assert isinstance(frame, str)
    event: dict[str, Any] = json.loads(frame)
    return event


async def next_of(ws: ClientConnection, *types: str, within: float = 5.0) -> dict[str, Any]:
    """Return the next event of one of ``types``, skipping others."""
    async with asyncio.timeout(within):
        while True:
            event = await recv(ws, within)
            if event["type"] in types:
                return event


async def say(ws: ClientConnection, text: str, **extra: Any) -> None:
    await ws.send(json.dumps({"type": "say", "text": text, **extra}))


async def nothing_within(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Collect whatever arrives in ``seconds`` (usually expected to be nothing)."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    return got
