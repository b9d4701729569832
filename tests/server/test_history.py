"""Stored history and resume: replay after ``since``, no gap, no duplicate, across restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, serve_while
from tests.server.v1client import connect, next_of, recv, say


async def _say_and_wait(ws, texts: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for text in texts:
        await say(ws, text)
        ids.append((await next_of(ws, "message"))["id"])
    return ids


async def test_since_replays_exactly_what_was_missed(shared_server: Server, tag: str) -> None:
    server, room = shared_server, f"since-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, f"alice-{tag}", room=room)
        await _say_and_wait(alice, [f"m{i}" for i in range(1, 8)])
        bob, welcome = await connect(server, f"bob-{tag}", room=room, since=3)
        assert welcome["latest"] == 7
        assert welcome["replay"] == 4
        assert welcome["gap"] is False
        replay = [await recv(bob) for _ in range(4)]
        assert [(m["id"], m["text"]) for m in replay] == [(i, f"m{i}") for i in range(4, 8)]
        await say(alice, "live")
        assert (await next_of(bob, "message"))["id"] == 8
        await alice.close()
        await bob.close()


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``--replay-count 3 --replay-max 5``, shared by the two tests of those limits."""
    yield from serve_while(tmp_path_factory, "--replay-count", "3", "--replay-max", "5")


async def test_without_since_the_last_n_are_replayed(replay_server: Server, tag: str) -> None:
    server, room = replay_server, f"last-n-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, f"alice-{tag}", room=room)
        await _say_and_wait(alice, [f"m{i}" for i in range(1, 6)])
        bob, welcome = await connect(server, f"bob-{tag}", room=room)
        assert (welcome["replay"], welcome["latest"]) == (3, 5)
        assert [(await recv(bob))["id"] for _ in range(3)] == [3, 4, 5]
        await alice.close()
        await bob.close()


async def test_since_older_than_history_reports_a_gap(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--history-size", "4")
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        await _say_and_wait(alice, [f"m{i}" for i in range(1, 11)])
        bob, welcome = await connect(server, "bob", since=2)
        assert welcome["gap"] is True
        assert [(await recv(bob))["id"] for _ in range(welcome["replay"])] == [7, 8, 9, 10]
        carol, welcome = await connect(server, "carol", since=6)
        assert welcome["gap"] is False
        for ws in (alice, bob, carol):
            await ws.close()


async def test_resume_under_concurrent_traffic_has_no_gap_and_no_duplicate(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    # Two talkers keep the room busy while readers connect with ``since`` in the middle of it:
    # the history read races the live subscription, and must lose nothing and double nothing.
    server: Server = server_factory(
        "--outbox-size", "10000", "--rate-limit", "0"
    )  # floods on purpose
    total = 600
    async with asyncio.timeout(40):
        talkers = [(await connect(server, f"talker{i}"))[0] for i in range(2)]
        stop = asyncio.Event()

        async def talk(ws, n: int) -> None:  # type: ignore[no-untyped-def]
            for i in range(n):
                await say(ws, f"t{i}")
                if i % 20 == 0:
                    await asyncio.sleep(0)
            stop.set()

        async def drain(ws) -> None:  # type: ignore[no-untyped-def]
            try:
                while True:
                    await ws.recv()
            except Exception:
                return

        drains = [asyncio.create_task(drain(ws)) for ws in talkers]
        tasks = [asyncio.create_task(talk(ws, total // 2)) for ws in talkers]
        seen: list[list[int]] = []
        since = 0
        for k in range(6):
            await asyncio.sleep(0.02)
            reader, _ = await connect(server, f"reader{k}", since=since)
            ids: list[int] = []
            while not ids or ids[-1] < total:
                event = await next_of(reader, "message", within=10)
                ids.append(event["id"])
            seen.append(ids)
            assert ids == list(range(since + 1, total + 1)), f"reader{k} since={since}"
            await reader.close()
            since = since + 40
        await asyncio.gather(*tasks)
        for ws in talkers:
            await ws.close()
        for task in drains:
            task.cancel()
    assert len(seen) == 6


async def test_restart_keeps_history_and_ids_continue(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "keep.sqlite3"
    first: Server = server_factory("--db", str(db))
    async with asyncio.timeout(20):
        alice, _ = await connect(first, "alice", room="ops")
        await _say_and_wait(alice, ["one", "two", "three"])
        # In a thread: alice's client answers the server's 1001 close meanwhile (a stop on
        # the loop's own thread left it unanswered until the server's 5 s close timeout).
        assert await asyncio.to_thread(first.stop, signal.SIGTERM) in (0, -signal.SIGTERM)
        second: Server = server_factory("--db", str(db))
        bob, welcome = await connect(second, "bob", room="ops", since=1)
        assert welcome["latest"] == 3
        assert [(await recv(bob))["text"] for _ in range(2)] == ["two", "three"]
        await say(bob, "four")
        event = await next_of(bob, "message")
        assert (event["id"], event["text"]) == (4, "four")
        await bob.close()


async def test_rooms_have_their_own_ids(shared_server: Server, tag: str) -> None:
    server, red, blue = shared_server, f"red-{tag}", f"blue-{tag}"
    async with asyncio.timeout(10):
        a, _ = await connect(server, f"alice-{tag}", room=red)
        b, _ = await connect(server, f"bob-{tag}", room=blue)
        assert await _say_and_wait(a, ["x", "y"]) == [1, 2]
        assert await _say_and_wait(b, ["z"]) == [1]
        await a.send(json.dumps({"type": "join", "room": blue}))
        welcome = await next_of(a, "welcome")
        assert (welcome["room"], welcome["latest"], welcome["replay"]) == (blue, 1, 1)
        await a.close()
        await b.close()


async def test_join_with_since_replays_what_came_after_it_capped(
    replay_server: Server, tag: str
) -> None:
    """Issue 17: ``join`` takes ``since`` like ``?since=``, within ``--replay-max``."""
    server, red = replay_server, f"red-{tag}"
    async with asyncio.timeout(10):
        a, _ = await connect(server, f"alice-{tag}", room=red)
        b, _ = await connect(server, f"bob-{tag}", room=f"blue-{tag}")
        await _say_and_wait(a, [f"m{i}" for i in range(1, 9)])
        await b.send(json.dumps({"type": "join", "room": red, "since": 4}))
        welcome = await next_of(b, "welcome")
        assert (welcome["replay"], welcome["gap"], welcome["latest"]) == (4, False, 8)
        assert [(await recv(b))["id"] for _ in range(4)] == [5, 6, 7, 8]
        await b.send(json.dumps({"type": "join", "room": red, "since": 1}))
        welcome = await next_of(b, "welcome")
        assert (welcome["replay"], welcome["gap"]) == (5, True)  # the newest --replay-max
        assert [(await recv(b))["id"] for _ in range(5)] == [4, 5, 6, 7, 8]
        await b.send(json.dumps({"type": "join", "room": red, "since": -1}))
        assert (await next_of(b, "error"))["code"] == "bad_field"
        # A ``since`` of another epoch (a history that was reset, issue 14) means nothing
        # here: the room's own epoch's messages, with ``gap``, never "nothing missed".
        epoch = welcome["epoch"]
        await b.send(json.dumps({"type": "join", "room": red, "since": 6, "epoch": "gone"}))
        welcome = await next_of(b, "welcome")
        assert (welcome["gap"], welcome["epoch"]) == (True, epoch)
        await b.send(json.dumps({"type": "join", "room": red, "since": 6, "epoch": epoch}))
        welcome = await next_of(b, "welcome")
        assert (welcome["replay"], welcome["gap"]) == (2, False)
        await a.close()
        await b.close()


async def test_a_say_with_cid_comes_back_with_it_live_and_replayed(
    shared_server: Server, tag: str
) -> None:
    server, room = shared_server, f"cids-{tag}"
    async with asyncio.timeout(20):
        alice, _ = await connect(server, f"alice-{tag}", room=room)
        bob, _ = await connect(server, f"bob-{tag}", room=room)
        await say(alice, "tagged", cid="a-1")
        await say(alice, "plain")
        mine = [await next_of(alice, "message") for _ in range(2)]
        assert [(e["text"], e.get("cid")) for e in mine] == [("tagged", "a-1"), ("plain", None)]
        assert (await next_of(bob, "message"))["cid"] == "a-1"
        carol, welcome = await connect(server, f"carol-{tag}", room=room, since=0)
        assert welcome["replay"] == 2
        replayed = [await next_of(carol, "message") for _ in range(2)]
        assert [e.get("cid") for e in replayed] == ["a-1", None]
        for ws in (alice, bob, carol):
            await ws.close()


async def test_a_history_file_from_before_cids_is_upgraded(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as old:  # the schema as it was before client message ids
        old.execute(
            "CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL, sender TEXT NOT NULL,"
            " text TEXT NOT NULL, ts REAL NOT NULL, action INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (room, id)) WITHOUT ROWID"
        )
        old.execute("INSERT INTO messages VALUES ('ops', 1, 'zed', 'from before', 1.0, 0)")
    server: Server = server_factory("--db", str(db))
    async with asyncio.timeout(20):
        bob, welcome = await connect(server, "bob", room="ops", since=0)
        assert welcome["latest"] == 1
        first = await next_of(bob, "message")
        assert (first["text"], first.get("cid")) == ("from before", None)
        await say(bob, "after", cid="b-1")
        event = await next_of(bob, "message")
        assert (event["id"], event["cid"]) == (2, "b-1")
        await bob.close()
