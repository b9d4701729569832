"""The per-socket loops: read frames, act on them, and always clean up.

Each loop accepts the socket, registers a ``Connection`` with the hub, starts its writer and
reads until the peer disconnects. Whatever ends the loop (a close, a reset, an error), the
``finally`` stops the writer and removes the connection, so nothing outlives the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.websockets import WebSocket

from wschat.protocol import DEFAULT_ROOM, CloseCode, echo_bytes, echo_text, plain_line
from wschat.server.connection import Connection, Message
from wschat.server.hub import Hub
from wschat.server.settings import ServerSettings

log = logging.getLogger("wschat.server")

OnFrame = Callable[[Connection, MutableMapping[str, Any]], None]


async def run_connection(conn: Connection, hub: Hub, on_frame: OnFrame) -> None:
    """Read ``conn`` until it disconnects, calling ``on_frame`` for each data frame.

    ``on_frame`` must not await: it queues replies with ``offer``/``hub.deliver``. An
    unexpected error in it is logged with its traceback and closes the socket with 1011.
    """
    receive = conn.websocket.receive
    code: int | None = None
    hub.add(conn)
    conn.start()
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", CloseCode.NORMAL))
                break
            try:
                on_frame(conn, message)
            except Exception:
                log.exception("error handling a frame from %s", conn.name)
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        await conn.stop()
        hub.remove(conn, code)


def _connection(websocket: WebSocket, name: str, room: str | None, s: ServerSettings) -> Connection:
    return Connection(
        websocket,
        name,
        room,
        v1=False,
        outbox_size=s.outbox_size,
        close_timeout_s=s.close_timeout_s,
    )


async def serve_echo(websocket: WebSocket, hub: Hub, settings: ServerSettings) -> None:
    """Echo each frame back as ``You said: ...``: text as text, binary as binary."""
    await websocket.accept()

    def on_frame(conn: Connection, message: MutableMapping[str, Any]) -> None:
        text = message.get("text")
        if text is not None:
            reply: Message = {"type": "websocket.send", "text": echo_text(text)}
        else:
            reply = {"type": "websocket.send", "bytes": echo_bytes(message.get("bytes") or b"")}
        if not conn.offer(reply):
            hub.slow_consumers += 1
            conn.close(CloseCode.SLOW_CONSUMER, "outbox full", flush=False)

    await run_connection(_connection(websocket, "echo", None, settings), hub, on_frame)


async def serve_chat(
    websocket: WebSocket, client_id: str, hub: Hub, settings: ServerSettings
) -> None:
    """Broadcast each text frame as ``Client {client_id}: {text}`` to the room, sender included."""
    room = websocket.query_params.get("room") or DEFAULT_ROOM
    await websocket.accept()

    def on_frame(conn: Connection, message: MutableMapping[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported here")
            return
        line: Message = {"type": "websocket.send", "text": plain_line(conn.name, text)}
        hub.deliver(hub.members(room), line)

    await run_connection(_connection(websocket, client_id, room, settings), hub, on_frame)
