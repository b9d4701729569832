"""The wschat.v1 JSON protocol against a real server: rooms, DMs, presence, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.conftest import Server
from tests.server.v1client import connect, next_of, nothing_within, say


async def test_welcome_names_the_protocol_and_members(server: Server) -> None:
    async with asyncio.timeout(10):
        bob, _ = await connect(server, "bob")
        alice, welcome = await connect(server, "alice")
        assert alice.subprotocol == "wschat.v1"
        assert welcome["name"] == "alice"
        assert welcome["room"] == "lobby"
        assert welcome["members"] == ["alice", "bob"]
        assert welcome["latest"] == 0
        assert welcome["replay"] == 0
        assert welcome["gap"] is False
        assert isinstance(welcome["token"], str) and len(welcome["token"]) >= 16
        assert await next_of(bob, "joined") == {"type": "joined", "room": "lobby", "name": "alice"}
        await alice.close()
        await bob.close()


async def test_say_reaches_every_member_with_growing_ids(server: Server) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        bob, _ = await connect(server, "bob")
        await say(alice, "one", **{"from": "mallory"})  # "from" is never taken from the client
        first_for_bob = await next_of(bob, "message")
        await say(bob, "two")
        for ws in (alice, bob):
            first = first_for_bob if ws is bob else await next_of(ws, "message")
            second = await next_of(ws, "message")
            assert (first["id"], first["from"], first["text"]) == (1, "alice", "one")
            assert (second["id"], second["from"], second["text"]) == (2, "bob", "two")
            assert first["room"] == "lobby"
            assert isinstance(first["ts"], float)
        await say(alice, "waves", action=True)
        assert (await next_of(bob, "message"))["action"] is True
        await alice.close()
        await bob.close()


async def test_direct_messages_reach_both_ends_only(server: Server) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        bob, _ = await connect(server, "bob", room="elsewhere")
        carol, _ = await connect(server, "carol")
        await alice.send(json.dumps({"type": "dm", "to": "bob", "text": "psst"}))
        for ws in (alice, bob):
            event = await next_of(ws, "dm")
            assert (event["from"], event["to"], event["text"]) == ("alice", "bob", "psst")
        assert [e for e in await nothing_within(carol, 0.3) if e["type"] == "dm"] == []
        await alice.send(json.dumps({"type": "dm", "to": "nobody", "text": "hello?"}))
        error = await next_of(alice, "error")
        assert error["code"] == "no_such_user"
        for ws in (alice, bob, carol):
            await ws.close()


async def test_join_moves_rooms_with_presence(server: Server) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        bob, _ = await connect(server, "bob")
        ops, _ = await connect(server, "olga", room="ops")
        await bob.send(json.dumps({"type": "join", "room": "ops"}))
        welcome = await next_of(bob, "welcome")
        assert welcome["room"] == "ops"
        assert welcome["members"] == ["bob", "olga"]
        assert await next_of(alice, "left") == {"type": "left", "room": "lobby", "name": "bob"}
        assert await next_of(ops, "joined") == {"type": "joined", "room": "ops", "name": "bob"}
        await say(bob, "hi ops")
        assert (await next_of(ops, "message"))["text"] == "hi ops"
        assert [e for e in await nothing_within(alice, 0.3) if e["type"] == "message"] == []
        await bob.send(json.dumps({"type": "who"}))
        assert await next_of(bob, "members") == {
            "type": "members",
            "room": "ops",
            "names": ["bob", "olga"],
        }
        for ws in (alice, bob, ops):
            await ws.close()


async def test_plain_and_v1_clients_share_a_room(server: Server) -> None:
    async with asyncio.timeout(10):
        v1, _ = await connect(server, "alice")
        async with websockets.connect(f"{server.ws}/ws/plainpete") as plain:
            assert (await next_of(v1, "joined"))["name"] == "plainpete"
            await plain.send("hello from plain")
            event = await next_of(v1, "message")
            assert (event["from"], event["text"]) == ("plainpete", "hello from plain")
            assert await plain.recv() == "Client plainpete: hello from plain"
            await say(v1, "hello from v1")
            assert await plain.recv() == "Client alice: hello from v1"
            # Presence changes and DMs never reach a plain client as JSON.
            other, _ = await connect(server, "carol")
            await other.close()
            await v1.send(json.dumps({"type": "dm", "to": "plainpete", "text": "psst"}))
            assert await plain.recv() == "DM from alice: psst"
            await say(v1, "last")
            assert await plain.recv() == "Client alice: last"
        assert (await next_of(v1, "left"))["name"] == "carol"
        assert (await next_of(v1, "left"))["name"] == "plainpete"
        await v1.close()


BAD_FRAMES = [
    ("this is not json", "bad_json"),
    ('["a", "list"]', "bad_json"),
    ('{"type": "shout", "text": "x"}', "bad_type"),
    ('{"text": "no type"}', "bad_type"),
    ('{"type": "say"}', "bad_field"),
    ('{"type": "say", "text": 12}', "bad_field"),
    ('{"type": "dm", "to": 5, "text": "x"}', "bad_field"),
    ('{"type": "join", "room": "bad room"}', "bad_room"),
    (json.dumps({"type": "say", "text": "x" * 4001}), "too_long"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_input_gets_an_error_and_the_connection_stays(
    server: Server, frame: str, code: str
) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        bob, _ = await connect(server, "bob")
        await alice.send(frame)
        error = await next_of(alice, "error")
        assert error["code"] == code
        assert error["detail"]
        await say(alice, "still here")
        assert (await next_of(alice, "message"))["text"] == "still here"
        # Nobody else noticed anything but the message.
        events = [e["type"] for e in await nothing_within(bob, 0.3)]
        assert events == ["message"]
        await alice.close()
        await bob.close()


async def test_binary_frame_is_an_error_not_a_close(server: Server) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        await alice.send(b"\x00\x01")
        assert (await next_of(alice, "error"))["code"] == "binary_unsupported"
        await say(alice, "ok")
        assert (await next_of(alice, "message"))["text"] == "ok"
        await alice.close()
