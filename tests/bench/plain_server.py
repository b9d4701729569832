"""A minimal plain WebSocket server for the load tester's tests: the article's two endpoints.

``/ws`` echoes ``You said: T``; ``/ws/{id}`` broadcasts ``Client {id}: T`` to every connected
client, sender included. ``stall`` lets a test delay chosen echoes to make a slow server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, broadcast, serve

from wschat.bench.payload import find_stamp


@dataclass
class PlainServer:
    url: str
    stall: Callable[[int, int], float] = lambda sender, seq: 0.0  # seconds to hold one echo
    members: set[ServerConnection] = field(default_factory=set)


@asynccontextmanager
async def plain_server(
    stall: Callable[[int, int], float] | None = None,
) -> AsyncIterator[PlainServer]:
    """Serve on a free 127.0.0.1 port for the duration of the block."""
    state = PlainServer("")
    if stall is not None:
        state.stall = stall

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/"
        if path == "/ws":
            async for text in ws:
                stamp = find_stamp(str(text))
                delay = state.stall(stamp.sender, stamp.seq) if stamp else 0.0
                if delay:
                    await asyncio.sleep(delay)  # this connection's later echoes wait too
                await ws.send(f"You said: {text}")
        elif path.startswith("/ws/"):
            name = path.removeprefix("/ws/").split("?", 1)[0]
            state.members.add(ws)
            try:
                async for text in ws:
                    broadcast(state.members, f"Client {name}: {text}")
            finally:
                state.members.discard(ws)
        else:
            await ws.close(1008, "no such endpoint")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}"
        yield state
