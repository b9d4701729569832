"""The receive path on websockets' sans-I/O client, against a real server: frames, close, errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from wschat.bench.connection import BenchConnection, open_connection

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, int]]:
    async with serve(handler, "127.0.0.1", 0, compression=None, subprotocols=None) as srv:
        yield "127.0.0.1", next(iter(srv.sockets)).getsockname()[1]


async def connect(
    host: str, port: int, got: list[tuple[str, int]], path: str = "/ws"
) -> BenchConnection:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    conn = BenchConnection(
        f"ws://{host}:{port}{path}", None, "test", lambda t, now: got.append((t, now))
    )
    return await open_connection(sock, conn)


async def test_messages_pings_fragments_and_the_close_code() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)  # the client answered the ping
        await ws.send(["fr", "ag", "ment"])  # one text message in three frames
        await ws.send(b"bin\xff")
        await ws.send("h\u00e9")
        await ws.close(4001, "bye")

    got: list[tuple[str, int]] = []
    async with server(handler) as (host, port):
        async with asyncio.timeout(10):
            conn = await connect(host, port, got)
            ended: list[BenchConnection] = []
            conn.on_lost = ended.append
            await conn.lost
    assert [t for t, _ in got] == ["one", "fragment", "bin\ufffd", "h\u00e9"]
    assert all(now > 0 for _, now in got)
    assert conn.closed and ended == [conn]
    assert conn.close_kind() == "close 4001"


async def test_send_and_a_clean_close() -> None:
    async def echo(ws: ServerConnection) -> None:
        async for text in ws:
            await ws.send(f"You said: {text}")

    got: list[tuple[str, int]] = []
    async with server(echo) as (host, port):
        async with asyncio.timeout(10):
            conn = await connect(host, port, got)
            for i in range(50):
                assert await conn.send(f"m{i}")
            while len(got) < 50:
                await asyncio.sleep(0.01)
            await conn.close()
    assert [t for t, _ in got] == [f"You said: m{i}" for i in range(50)]
    assert conn.closed and conn.ws.close_code == 1000 and conn.close_kind() == "close 1000"
    assert not await conn.send("late")


async def test_a_refused_upgrade_raises_invalid_status() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close()

    async def refuse(connection: ServerConnection, request: object) -> object:
        return connection.respond(403, "no\n")

    async with serve(handler, "127.0.0.1", 0, process_request=refuse) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        with pytest.raises(InvalidStatus) as info:
            async with asyncio.timeout(10):
                await connect("127.0.0.1", port, [])
    assert info.value.response.status_code == 403


async def test_a_server_that_drops_the_connection_is_1006() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("hi")
        ws.transport.abort()

    got: list[tuple[str, int]] = []
    async with server(handler) as (host, port):
        async with asyncio.timeout(10):
            conn = await connect(host, port, got)
            await conn.lost
    assert conn.close_kind() == "close 1006 (no close frame)"


def _frames() -> tuple[bytes, list[str]]:
    def frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
        return Frame(opcode, data, fin).serialize(mask=False, extensions=[])

    stream = b"".join(
        [
            frame(Opcode.TEXT, b"short"),
            frame(Opcode.TEXT, "x\u00e9".encode() * 100),  # 16-bit length
            frame(Opcode.PING, b"p"),
            frame(Opcode.TEXT, b"fr", fin=False),
            frame(Opcode.PING, b"q"),  # a control frame inside a fragmented message
            frame(Opcode.CONT, b"ag", fin=False),
            frame(Opcode.CONT, b"ment"),
            frame(Opcode.BINARY, b"bin"),
            frame(Opcode.TEXT, b"y" * 70_000),  # 64-bit length
            frame(Opcode.TEXT, b""),
            frame(Opcode.TEXT, b"last"),
        ]
    )
    texts = ["short", "x\u00e9" * 100, "fragment", "bin", "y" * 70_000, "", "last"]
    return stream, texts


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100, 4096, 10**6])
async def test_frames_split_at_any_chunk_boundary(chunk: int) -> None:
    stream, texts = _frames()
    got: list[str] = []
    conn = BenchConnection("ws://127.0.0.1:1/ws", None, "test", lambda t, now: got.append(t))
    conn.ws = ClientProtocol(parse_uri("ws://127.0.0.1:1/ws"), state=State.OPEN)
    conn._framing = True  # as after the handshake
    for i in range(0, len(stream), chunk):
        conn.data_received(stream[i : i + chunk])
    assert got == texts
    assert not conn.closed and conn.ws.state is State.OPEN


class _Transport(asyncio.Transport):
    """Collects what the connection writes; the test plays the server."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False


def _accept(key: str) -> str:
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()  # RFC 6455 4.2.2


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7, 100, 10**6])
async def test_the_response_head_and_frames_in_the_same_reads(chunk: int) -> None:
    # the switch from ClientProtocol's parser to ours must land on the first frame's first
    # byte whatever the read boundaries, including ones inside the head's final CRLF CRLF
    stream, texts = _frames()
    got: list[str] = []
    conn = BenchConnection("ws://127.0.0.1:1/ws", ["v1"], "test", lambda t, now: got.append(t))
    transport = _Transport()
    conn.connection_made(transport)
    request = bytes(transport.written).decode()
    key = next(
        line.split(": ", 1)[1]
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {_accept(key)}\r\nSec-WebSocket-Protocol: v1\r\n\r\n"
    ).encode()
    data = head + stream
    for i in range(0, len(data), chunk):
        conn.data_received(data[i : i + chunk])
    assert conn.opened.done() and conn.opened.exception() is None
    assert conn.subprotocol == "v1"
    assert got == texts
    assert conn._framing and conn.ws.state is State.OPEN
