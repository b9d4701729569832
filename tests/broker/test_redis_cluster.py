"""Two ``wschat serve --broker redis://...`` nodes act as one server: chat, presence, DMs,
the rooms listed, names, resume on the other node, id order under cross-node load, a node that dies."""

from __future__ import annotations

import asyncio
import json
import signal
from urllib.parse import quote

import pytest
import websockets

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import get_json
from tests.server.v1client import closed_with, connect, next_of, nothing_within, recv, say


def _nodes(server_factory, redis_server: RedisServer, *extra: str) -> tuple[Server, Server]:  # type: ignore[no-untyped-def]
    # --rate-limit 0: some tests flood on purpose.
    args = ("--broker", redis_server.url, "--node-ttl", "1.5", "--rate-limit", "0", *extra)
    return server_factory(*args), server_factory(*args)


async def test_chat_presence_and_dm_cross_nodes(server_factory, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    a, b = _nodes(server_factory, redis_server)
    async with asyncio.timeout(20):
        alice, _ = await connect(a, "alice")
        bob, welcome = await connect(b, "bob")
        assert welcome["members"] == ["alice", "bob"]
        assert await next_of(alice, "joined") == {"type": "joined", "room": "lobby", "name": "bob"}
        await say(alice, "hi bob")
        for ws in (alice, bob):
            event = await next_of(ws, "message")
            assert (event["id"], event["from"], event["text"]) == (1, "alice", "hi bob")
        await bob.send(json.dumps({"type": "dm", "to": "alice", "text": "psst"}))
        for ws in (alice, bob):
            event = await next_of(ws, "dm")
            assert (event["from"], event["to"], event["text"]) == ("bob", "alice", "psst")
        await bob.send(json.dumps({"type": "dm", "to": "nobody", "text": "x"}))
        assert (await next_of(bob, "error"))["code"] == "no_such_user"
        await alice.send(json.dumps({"type": "who"}))
        assert (await next_of(alice, "members"))["names"] == ["alice", "bob"]
        # The name is held on node a: node b refuses it.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            taken, _ = await connect(b, "alice")
            await recv(taken)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
        # A room change on b is seen on a.
        await bob.send(json.dumps({"type": "join", "room": "ops"}))
        assert (await next_of(bob, "welcome"))["room"] == "ops"
        assert (await next_of(alice, "left"))["name"] == "bob"
        # Asked on a, ``rooms`` lists ops too, whose only member is on b (once b's move
        # reached the registry, in the background).
        listed = [{"room": "lobby", "members": 1}, {"room": "ops", "members": 1}]
        for _ in range(50):
            await alice.send(json.dumps({"type": "rooms"}))
            if (await next_of(alice, "rooms"))["rooms"] == listed:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("ops, held on b only, is not listed on a")
        await bob.close()
        await alice.close()
        health = get_json(a.http + "/healthz")
        assert health["broker"] == {"engine": "redis", "state": "ok"}


async def test_resume_on_the_other_node(server_factory, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    a, b = _nodes(server_factory, redis_server, "--presence-grace", "5")
    async with asyncio.timeout(20):
        watcher, _ = await connect(a, "watcher", room="r")
        alice, welcome = await connect(a, "alice", room="r")
        token = welcome["token"]
        for i in range(1, 6):
            await say(alice, f"m{i}", cid=f"c{i}")
            assert (await next_of(alice, "message"))["id"] == i
        await next_of(watcher, "joined")
        # alice's connection dies without a close; she comes back on node b, since=2.
        alice.transport.abort()  # type: ignore[attr-defined]
        again, welcome = await connect(b, "alice", room="r", since=2, resume=token)
        assert (welcome["latest"], welcome["replay"], welcome["gap"]) == (5, 3, False)
        replayed = [await recv(again) for _ in range(3)]
        # The client's message ids come back from the Redis streams, too.
        assert [(e["text"], e["cid"]) for e in replayed] == [
            ("m3", "c3"),
            ("m4", "c4"),
            ("m5", "c5"),
        ]
        await say(again, "back", cid="c6")
        assert (await next_of(again, "message"))["cid"] == "c6"
        assert (await next_of(watcher, "message"))["text"] in ("m1", "back")
        # The watcher on node a saw no left/joined flicker for alice.
        seen = await nothing_within(watcher, 0.5)
        assert not [e for e in seen if e["type"] in ("left", "joined")], seen
        await again.close()
        await watcher.close()


async def test_ids_stay_in_order_under_cross_node_load(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    a, b = _nodes(server_factory, redis_server, "--outbox-size", "5000")
    per_talker = 150
    async with asyncio.timeout(40):
        talkers = [(await connect(a, "ta"))[0], (await connect(b, "tb"))[0]]
        readers = [(await connect(a, "ra"))[0], (await connect(b, "rb"))[0]]

        async def talk(ws) -> None:  # type: ignore[no-untyped-def]
            for i in range(per_talker):
                await say(ws, f"t{i}")

        async def read(ws) -> list[int]:  # type: ignore[no-untyped-def]
            ids: list[int] = []
            while len(ids) < 2 * per_talker:
                ids.append((await next_of(ws, "message", within=10))["id"])
            return ids

        reads = [asyncio.create_task(read(ws)) for ws in readers + talkers]
        await asyncio.gather(*(talk(ws) for ws in talkers))
        for ids in await asyncio.gather(*reads):
            assert ids == list(range(1, 2 * per_talker + 1))
        for ws in talkers + readers:
            await ws.close()


async def test_a_dead_nodes_users_leave_within_the_ttl(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    a, b = _nodes(server_factory, redis_server)
    async with asyncio.timeout(20):
        alice, _ = await connect(a, "alice")
        bob, _ = await connect(b, "bob")
        await next_of(alice, "joined")
        b.stop(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        started = loop.time()
        left = await next_of(alice, "left", within=6)
        assert left["name"] == "bob"
        assert loop.time() - started < 1.5 + 1.5  # the TTL plus a heartbeat
        # bob's name is free again.
        again, welcome = await connect(a, "bob")
        assert welcome["members"] == ["alice", "bob"]
        await again.close()
        await alice.close()
        del bob


async def _refusal(server: Server, name: str) -> tuple[int | None, str]:
    return await closed_with(f"{server.ws}/ws/{quote(name)}", ["wschat.v1"])


async def test_a_look_alike_of_a_name_held_on_the_other_node_is_refused(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: both nodes key names by ``names.confusable_keys`` in the shared registry."""
    a, b = _nodes(server_factory, redis_server)
    async with asyncio.timeout(20):
        admin, _ = await connect(a, "admin")
        for name in ("\u1d00dmin", "adm\u0269n", "ADMIN"):  # small capital a, Latin iota, case
            code, reason = await _refusal(b, name)
            assert code == 4009, (name, code, reason)
            assert "looks like 'admin'" in reason
        await admin.close()
        # Released with its name: the look-alike is free again (release runs in the background).
        while True:
            try:
                small, _ = await connect(b, "\u1d00dmin")
                break
            except (websockets.ConnectionClosed, AssertionError):
                await asyncio.sleep(0.05)
        code, reason = await _refusal(a, "admin")
        assert (code, "looks like '\u1d00dmin'" in reason) == (4009, True)
        await small.close()
