"""Names: validated, unique, reclaimable with a resume token; presence without flicker."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
import websockets

from tests.conftest import Server
from tests.server.v1client import closed_with, connect, next_of, nothing_within
from tests.test_names import ISSUE_15


@pytest.mark.parametrize("name", ["al%20ice", "a%E2%80%AEb", "%1B%5B31m", "x" * 33])
@pytest.mark.parametrize("v1", [True, False])
async def test_invalid_names_are_refused_4003(server: Server, name: str, v1: bool) -> None:
    code, reason = await closed_with(f"{server.ws}/ws/{name}", ["wschat.v1"] if v1 else None)
    assert code == 4003
    assert reason


async def test_a_name_in_use_is_refused_4009(server: Server) -> None:
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        for subprotocols in (["wschat.v1"], None):
            code, reason = await closed_with(f"{server.ws}/ws/alice", subprotocols)
            assert code == 4009
            assert "taken" in reason
        # A stolen-looking token does not help either.
        code, _ = await closed_with(f"{server.ws}/ws/alice?resume=guess", ["wschat.v1"])
        assert code == 4009
        await alice.close()


async def test_names_are_normalised_before_comparing(server: Server) -> None:
    async with asyncio.timeout(10):
        first, _ = await connect(server, "bob")
        # Fullwidth b-o-b (U+FF42 U+FF4F U+FF42) normalises (NFKC) to "bob": the same name, so it is taken.
        code, _ = await closed_with(f"{server.ws}/ws/%EF%BD%82%EF%BD%8F%EF%BD%82", ["wschat.v1"])
        assert code == 4009
        await first.close()


async def test_two_clients_racing_for_one_name_one_wins(server: Server) -> None:
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *[
                websockets.connect(f"{server.ws}/ws/racer", subprotocols=["wschat.v1"])  # type: ignore[list-item]
                for _ in range(8)
            ]
        )
        winners, losers = 0, 0
        for ws in results:
            try:
                async with asyncio.timeout(3):
                    frame = await ws.recv()
                assert '"welcome"' in str(frame)
                winners += 1
            except websockets.ConnectionClosed:
                assert ws.close_code == 4009
                losers += 1
        assert (winners, losers) == (1, 7)
        for ws in results:
            await ws.close()


async def test_resume_token_reclaims_the_name_at_once(server: Server) -> None:
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, "watcher")
        stale, welcome = await connect(server, "alice")
        await next_of(watcher, "joined")
        fresh, again = await connect(server, "alice", resume=welcome["token"])
        assert again["name"] == "alice"
        await stale.wait_closed()
        assert stale.close_code == 4010
        # The watcher saw no left/joined flicker.
        assert [
            e for e in await nothing_within(watcher, 0.5) if e["type"] in ("left", "joined")
        ] == []
        await fresh.close()
        await watcher.close()


async def test_quick_reconnect_causes_no_flicker(server: Server) -> None:
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, "watcher")
        alice, welcome = await connect(server, "alice")
        await next_of(watcher, "joined")
        alice.transport.abort()  # type: ignore[attr-defined]  # a dropped network, no close
        await asyncio.sleep(0.3)
        back, again = await connect(server, "alice", resume=welcome["token"])
        assert "alice" in again["members"]
        assert [
            e for e in await nothing_within(watcher, 0.5) if e["type"] in ("left", "joined")
        ] == []
        # During the grace period the name stays reserved for its owner.
        await back.close()  # a clean close (1000) is a real leave: announced at once
        assert (await next_of(watcher, "left"))["name"] == "alice"
        await watcher.close()


async def test_a_client_that_does_not_come_back_leaves_after_the_grace(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--presence-grace", "0.5")
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, "watcher")
        alice, _ = await connect(server, "alice")
        await next_of(watcher, "joined")
        alice.transport.abort()  # type: ignore[attr-defined]
        code, _ = await closed_with(f"{server.ws}/ws/alice", ["wschat.v1"])
        assert code == 4009  # reserved during the grace period
        assert await next_of(watcher, "left", within=3) == {
            "type": "left",
            "room": "lobby",
            "name": "alice",
        }
        newcomer, _ = await connect(server, "alice")  # free again afterwards
        await newcomer.close()
        await watcher.close()


async def test_big_rooms_send_no_presence(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--presence-limit", "2")
    async with asyncio.timeout(10):
        alice, _ = await connect(server, "alice")
        bob, _ = await connect(server, "bob")
        assert (await next_of(alice, "joined"))["name"] == "bob"  # 2 members: at the limit
        carol, welcome = await connect(server, "carol")  # 3 members: past it
        assert welcome["members"] == ["alice", "bob", "carol"]
        quiet = await nothing_within(alice, 0.5)
        assert [e for e in quiet if e["type"] in ("joined", "left")] == []
        await alice.send('{"type": "who"}')
        assert (await next_of(alice, "members"))["names"] == ["alice", "bob", "carol"]
        for ws in (alice, bob, carol):
            await ws.close()


async def test_look_alikes_of_admin_are_refused_on_a_real_server(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory()
    async with asyncio.timeout(20):
        admin, _ = await connect(server, "admin")
        for name in ISSUE_15:
            for subprotocols in (["wschat.v1"], None):
                code, reason = await closed_with(f"{server.ws}/ws/{quote(name)}", subprotocols)
                assert (code, bool(reason)) in ((4003, True), (4009, True)), (name, code)
                if code == 4009:
                    assert "admin" in reason
        # An ordinary accented name that looks like nobody online is still welcome.
        jose, _ = await connect(server, "jos\u00e9")
        await jose.close()
        await admin.close()
