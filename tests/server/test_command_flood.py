"""Issue 15: every wschat.v1 command costs a bounded amount per client, ``join`` included.

A client floods ``join``s from a raw socket that never reads; a bystander in another room
keeps chatting. The flooder is refused (``rate_limited``) and closed (1008, or 4001 when its
welcomes pile up unread), the server's memory stays put and the bystander loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.conftest import Server, serve_while
from tests.helpers import get_json, masked_frame, read_upgrade, wait_until
from tests.server.attacker import Frames, close_code, connect, upgrade_head
from tests.server.v1client import connect as v1_connect
from tests.server.v1client import next_of, nothing_within, say

MB = 1024 * 1024
JOINS = 200
BIG_TEXT = "€" * 4000  # one history message at its longest (12 KB of UTF-8)


def flooder(server: Server, room: str) -> socket.socket:
    """A v1 socket in ``room`` with a small receive buffer, never read until asked."""
    sock = connect(server.port, rcvbuf=4096)
    sock.sendall(
        upgrade_head(
            server.port, f"/ws/mallory?room={room}", "Sec-WebSocket-Protocol: wschat.v1\r\n"
        )
    )
    read_upgrade(sock)
    return sock


def flood_joins(sock: socket.socket, room: str) -> int:
    """Send ``JOINS`` joins as fast as the socket takes them; return how many went out."""
    frame = masked_frame(0x1, json.dumps({"type": "join", "room": room}).encode())
    sent = 0
    try:
        for _ in range(JOINS):
            sock.sendall(frame)
            sent += 1
    except OSError:
        pass  # closed by the server mid-flood
    return sent


def read_until_closed(
    sock: socket.socket, within: float = 8.0
) -> tuple[list[dict[str, Any]], int | None]:
    """Read the server's frames until its close frame or EOF: (text events, close code)."""
    frames = Frames()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        for _fin, opcode, payload in frames.feed(data):
            if opcode == 0x1:
                events.append(json.loads(payload))
            elif opcode == 0x8:
                return events, close_code(payload)
    return events, None


def closed_by(server: Server) -> dict[str, int]:
    """Connections closed so far by close code, but for clean closes (1000: the bystanders)."""
    counts: dict[str, int] = get_json(f"{server.http}/healthz")["closed_by_code"]
    return {code: n for code, n in counts.items() if code != "1000"}


async def chat_meanwhile(server: Server, stop: asyncio.Event) -> tuple[int, dict[str, int]]:
    """Say with a ``cid`` every 50 ms in room ``calm`` until ``stop``; return (sent, acks by cid)."""
    ws, _ = await v1_connect(server, "bob", room="calm")
    acks: dict[str, int] = {}
    sent = 0

    async def read() -> None:
        while True:
            event = await next_of(ws, "message", within=30)
            cid = event.get("cid")
            if cid is not None:
                acks[cid] = acks.get(cid, 0) + 1

    reader = asyncio.create_task(read())
    while not stop.is_set() or sent < 20:
        await say(ws, f"still here {sent}", cid=f"b{sent}")
        sent += 1
        await asyncio.sleep(0.05)
    await wait_until(lambda: len(acks) >= sent, within=10)
    await asyncio.sleep(0.3)  # a duplicate would arrive by now
    reader.cancel()
    await ws.close()
    return sent, acks


async def attack(
    server: Server, room: str
) -> tuple[list[dict[str, Any]], int | None, int, tuple[int, dict[str, int]]]:
    """Flood joins into ``room`` while a bystander chats; return what the flooder saw, the
    peak RSS growth, and the bystander's (sent, acks)."""
    proc = psutil.Process(server.proc.pid)
    sock = await asyncio.to_thread(flooder, server, room)
    stop = asyncio.Event()
    bystander = asyncio.create_task(chat_meanwhile(server, stop))
    await asyncio.sleep(0.5)
    before = proc.memory_info().rss
    peak = before
    try:
        flood = asyncio.create_task(asyncio.to_thread(flood_joins, sock, room))
        deadline = time.monotonic() + 10
        while not closed_by(server) and time.monotonic() < deadline:
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.02)
        assert closed_by(server), f"not closed in 10 s; RSS grew {(peak - before) / MB:.1f} MB"
        await flood
        for _ in range(25):  # what the closed socket's replies left behind, if anything
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.02)
        events, code = await asyncio.to_thread(read_until_closed, sock)
    finally:
        sock.close()
        stop.set()
    return events, code, peak - before, await bystander


async def fill_history(server: Server, room: str, count: int) -> None:
    ws, _ = await v1_connect(server, "writer", room=room)
    for i in range(count):
        await say(ws, BIG_TEXT, cid=f"w{i}")
    for _ in range(count):
        await next_of(ws, "message")
    await ws.close()


async def test_a_join_flood_is_rate_limited_and_closed_1008(server: Server) -> None:
    async with asyncio.timeout(40):
        events, code, growth, (sent, acks) = await attack(server, "spam")
    refused = [e for e in events if e["type"] == "error" and e["code"] == "rate_limited"]
    assert refused, events[:5]
    assert code == 1008
    assert closed_by(server) == {"1008": 1}
    assert "closing mallory: rate limit exceeded" in server.log()
    assert growth < 4 * MB
    assert acks == {f"b{i}": 1 for i in range(sent)}


@pytest.mark.slow
async def test_a_join_flood_into_a_room_with_history_costs_no_memory(server: Server) -> None:
    # Each join queues a welcome with the room's last 40 messages (480 KB): unread, those
    # piled up, one per join the rate limiter let through (its burst alone is 40: 19 MB).
    async with asyncio.timeout(60):
        await fill_history(server, "big", 40)
        _events, code, growth, (sent, acks) = await attack(server, "big")
    assert code in (1008, 4001, None)  # 4001 drops what was queued, close frame included
    assert set(closed_by(server)) <= {"1008", "4001"} and sum(closed_by(server).values()) == 1
    assert growth < 6 * MB, f"server RSS grew {growth / MB:.1f} MB"
    assert acks == {f"b{i}": 1 for i in range(sent)}
    assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``--rate-limit 1 --rate-burst 5``, shared by the per-command cases (own names and rooms)."""
    yield from serve_while(tmp_path_factory, "--rate-limit", "1", "--rate-burst", "5")


@pytest.mark.parametrize(
    "command",
    [
        {"type": "say", "text": "hi"},
        {"type": "join", "room": "elsewhere-{tag}"},
        {"type": "dm", "to": "{name}", "text": "note to self"},
        {"type": "who"},
        {"type": "nonsense"},
    ],
    ids=lambda c: str(c["type"]),
)
async def test_every_v1_command_counts_against_the_rate_limit(
    limited_server: Server, tag: str, command: dict[str, str]
) -> None:
    # --rate-limit 1 --rate-burst 5: of 13 commands sent at once, 8 are refused (short of
    # the 11 strikes that close the connection).
    server, name = limited_server, f"mallory-{tag}"
    frame = json.dumps({k: v.format(name=name, tag=tag) for k, v in command.items()})
    async with asyncio.timeout(20):
        ws, _ = await v1_connect(server, name, room=f"cmd-{tag}")
        for _ in range(13):
            await ws.send(frame)
        refused = 0
        while refused < 8:
            event = await next_of(ws, "error")
            if event["code"] == "rate_limited":
                refused += 1
        later = await nothing_within(ws, 0.5)
        assert ws.close_code is None  # refused, not closed
        await ws.close()
    assert refused == 8
    assert not [e for e in later if e.get("code") == "rate_limited"]
