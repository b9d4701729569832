"""A fake transport and socket for in-process tests of the connection and chat layers.

``FakeTransport`` satisfies ``wschat.server.transport.extension.Transport``: it records the
frames written, the closes and aborts, and what the reader asked of reading; ``full`` makes
``can_write()`` say the socket buffer is full. No socket, no event-loop I/O.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from wschat.server.conn.connection import Connection
from wschat.server.conn.outgoing import Outgoing
from wschat.server.transport.asgi import AsgiEvent, Scope
from wschat.server.transport.extension import TRANSPORT_EXTENSION, Sink, Transport


class FakeTransport:
    def __init__(self) -> None:
        self.on_writable: Callable[[], None] | None = None
        self.full = False
        self.writes: list[bytes] = []  # one entry per write_frame call
        self.closes: list[tuple[int, str]] = []
        self.aborted = False
        self.sink: Sink | None = None
        self.holds: list[bool] = []
        self.on_close: Callable[[int, str], None] | None = None  # e.g. the peer answers at once

    def can_write(self) -> bool:
        return not self.full

    def write_frame(self, frame: bytes) -> None:
        if self.full:
            raise AssertionError("write_frame while can_write() is False")
        self.writes.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        if self.on_close is not None:
            self.on_close(code, reason)

    def abort(self) -> None:
        self.aborted = True

    def detach(self, sink: Sink) -> None:
        self.sink = sink

    def hold_reading(self, hold: bool) -> None:
        self.holds.append(hold)

    def payloads(self) -> list[bytes]:
        """Return the payload of every frame written, in order (frames may share a write)."""
        return parse_frames(b"".join(self.writes))

    def texts(self) -> list[str]:
        return [p.decode() for p in self.payloads()]

    def events(self) -> list[dict[str, Any]]:
        """Return the JSON events written (v1 frames)."""
        return [json.loads(text) for text in self.texts()]


def parse_frames(data: bytes) -> list[bytes]:
    """Split unmasked server frames (RFC 6455 §5.2) into their payloads."""
    payloads = []
    i = 0
    while i < len(data):
        length = data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif length == 127:
            length = int.from_bytes(data[i : i + 8], "big")
            i += 8
        payloads.append(data[i : i + length])
        i += length
    return payloads


class FakeSocket:
    """An accepted ASGI WebSocket (``conn.connection.Socket``); with a transport or without."""

    def __init__(self, transport: Transport | None = None, port: int = 5000) -> None:
        self.scope: Scope = {"type": "websocket", "client": ("127.0.0.1", port)}
        if transport is not None:
            self.scope["extensions"] = {TRANSPORT_EXTENSION: {"transport": transport}}
        self.incoming: asyncio.Queue[AsgiEvent] = asyncio.Queue()
        self.sent: list[AsgiEvent] = []

    async def receive(self) -> AsgiEvent:
        return await self.incoming.get()

    async def send(self, message: AsgiEvent) -> None:
        self.sent.append(message)


def stall(conn: Connection, transport: FakeTransport) -> None:
    """Make ``conn`` a slow consumer: its socket buffer is full, and so is its outbox."""
    transport.full = True
    while conn.offer(Outgoing("filler")):
        pass


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (wrap in ``asyncio.timeout``)."""
    while not predicate():
        await asyncio.sleep(0)


def text(data: str) -> AsgiEvent:
    return {"type": "websocket.receive", "text": data}
