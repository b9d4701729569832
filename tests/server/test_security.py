"""Issue 7 over real sockets: tokens, origins, caps, deadlines, rate limits, bad frames."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import Server, serve_while
from tests.helpers import masked_frame, raw_handshake, wait_until
from tests.server.v1client import next_of, nothing_within, recv, say
from wschat.auth import issue_token

SECRET = "correct horse battery staple"


async def _status(url: str, **kwargs: Any) -> int:
    """Return the HTTP status a refused handshake got (fail if it was accepted)."""
    try:
        async with asyncio.timeout(5):
            ws = await websockets.connect(url, **kwargs)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    raise AssertionError(f"{url} was accepted")


async def _v1(
    server: Server, name: str, token: str, room: str | None = None, **kwargs: Any
) -> ClientConnection:
    query = "" if room is None else f"?room={room}"
    ws = await websockets.connect(
        f"{server.ws}/ws/{name}{query}",
        subprotocols=["wschat.v1", f"wschat.token.{token}"],  # type: ignore[list-item]
        **kwargs,
    )
    assert ws.subprotocol == "wschat.v1"
    assert (await recv(ws))["type"] == "welcome"
    return ws


# --- signed tokens ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with ``--secret``, shared by the token tests (own names and rooms via tag)."""
    yield from serve_while(tmp_path_factory, "--secret", SECRET)


async def test_without_a_valid_token_chat_is_refused_before_accept(
    secret_server: Server, tag: str
) -> None:
    server, alice = secret_server, f"alice-{tag}"
    url = f"{server.ws}/ws/{alice}"
    expired = issue_token(alice, SECRET, ttl_s=60, now=time.time() - 3600)
    async with asyncio.timeout(30):
        assert await _status(url) == 401  # missing
        assert await _status(url, subprotocols=["wschat.v1"]) == 401
        assert await _status(url, additional_headers={"Authorization": "Bearer x.y.z"}) == 401
        forged = issue_token(alice, "another secret")
        assert await _status(url, additional_headers={"Authorization": f"Bearer {forged}"}) == 401
        assert await _status(url, additional_headers={"Authorization": f"Bearer {expired}"}) == 401
        bobs = issue_token(f"bob-{tag}", SECRET)
        assert await _status(url, additional_headers={"Authorization": f"Bearer {bobs}"}) == 403
        assert await _status(f"{url}?token={bobs}") == 403
        # The echo endpoints are not chat: no token needed.
        async with websockets.connect(f"{server.ws}/ws") as echo:
            await echo.send("hi")
            assert await echo.recv() == "You said: hi"
    assert "Traceback" not in server.log()
    assert bobs not in server.log() and expired not in server.log()


async def test_each_way_of_presenting_a_token_works_and_none_is_logged(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--secret", SECRET)
    token = issue_token("alice", SECRET)
    async with asyncio.timeout(20):
        header = await websockets.connect(
            f"{server.ws}/ws/alice", additional_headers={"Authorization": f"Bearer {token}"}
        )  # a plain client
        browser = await _v1(server, "alice", token)  # the subprotocol entry
        query = await websockets.connect(f"{server.ws}/ws/alice?token={token}&resume=s3cr3t")
        await header.send("from the header")
        assert await header.recv() == "Client alice: from the header"
        assert (await next_of(browser, "message"))["text"] == "from the header"
        for ws in (header, browser, query):
            await ws.close()
    await asyncio.to_thread(_get, f"{server.http}/healthz?token={token}")
    await wait_until(lambda: "/ws/alice?token=***&resume=***" in server.log())
    server.stop()
    assert server.proc.stdout is not None
    log = server.log() + server.proc.stdout.read()  # uvicorn's access log goes to stdout
    assert "/healthz?token=***" in log
    assert token not in log and "s3cr3t" not in log


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200


async def test_a_signed_in_name_is_theirs_alone_but_on_several_devices(
    secret_server: Server, tag: str
) -> None:
    server, room, alice, bob_name = secret_server, f"devices-{tag}", f"alice-{tag}", f"bob-{tag}"
    alice_token = issue_token(alice, SECRET)
    async with asyncio.timeout(20):
        phone = await _v1(server, alice, alice_token, room=room)
        laptop = await _v1(server, alice, alice_token, room=room)
        bob = await _v1(server, bob_name, issue_token(bob_name, SECRET), room=room)
        # Nobody else can take the name: no token, or somebody else's token.
        assert await _status(f"{server.ws}/ws/{alice}?room={room}") == 401
        mallory = issue_token(f"mallory-{tag}", SECRET)
        assert await _status(f"{server.ws}/ws/{alice}?room={room}&token={mallory}") == 403
        # ...nor a look-alike of it.
        # (Latin small capital A: a Cyrillic a beside Latin letters is refused as mixed scripts.)
        lookalike = issue_token(f"\u1d00lice-{tag}", SECRET)
        ws = await websockets.connect(
            f"{server.ws}/ws/%E1%B4%80lice-{tag}?room={room}&token={lookalike}"
        )
        await ws.wait_closed()
        assert ws.close_code == 4009
        # Both devices get the room's messages and the DMs; bob sees one alice.
        await say(bob, "hi alice")
        for device in (phone, laptop):
            assert (await next_of(device, "message"))["text"] == "hi alice"
        await bob.send(json.dumps({"type": "dm", "to": alice, "text": "psst"}))
        for device in (phone, laptop):
            assert (await next_of(device, "dm"))["text"] == "psst"
        await bob.send(json.dumps({"type": "who"}))
        assert (await next_of(bob, "members"))["names"] == [alice, bob_name]
        # One device leaving is not alice leaving.
        await phone.close()
        await say(laptop, "still here")
        got = await next_of(bob, "message", "left")
        assert got["type"] == "message" and got["text"] == "still here"
        await laptop.close()
        assert (await next_of(bob, "left"))["name"] == alice
        await bob.close()


async def test_a_connection_is_closed_4011_when_its_token_expires(
    secret_server: Server, tag: str
) -> None:
    """v1 and plain connections close at their token's exp; a long token chats on (issue 15)."""
    server, room = secret_server, f"expiry-{tag}"
    alice_name, bob_name, carol_name = f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"
    bob = await _v1(server, bob_name, issue_token(bob_name, SECRET), room=room)  # an hour
    issued = time.time()
    short = issue_token(alice_name, SECRET, ttl_s=2)  # exp is a whole second: 1-2 s from now
    plain_token = issue_token(carol_name, SECRET, ttl_s=2)
    async with asyncio.timeout(15):
        alice = await _v1(server, alice_name, short, room=room)
        carol = await websockets.connect(
            f"{server.ws}/ws/{carol_name}?room={room}&token={plain_token}"
        )
        await say(alice, "before expiry", cid="a-1")
        acked = await next_of(alice, "message")
        assert acked["cid"] == "a-1" and acked["id"] > 0  # stored, acknowledged
        assert (await next_of(bob, "message"))["text"] == "before expiry"
        assert await carol.recv() == f"Client {alice_name}: before expiry"
        await carol.send("plain before expiry")
        assert await carol.recv() == f"Client {carol_name}: plain before expiry"
        for ws in (alice, carol):
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(4):
                    while True:
                        await ws.recv()
            assert (ws.close_code, ws.close_reason) == (4011, "token expired")
        assert time.time() - issued < 3.5
        # No presence grace (5 s) for an expired token: both leave at once.
        left = {(await next_of(bob, "left", within=2))["name"] for _ in range(2)}
        assert left == {alice_name, carol_name}
        await say(bob, "still here", cid="b-1")
        assert (await next_of(bob, "message"))["cid"] == "b-1"
        assert bob.close_code is None
        await bob.close()
    await wait_until(lambda: f"close {alice_name} room={room}" in server.log())
    assert "code=4011" in server.log() and "Traceback" not in server.log()


# --- origins ------------------------------------------------------------------------------------


async def test_only_allowed_browser_origins_may_connect(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--allow-origin", "https://chat.example.com")
    url = f"{server.ws}/ws/carol"
    async with asyncio.timeout(30):
        for evil in (
            "https://evil.example",
            "https://chat.example.com.evil.net",
            f"http://127.0.0.1:{server.port}.evil.net",
            "http://chat.example.com",
            "null",
        ):
            assert await _status(url, origin=evil) == 403, evil  # type: ignore[arg-type]
        for good in (f"http://127.0.0.1:{server.port}", "https://chat.example.com", None):
            async with websockets.connect(url, origin=good) as ws:  # type: ignore[arg-type]
                await ws.send("x")
                assert await ws.recv() == "Client carol: x"


# --- caps and deadlines -------------------------------------------------------------------------


async def test_connection_caps_refuse_before_accept(server_factory) -> None:  # type: ignore[no-untyped-def]
    total: Server = server_factory("--max-connections", "2")
    per_ip: Server = server_factory("--max-connections-per-ip", "1")
    async with asyncio.timeout(20):
        a = await websockets.connect(f"{total.ws}/ws")
        b = await websockets.connect(f"{total.ws}/ws/bee")
        assert await _status(f"{total.ws}/ws") == 503
        await a.close()
        await wait_until(lambda: _accepts(f"{total.ws}/echo"))  # the count went down
        await b.close()
        # A chat socket's place comes back too (its reader ends it, after the ASGI call).
        x = await websockets.connect(f"{total.ws}/ws/ex")
        await wait_until(lambda: _accepts(f"{total.ws}/echo"))
        await x.close()
        c = await websockets.connect(f"{per_ip.ws}/echo")
        assert await _status(f"{per_ip.ws}/ws") == 429
        await c.close()


def _accepts(url: str) -> bool:
    from websockets.sync.client import connect

    try:
        with connect(url, open_timeout=5):
            return True
    except websockets.InvalidStatus:
        return False


def _closed_within(sock: socket.socket, seconds: float) -> float:
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(1024):
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - start


async def test_idle_and_half_sent_handshakes_are_reaped(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--handshake-timeout", "0.5")
    idle = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    for sock in (idle, half):
        assert await asyncio.to_thread(_closed_within, sock, 5.0) < 4.0
        sock.close()
    # A completed handshake is not affected.
    async with asyncio.timeout(10), websockets.connect(f"{server.ws}/ws") as ws:
        await asyncio.sleep(1.0)
        await ws.send("late")
        assert await ws.recv() == "You said: late"


# --- rate limits --------------------------------------------------------------------------------


async def test_excess_messages_get_rate_limited_and_abuse_is_closed(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--rate-limit", "2", "--rate-burst", "5")
    async with asyncio.timeout(20):
        spammer = await _v1(server, "spammer", "")
        watcher = await _v1(server, "watcher", "")
        for i in range(8):
            await say(spammer, f"m{i}")
        seen = [await next_of(spammer, "message", "error") for _ in range(8)]
        assert [e["type"] for e in seen].count("message") == 5
        assert {e["code"] for e in seen if e["type"] == "error"} == {"rate_limited"}
        heard = [(await next_of(watcher, "message"))["text"] for _ in range(5)]
        assert heard == [f"m{i}" for i in range(5)]
        assert await nothing_within(watcher, 0.3) == []  # no error, no spill-over
        for i in range(30):  # keep going: closed 1008
            await say(spammer, f"more{i}")
        await spammer.wait_closed()
        assert spammer.close_code == 1008
        await say(watcher, "fine")
        assert (await next_of(watcher, "message"))["text"] == "fine"
        await watcher.close()


async def test_a_flooding_plain_client_is_closed_1008(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--rate-limit", "2", "--rate-burst", "3")
    async with asyncio.timeout(20), websockets.connect(f"{server.ws}/ws/flood") as ws:
        for i in range(40):
            await ws.send(f"x{i}")
        got = []
        try:
            while True:
                got.append(await ws.recv())
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 1008
        assert got == [f"Client flood: x{i}" for i in range(3)]


# --- malformed input ----------------------------------------------------------------------------


def _close_code(sock: socket.socket) -> int:
    sock.settimeout(5)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    # The server's close frame: 0x88, a length, then the code (servers do not mask).
    at = data.find(b"\x88")
    assert at >= 0, data
    return int.from_bytes(data[at + 2 : at + 4], "big")


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([masked_frame(0x1, b"\xff\xfe not utf-8")], 1007),
        ([masked_frame(0x1, "caf\u00e9".encode()[:-1])], 1007),  # truncated sequence
        ([bytes([0x80 | 0x40 | 0x1]) + masked_frame(0x1, b"rsv1")[1:]], 1002),  # reserved bit
        ([masked_frame(0x3, b"bad opcode")], 1002),
        ([masked_frame(0x0, b"lonely continuation")], 1002),
        (
            [masked_frame(0x1, b"a", fin=False)] + [masked_frame(0x0, b"a", fin=False)] * 70_000,
            1009,
        ),
    ],
    ids=[
        "invalid-utf8",
        "truncated-utf8",
        "rsv-bit",
        "bad-opcode",
        "continuation",
        "fragment-flood",
    ],
)
async def test_bad_frames_close_with_the_right_code(
    shared_server: Server, tag: str, frames: list[bytes], code: int
) -> None:
    server = shared_server  # one for the six cases: each counts its own line in the log
    closed_before = server.log().count(f"WebSocket closed {code}")
    bystander_url = f"{server.ws}/ws/bystander-{tag}?room=frames-{tag}"
    async with asyncio.timeout(20), websockets.connect(bystander_url) as bystander:
        sock = raw_handshake(server.port, f"/ws/culprit-{tag}?room=frames-{tag}")
        await asyncio.to_thread(sock.sendall, b"".join(frames))
        assert await asyncio.to_thread(_close_code, sock) == code
        sock.close()
        await bystander.send("unaffected")
        assert await bystander.recv() == f"Client bystander-{tag}: unaffected"
    log = server.log()
    assert "Traceback" not in log
    assert log.count(f"WebSocket closed {code}") == closed_before + 1
