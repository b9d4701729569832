"""Small helpers the tests share: HTTP GETs, raw sockets, waiting on a condition, history."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Debian's chromium, launched by Playwright with ``executable_path`` (no ``playwright install``),
# with the flags every browser test uses: no sandbox (root in CI), nothing fetched by itself.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def default_signals() -> None:
    """``preexec_fn`` for every child a test signals: default SIGINT, SIGTERM and SIGQUIT.

    A shell without job control starts ``pytest &`` (and so ``nohup pytest &`` in a script or
    CI step) with SIGINT and SIGQUIT ignored, and children inherit ignored signals and the
    blocked mask. A Python child would then never raise KeyboardInterrupt on ``SIGINT``, and a
    test that signals it would hang or fail only when launched that way.
    """
    stop = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
    for sig in stop:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def wait_until(
    predicate: Callable[[], bool], within: float = 10.0, step: float = 0.05
) -> None:
    """Poll ``predicate`` (run in a thread so it may block) until true; fail after ``within`` s."""
    async with asyncio.timeout(within):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(step)


def raw_handshake(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    """Open a WebSocket with a bare socket (never reading afterwards unless asked)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    read_upgrade(sock)
    return sock


def read_upgrade(sock: socket.socket) -> bytes:
    """Read a handshake's response head byte by byte (nothing after it); raise unless 101."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    return head


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """Build one client-to-server frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0), as a crashed peer would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def fill(db: Path, room: str, count: int, text: str) -> None:
    """Store ``count`` messages in ``room`` straight into the server's history file."""
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO messages (room, id, sender, text, ts) VALUES (?, ?, 'writer', ?, 0)",
            ((room, i, f"{i} {text}") for i in range(1, count + 1)),
        )
