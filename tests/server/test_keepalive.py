"""Keepalive pings: a peer that stops answering is closed, one that answers stays."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import websockets

from tests.conftest import Server, serve_while
from tests.helpers import get_json, raw_handshake, wait_until


def _read_frames_until_eof(sock: socket.socket, within: float) -> list[tuple[int, bytes]]:
    """Read server frames (unmasked, short) until the server closes; return (opcode, payload)."""
    frames: list[tuple[int, bytes]] = []
    buf = b""
    deadline = time.monotonic() + within
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            return frames
        buf += chunk
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            size = buf[1] & 0x7F
            frames.append((buf[0] & 0x0F, buf[2 : 2 + size]))
            buf = buf[2 + size :]
    raise AssertionError(f"the server did not close the silent peer; frames: {frames}")


@pytest.fixture(scope="module")
def pinging_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Pings every 0.3 s, answers due within 0.3 s: shared by both tests.

    Each leaves no connection open behind it (the first waits for none to be left), so the
    other's count of the server's connections is its own.
    """
    yield from serve_while(tmp_path_factory, "--ping-interval", "0.3", "--ping-timeout", "0.3")


async def test_a_peer_that_never_answers_pings_is_closed(pinging_server: Server) -> None:
    server = pinging_server
    silent = raw_handshake(server.port, "/ws/silent")  # reads, but never answers a ping
    try:
        frames = await asyncio.to_thread(_read_frames_until_eof, silent, 10.0)
    finally:
        silent.close()
    opcodes = [op for op, _ in frames]
    assert 0x9 in opcodes, frames  # it was pinged ...
    close = [payload for op, payload in frames if op == 0x8]
    assert close and int.from_bytes(close[0][:2], "big") == 1011, frames  # ... then closed
    await wait_until(lambda: get_json(f"{server.http}/healthz")["connections"] == 0)


async def test_peers_that_answer_pings_stay_connected(pinging_server: Server) -> None:
    server = pinging_server
    async with (
        websockets.connect(f"{server.ws}/ws/ann") as ann,
        websockets.connect(f"{server.ws}/ws/bob") as bob,
    ):
        await asyncio.sleep(2.0)  # several ping rounds, each answered by the client library
        assert get_json(f"{server.http}/healthz")["connections"] == 2
        await ann.send("still here")
        assert await asyncio.wait_for(bob.recv(), 5) == "Client ann: still here"
