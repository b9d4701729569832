"""A plain python-websockets server with ``broadcast()``: the near-limit Python reference.

Same surface as the article (echo at /ws, ``Client {id}: {text}`` broadcast at /ws/{id}),
written the way the websockets library recommends: ``broadcast()`` writes the same frame to
every connection without awaiting, and skips connections whose buffers are full.

    python benchmarks/websockets_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else "/"
    path = path.split("?", 1)[0]
    if path == "/ws":
        async for message in ws:
            await ws.send(f"You said: {message!s}")
        return
    client_id = path.removeprefix("/ws/")
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast(CLIENTS, f"Client {client_id}: {message!s}")
    finally:
        CLIENTS.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=65536, backlog=2048):
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
