"""A minimal plain WebSocket server for the load tester's tests: the article's two endpoints.

``/ws`` echoes ``You said: T``; ``/ws/{id}`` broadcasts ``Client {id}: T`` to every connected
client, sender included. ``stall`` lets a test delay chosen echoes to make a slow server;
``close_at(sender, seq)`` returning ``(victim, code)`` makes the server close connection
``victim`` (the bench's index; on ``/ws`` only the sender itself) with ``code`` when that
message arrives, instead of passing the message on to it. ``drop(sender, seq, receiver)``
returning True makes ``/ws/{id}`` leave that receiver out of that message's broadcast.
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
    close_at: Callable[[int, int], tuple[int, int] | None] = lambda sender, seq: None
    drop: Callable[[int, int, int], bool] | None = None
    members: set[ServerConnection] = field(default_factory=set)
    by_index: dict[int, ServerConnection] = field(default_factory=dict)
    index_of: dict[ServerConnection, int] = field(default_factory=dict)


@asynccontextmanager
async def plain_server(
    stall: Callable[[int, int], float] | None = None,
    close_at: Callable[[int, int], tuple[int, int] | None] | None = None,
    drop: Callable[[int, int, int], bool] | None = None,
) -> AsyncIterator[PlainServer]:
    """Serve on a free 127.0.0.1 port for the duration of the block."""
    state = PlainServer("", drop=drop)
    if stall is not None:
        state.stall = stall
    if close_at is not None:
        state.close_at = close_at

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/"
        if path == "/ws":
            async for text in ws:
                stamp = find_stamp(str(text))
                victim = state.close_at(stamp.sender, stamp.seq) if stamp else None
                if victim is not None:
                    await ws.close(victim[1], "closed by the test")
                    return
                delay = state.stall(stamp.sender, stamp.seq) if stamp else 0.0
                if delay:
                    await asyncio.sleep(delay)  # this connection's later echoes wait too
                await ws.send(f"You said: {text}")
        elif path.startswith("/ws/"):
            name = path.removeprefix("/ws/").split("?", 1)[0]
            index = name.rpartition("-")[2]
            if index.isdigit():
                state.by_index[int(index)] = ws
                state.index_of[ws] = int(index)
            state.members.add(ws)
            try:
                async for text in ws:
                    stamp = find_stamp(str(text))
                    victim = state.close_at(stamp.sender, stamp.seq) if stamp else None
                    if victim is not None and victim[0] in state.by_index:
                        gone = state.by_index[victim[0]]
                        state.members.discard(gone)
                        await gone.close(victim[1], "closed by the test")
                    to = state.members
                    if state.drop is not None and stamp is not None:
                        drop = state.drop
                        to = {
                            m
                            for m in to
                            if not drop(stamp.sender, stamp.seq, state.index_of.get(m, -1))
                        }
                    broadcast(to, f"Client {name}: {text}")
            finally:
                state.members.discard(ws)
        else:
            await ws.close(1008, "no such endpoint")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}"
        yield state
