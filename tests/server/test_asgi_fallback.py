"""The same WebSocket behaviour on both paths: wschat's transport, and stock uvicorn.

``wschat serve`` runs the app with wschat's protocol classes (direct writes, detached chat
sockets; see server/transport/). Under any other ASGI server the app finds no
``wschat.transport`` extension and falls back to ASGI sends and one task per socket. Each
test here runs against both, parametrised the way uvicorn's suite runs every WebSocket test
over every implementation: ``wschat serve`` and ``create_app`` under stock uvicorn.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
import websockets

from tests.conftest import Server, serve_while
from tests.helpers import default_signals, get_json, masked_frame, raw_handshake, wait_until
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


def _connections(server: Server) -> int:
    return int(get_json(f"{server.http}/healthz")["connections"])


@pytest.fixture(scope="module", params=["wschat", "stock"])
def stock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on either path, with the same settings (no rate limit, an outbox of 8).

    One of each for the module (pytest runs the tests of one path, then the other's): each
    test has its own names and rooms (``tag``), and one that counts connections first waits
    for the previous test's to be gone.
    """
    if request.param == "wschat":
        yield from serve_while(tmp_path_factory, "--rate-limit", "0", "--outbox-size", "8")
        return
    tmp_path = tmp_path_factory.mktemp("stock")
    log_path = tmp_path / "stock.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_STOCK, str(tmp_path / "history.sqlite3")],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            preexec_fn=default_signals,  # server.stop() signals it
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


async def test_article_routes_work_on_both_paths(stock: Server, tag: str) -> None:
    url = f"{stock.ws}/ws/{{}}-{tag}?room=article-{tag}"
    async with asyncio.timeout(20):
        await wait_until(lambda: _connections(stock) == 0)  # the previous test's are gone
        async with (
            websockets.connect(url.format("ann")) as ann,
            websockets.connect(url.format("bob")) as bob,
            websockets.connect(f"{stock.ws}/ws") as echo,
        ):
            await ann.send("hello")
            assert await bob.recv() == f"Client ann-{tag}: hello"
            assert await ann.recv() == f"Client ann-{tag}: hello"
            await echo.send("ping")
            assert await echo.recv() == "You said: ping"
            assert _connections(stock) == 3
        await wait_until(lambda: _connections(stock) == 0)
    assert "Traceback" not in stock.log()


async def test_v1_and_slow_consumers_work_on_both_paths(stock: Server, tag: str) -> None:
    room, ann_name, bob_name = f"v1-{tag}", f"ann-{tag}", f"bob-{tag}"
    async with asyncio.timeout(40):
        ann, welcome = await connect(stock, ann_name, room=room)
        assert welcome["members"] == [ann_name]
        bob, _ = await connect(stock, bob_name, room=room)
        await say(ann, "hi bob")
        event = await next_of(bob, "message")
        assert (event["from"], event["text"]) == (ann_name, "hi bob")
        await ann.close()
        await bob.close()
        # A reader that never reads cannot stall the room: its outbox (8 here) overflows and
        # it is closed with 4001, while the others keep getting everything. (The only test
        # of the module that makes a slow consumer: the server's count is this test's.)
        stalled = raw_handshake(stock.port, f"/ws/stalled-{tag}?room=slow-{tag}", rcvbuf=4096)
        payload = "x" * 30_000
        sender_url = f"{stock.ws}/ws/sender-{tag}?room=slow-{tag}"
        async with websockets.connect(sender_url, max_size=None) as sender:
            for i in range(200):  # ~6 MB: more than the socket buffers and outbox hold
                await sender.send(f"{i} {payload}")
                assert await sender.recv() == f"Client sender-{tag}: {i} {payload}"
            health = get_json(f"{stock.http}/healthz")
            assert health["slow_consumers"] == 1
        stalled.close()
        await wait_until(lambda: _connections(stock) == 0)
    assert "Traceback" not in stock.log()


async def test_resume_since_replays_what_was_missed_on_both_paths(stock: Server, tag: str) -> None:
    room = f"r-{tag}"
    async with asyncio.timeout(20):
        ann, _ = await connect(stock, f"ann-{tag}", room=room)
        for text in ("one", "two", "three"):
            await say(ann, text)
            await next_of(ann, "message")
        await ann.close()
        bob, welcome = await connect(stock, f"bob-{tag}", room=room, since=1)
        assert (welcome["latest"], welcome["gap"]) == (3, False)
        replayed = [await next_of(bob, "message") for _ in range(2)]
        assert [(m["id"], m["text"]) for m in replayed] == [(2, "two"), (3, "three")]
        await bob.close()
    assert "Traceback" not in stock.log()


async def test_foreign_origins_are_refused_before_accept_on_both_paths(
    stock: Server, tag: str
) -> None:
    async with asyncio.timeout(10):
        await wait_until(lambda: _connections(stock) == 0)  # the previous test's are gone
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                f"{stock.ws}/ws/mallory-{tag}", origin="https://evil.example"
            ):
                pass
        assert refused.value.response.status_code == 403
        assert _connections(stock) == 0


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked_frame(0x1, b"\xff\xfe not utf-8"), 1007),
        (masked_frame(0x3, b"bad opcode"), 1002),
    ],
    ids=["invalid-utf8", "bad-opcode"],
)
async def test_bad_frames_close_with_their_code_on_both_paths(
    stock: Server, tag: str, frame: bytes, code: int
) -> None:
    url = f"{stock.ws}/ws/bystander-{tag}?room=frames-{tag}"
    async with asyncio.timeout(10), websockets.connect(url) as bystander:
        sock = raw_handshake(stock.port, f"/ws/culprit-{tag}?room=frames-{tag}")
        sock.sendall(frame)
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        sock.close()
        at = data.find(b"\x88")
        assert at >= 0 and int.from_bytes(data[at + 2 : at + 4], "big") == code
        await bystander.send("unaffected")
        assert await bystander.recv() == f"Client bystander-{tag}: unaffected"
