"""The article's surface keeps working exactly as the article shows."""

from __future__ import annotations

import asyncio
import urllib.request

import websockets

from tests.conftest import Server

# One server for the module (``shared_server``): each test has its own names (``tag``).


async def test_article_snippet_verbatim(shared_server: Server) -> None:
    # The article's own test, verbatim but for the port (its names are used nowhere else).
    port = shared_server.port

    async def test_broadcast() -> str:
        async with websockets.connect(f"ws://localhost:{port}/ws/client1") as ws1:
            async with websockets.connect(f"ws://localhost:{port}/ws/client2") as ws2:
                await ws1.send("Hello")
                msg = await ws2.recv()
                print(msg)  # "Client client1: Hello"
                return str(msg)

    async with asyncio.timeout(10):
        assert await test_broadcast() == "Client client1: Hello"


async def test_echo_text_and_binary(shared_server: Server) -> None:
    async with asyncio.timeout(10), websockets.connect(f"{shared_server.ws}/ws") as ws:
        await ws.send("hi there")
        assert await ws.recv() == "You said: hi there"
        await ws.send(b"\x00\x01")
        assert await ws.recv() == b"You said: \x00\x01"


async def test_broadcast_reaches_everyone_including_sender(shared_server: Server, tag: str) -> None:
    url = f"{shared_server.ws}/ws/c{{}}-{tag}?room=all-{tag}"
    async with asyncio.timeout(10):
        clients = [await websockets.connect(url.format(i)) for i in range(5)]
        try:
            await clients[2].send("ping all")
            for ws in clients:
                assert await ws.recv() == f"Client c2-{tag}: ping all"
        finally:
            for ws in clients:
                await ws.close()


async def test_rooms_are_separate(shared_server: Server, tag: str) -> None:
    ws_url = shared_server.ws
    async with asyncio.timeout(10):
        async with (
            websockets.connect(f"{ws_url}/ws/a-{tag}?room=red-{tag}") as a,
            websockets.connect(f"{ws_url}/ws/b-{tag}?room=blue-{tag}") as b,
        ):
            await a.send("in red")
            await b.send("in blue")
            assert await a.recv() == f"Client a-{tag}: in red"
            assert await b.recv() == f"Client b-{tag}: in blue"


async def test_binary_on_chat_closes_1003(shared_server: Server, tag: str) -> None:
    async with asyncio.timeout(10), websockets.connect(f"{shared_server.ws}/ws/x-{tag}") as ws:
        await ws.send(b"\xff")
        await ws.wait_closed()
        assert ws.close_code == 1003


def test_page_is_served(shared_server: Server) -> None:
    server = shared_server
    with urllib.request.urlopen(server.http + "/", timeout=5) as resp:
        body = resp.read().decode()
    assert resp.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js">' in body
    with urllib.request.urlopen(server.http + "/static/app.js", timeout=5) as resp:
        assert "new WebSocket(" in resp.read().decode()


def test_article_page_is_still_reachable(shared_server: Server) -> None:
    server = shared_server
    # The article's own page, a plain WebSocket echo on /ws, is linked from the chat page.
    with urllib.request.urlopen(server.http + "/static/echo.html", timeout=5) as resp:
        body = resp.read().decode()
    assert resp.headers["content-type"].startswith("text/html")
    assert "new WebSocket(`${scheme}://${location.host}/ws`)" in body
