"""The app keeps working as a plain ASGI app, under uvicorn's own WebSocket protocol.

``wschat serve`` runs the app with wschat's protocol class (direct writes, detached chat
sockets; see server/wsprotocol.py). Under any other ASGI server the app finds no
``wschat.transport`` extension and falls back to ASGI sends and one task per socket. These
tests run ``create_app`` under stock uvicorn to keep that path honest.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.conftest import Server
from tests.helpers import get_json, raw_handshake, wait_until
from tests.server.v1client import connect, next_of, say

RUN_STOCK = """
import socket, sys, uvicorn
from wschat.server.app import create_app
from wschat.server.settings import ServerSettings
sock = socket.create_server(("127.0.0.1", 0))
print("listening on http://127.0.0.1:%d" % sock.getsockname()[1], flush=True)
app = create_app(ServerSettings(db=sys.argv[1], rate_per_s=0, outbox_size=8))
# uvicorn's own protocol class and interface detection: nothing of wschat's runner.
config = uvicorn.Config(app, ws="websockets-sansio", lifespan="on", log_level="warning")
uvicorn.Server(config).run(sockets=[sock])
"""


@pytest.fixture
def stock(tmp_path: Path) -> Iterator[Server]:
    log_path = tmp_path / "stock.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_STOCK, str(tmp_path / "history.sqlite3")],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on " in line, log_path.read_text()
    server = Server(proc, line.strip().rsplit(" ", 1)[1], log_path)
    try:
        yield server
    finally:
        server.stop()
        proc.stdout.close()


async def test_article_routes_work_under_stock_uvicorn(stock: Server) -> None:
    async with asyncio.timeout(20):
        async with (
            websockets.connect(f"{stock.ws}/ws/ann") as ann,
            websockets.connect(f"{stock.ws}/ws/bob") as bob,
            websockets.connect(f"{stock.ws}/ws") as echo,
        ):
            await ann.send("hello")
            assert await bob.recv() == "Client ann: hello"
            assert await ann.recv() == "Client ann: hello"
            await echo.send("ping")
            assert await echo.recv() == "You said: ping"
            assert get_json(f"{stock.http}/healthz")["connections"] == 3
        await wait_until(lambda: get_json(f"{stock.http}/healthz")["connections"] == 0)
    assert "Traceback" not in stock.log()


async def test_v1_and_slow_consumers_work_under_stock_uvicorn(stock: Server) -> None:
    async with asyncio.timeout(40):
        ann, welcome = await connect(stock, "ann")
        assert welcome["members"] == ["ann"]
        bob, _ = await connect(stock, "bob")
        await say(ann, "hi bob")
        event = await next_of(bob, "message")
        assert (event["from"], event["text"]) == ("ann", "hi bob")
        await ann.close()
        await bob.close()
        # A reader that never reads cannot stall the room: its outbox (8 here) overflows and
        # it is closed with 4001, while the others keep getting everything.
        stalled = raw_handshake(stock.port, "/ws/stalled", rcvbuf=4096)
        payload = "x" * 30_000
        async with websockets.connect(f"{stock.ws}/ws/sender", max_size=None) as sender:
            for i in range(200):  # ~6 MB: more than the socket buffers and outbox hold
                await sender.send(f"{i} {payload}")
                assert await sender.recv() == f"Client sender: {i} {payload}"
            health = get_json(f"{stock.http}/healthz")
            assert health["slow_consumers"] == 1
        stalled.close()
        await wait_until(lambda: get_json(f"{stock.http}/healthz")["connections"] == 0)
    assert "Traceback" not in stock.log()
