"""The wschat.v1 JSON protocol against a real server: rooms, DMs, presence, errors."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.conftest import Server
from tests.server.v1client import connect, next_of, nothing_within, say

# One server for the module: every test uses its own names (suffixed with ``tag``) and,
# but for the one test of the default room, its own room.


async def test_welcome_names_the_protocol_and_members(shared_server: Server, tag: str) -> None:
    server = shared_server  # the only test of the module in the default room
    alice_name, bob_name = f"alice-{tag}", f"bob-{tag}"
    async with asyncio.timeout(10):
        bob, _ = await connect(server, bob_name)
        alice, welcome = await connect(server, alice_name)
        assert alice.subprotocol == "wschat.v1"
        assert welcome["name"] == alice_name
        assert welcome["room"] == "lobby"
        assert welcome["members"] == [alice_name, bob_name]
        assert welcome["latest"] == 0
        assert welcome["replay"] == 0
        assert welcome["gap"] is False
        assert isinstance(welcome["token"], str) and len(welcome["token"]) >= 16
        assert await next_of(bob, "joined") == {
            "type": "joined",
            "room": "lobby",
            "name": alice_name,
        }
        await alice.close()
        await bob.close()


async def test_say_reaches_every_member_with_growing_ids(shared_server: Server, tag: str) -> None:
    server, room = shared_server, f"say-{tag}"
    alice_name, bob_name = f"alice-{tag}", f"bob-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, alice_name, room=room)
        bob, _ = await connect(server, bob_name, room=room)
        await say(alice, "one", **{"from": "mallory"})  # "from" is never taken from the client
        first_for_bob = await next_of(bob, "message")
        await say(bob, "two")
        for ws in (alice, bob):
            first = first_for_bob if ws is bob else await next_of(ws, "message")
            second = await next_of(ws, "message")
            assert (first["id"], first["from"], first["text"]) == (1, alice_name, "one")
            assert (second["id"], second["from"], second["text"]) == (2, bob_name, "two")
            assert first["room"] == room
            assert isinstance(first["ts"], float)
        await say(alice, "waves", action=True)
        assert (await next_of(bob, "message"))["action"] is True
        await alice.close()
        await bob.close()


async def test_direct_messages_reach_both_ends_only(shared_server: Server, tag: str) -> None:
    server, room = shared_server, f"dm-{tag}"
    alice_name, bob_name = f"alice-{tag}", f"bob-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, alice_name, room=room)
        bob, _ = await connect(server, bob_name, room=f"elsewhere-{tag}")
        carol, _ = await connect(server, f"carol-{tag}", room=room)
        await alice.send(json.dumps({"type": "dm", "to": bob_name, "text": "psst"}))
        for ws in (alice, bob):
            event = await next_of(ws, "dm")
            assert (event["from"], event["to"], event["text"]) == (alice_name, bob_name, "psst")
        assert [e for e in await nothing_within(carol, 0.3) if e["type"] == "dm"] == []
        await alice.send(json.dumps({"type": "dm", "to": f"nobody-{tag}", "text": "hello?"}))
        error = await next_of(alice, "error")
        assert error["code"] == "no_such_user"
        for ws in (alice, bob, carol):
            await ws.close()


async def test_join_moves_rooms_with_presence(shared_server: Server, tag: str) -> None:
    server, room, ops_room = shared_server, f"join-{tag}", f"ops-{tag}"
    bob_name, olga_name = f"bob-{tag}", f"olga-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, f"alice-{tag}", room=room)
        bob, _ = await connect(server, bob_name, room=room)
        ops, _ = await connect(server, olga_name, room=ops_room)
        await bob.send(json.dumps({"type": "join", "room": ops_room}))
        welcome = await next_of(bob, "welcome")
        assert welcome["room"] == ops_room
        assert welcome["members"] == [bob_name, olga_name]
        assert await next_of(alice, "left") == {"type": "left", "room": room, "name": bob_name}
        assert await next_of(ops, "joined") == {
            "type": "joined",
            "room": ops_room,
            "name": bob_name,
        }
        await say(bob, "hi ops")
        assert (await next_of(ops, "message"))["text"] == "hi ops"
        assert [e for e in await nothing_within(alice, 0.3) if e["type"] == "message"] == []
        await bob.send(json.dumps({"type": "who"}))
        assert await next_of(bob, "members") == {
            "type": "members",
            "room": ops_room,
            "names": [bob_name, olga_name],
        }
        for ws in (alice, bob, ops):
            await ws.close()


async def test_rooms_lists_the_rooms_with_members_and_how_many(
    shared_server: Server, tag: str
) -> None:
    red, blue = f"red-{tag}", f"blue-{tag}"
    async with asyncio.timeout(10):
        opened = [
            (await connect(shared_server, f"{who}-{tag}", room=room))[0]
            for who, room in (("ann", red), ("ben", red), ("cat", blue))
        ]
        # Fields a command does not know are ignored, as for every command.
        await opened[2].send(json.dumps({"type": "rooms", "page": 9}))
        answer = await next_of(opened[2], "rooms")
        listed = [r["room"] for r in answer["rooms"]]
        assert listed == sorted(listed)
        mine = [r for r in answer["rooms"] if r["room"] in (red, blue)]
        assert mine == [{"room": blue, "members": 1}, {"room": red, "members": 2}]
        assert answer["more"] == 0
        for ws in opened:
            await ws.close()


async def test_rooms_answer_is_capped_and_rate_limited(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--rooms-listed", "2", "--rate-limit", "1", "--rate-burst", "3")
    async with asyncio.timeout(10):
        opened = [
            (await connect(server, name, room=room))[0]
            for name, room in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c"))
        ]
        asker = opened[-1]
        await asker.send(json.dumps({"type": "rooms"}))
        # The two busiest of three rooms, by room; the third is only counted.
        assert await next_of(asker, "rooms") == {
            "type": "rooms",
            "rooms": [{"room": "a", "members": 2}, {"room": "b", "members": 2}],
            "more": 1,
        }
        for _ in range(3):
            await asker.send(json.dumps({"type": "rooms"}))
        error = await next_of(asker, "error")
        assert error["code"] == "rate_limited"
        for ws in opened:
            await ws.close()


async def test_plain_and_v1_clients_share_a_room(shared_server: Server, tag: str) -> None:
    server, room = shared_server, f"mixed-{tag}"
    alice_name, pete_name = f"alice-{tag}", f"plainpete-{tag}"
    async with asyncio.timeout(10):
        v1, _ = await connect(server, alice_name, room=room)
        async with websockets.connect(f"{server.ws}/ws/{pete_name}?room={room}") as plain:
            assert (await next_of(v1, "joined"))["name"] == pete_name
            await plain.send("hello from plain")
            event = await next_of(v1, "message")
            assert (event["from"], event["text"]) == (pete_name, "hello from plain")
            assert await plain.recv() == f"Client {pete_name}: hello from plain"
            await say(v1, "hello from v1")
            assert await plain.recv() == f"Client {alice_name}: hello from v1"
            # Presence changes and DMs never reach a plain client as JSON.
            other, _ = await connect(server, f"carol-{tag}", room=room)
            await other.close()
            await v1.send(json.dumps({"type": "dm", "to": pete_name, "text": "psst"}))
            assert await plain.recv() == f"DM from {alice_name}: psst"
            await say(v1, "last")
            assert await plain.recv() == f"Client {alice_name}: last"
        assert (await next_of(v1, "left"))["name"] == f"carol-{tag}"
        assert (await next_of(v1, "left"))["name"] == pete_name
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
    shared_server: Server, tag: str, frame: str, code: str
) -> None:
    server, room = shared_server, f"bad-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, f"alice-{tag}", room=room)
        bob, _ = await connect(server, f"bob-{tag}", room=room)
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


async def test_binary_frame_is_an_error_not_a_close(shared_server: Server, tag: str) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(shared_server, f"alice-{tag}", room=f"binary-{tag}")
        await alice.send(b"\x00\x01")
        assert (await next_of(alice, "error"))["code"] == "binary_unsupported"
        await say(alice, "ok")
        assert (await next_of(alice, "message"))["text"] == "ok"
        await alice.close()
