"""Names: validated, unique, reclaimable with a resume token; presence without flicker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import websockets

from tests.conftest import Server, serve_while
from tests.server.v1client import closed_with, connect, next_of, nothing_within
from tests.test_names import ISSUE_15

# Most tests share one default server (``shared_server``), each with its own names and rooms
# (suffixed with ``tag``; names are server-wide): the two about presence flags share another.


def _fullwidth(name: str) -> str:
    """``name`` (ASCII) in fullwidth forms (U+FF01..U+FF5E), which NFKC maps back to it."""
    return "".join(chr(ord(c) + 0xFEE0) for c in name)


@pytest.mark.parametrize("name", ["al%20ice", "a%E2%80%AEb", "%1B%5B31m", "x" * 33])
@pytest.mark.parametrize("v1", [True, False])
async def test_invalid_names_are_refused_4003(shared_server: Server, name: str, v1: bool) -> None:
    code, reason = await closed_with(f"{shared_server.ws}/ws/{name}", ["wschat.v1"] if v1 else None)
    assert code == 4003
    assert reason


async def test_a_name_in_use_is_refused_4009(shared_server: Server, tag: str) -> None:
    server, name = shared_server, f"alice-{tag}"
    async with asyncio.timeout(10):
        alice, _ = await connect(server, name, room=f"inuse-{tag}")
        for subprotocols in (["wschat.v1"], None):
            code, reason = await closed_with(f"{server.ws}/ws/{name}", subprotocols)
            assert code == 4009
            assert "taken" in reason
        # A stolen-looking token does not help either.
        code, _ = await closed_with(f"{server.ws}/ws/{name}?resume=guess", ["wschat.v1"])
        assert code == 4009
        await alice.close()


async def test_names_are_normalised_before_comparing(shared_server: Server, tag: str) -> None:
    server, name = shared_server, f"bob-{tag}"
    async with asyncio.timeout(10):
        first, _ = await connect(server, name, room=f"nfkc-{tag}")
        # Fullwidth b-o-b (U+FF42 U+FF4F U+FF42, and so on) normalises (NFKC) to "bob": the
        # same name, so it is taken.
        code, _ = await closed_with(f"{server.ws}/ws/{quote(_fullwidth(name))}", ["wschat.v1"])
        assert code == 4009
        await first.close()


async def test_two_clients_racing_for_one_name_one_wins(shared_server: Server, tag: str) -> None:
    url = f"{shared_server.ws}/ws/racer-{tag}?room=race-{tag}"
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            *[
                websockets.connect(url, subprotocols=["wschat.v1"])  # type: ignore[list-item]
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


async def test_resume_token_reclaims_the_name_at_once(shared_server: Server, tag: str) -> None:
    server, room, name = shared_server, f"resume-{tag}", f"alice-{tag}"
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, f"watcher-{tag}", room=room)
        stale, welcome = await connect(server, name, room=room)
        await next_of(watcher, "joined")
        fresh, again = await connect(server, name, room=room, resume=welcome["token"])
        assert again["name"] == name
        await stale.wait_closed()
        assert stale.close_code == 4010
        # The watcher saw no left/joined flicker.
        assert [
            e for e in await nothing_within(watcher, 0.5) if e["type"] in ("left", "joined")
        ] == []
        await fresh.close()
        await watcher.close()


async def test_quick_reconnect_causes_no_flicker(shared_server: Server, tag: str) -> None:
    server, room, name = shared_server, f"flicker-{tag}", f"alice-{tag}"
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, f"watcher-{tag}", room=room)
        alice, welcome = await connect(server, name, room=room)
        await next_of(watcher, "joined")
        alice.transport.abort()  # type: ignore[attr-defined]  # a dropped network, no close
        await asyncio.sleep(0.3)
        back, again = await connect(server, name, room=room, resume=welcome["token"])
        assert name in again["members"]
        assert [
            e for e in await nothing_within(watcher, 0.5) if e["type"] in ("left", "joined")
        ] == []
        # During the grace period the name stays reserved for its owner.
        await back.close()  # a clean close (1000) is a real leave: announced at once
        assert (await next_of(watcher, "left"))["name"] == name
        await watcher.close()


@pytest.fixture(scope="module")
def presence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A short presence grace and a presence limit of two members, for the next two tests."""
    yield from serve_while(tmp_path_factory, "--presence-grace", "0.5", "--presence-limit", "2")


async def test_a_client_that_does_not_come_back_leaves_after_the_grace(
    presence_server: Server, tag: str
) -> None:
    server, room, name = presence_server, f"grace-{tag}", f"alice-{tag}"
    async with asyncio.timeout(10):
        watcher, _ = await connect(server, f"watcher-{tag}", room=room)  # 2 members: presence
        alice, _ = await connect(server, name, room=room)
        await next_of(watcher, "joined")
        alice.transport.abort()  # type: ignore[attr-defined]
        code, _ = await closed_with(f"{server.ws}/ws/{name}?room={room}", ["wschat.v1"])
        assert code == 4009  # reserved during the grace period
        assert await next_of(watcher, "left", within=3) == {
            "type": "left",
            "room": room,
            "name": name,
        }
        newcomer, _ = await connect(server, name, room=room)  # free again afterwards
        await newcomer.close()
        await watcher.close()


async def test_big_rooms_send_no_presence(presence_server: Server, tag: str) -> None:
    server, room = presence_server, f"big-{tag}"
    names = [f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"]
    async with asyncio.timeout(10):
        alice, _ = await connect(server, names[0], room=room)
        bob, _ = await connect(server, names[1], room=room)
        assert (await next_of(alice, "joined"))["name"] == names[1]  # 2 members: at the limit
        carol, welcome = await connect(server, names[2], room=room)  # 3 members: past it
        assert welcome["members"] == names
        quiet = await nothing_within(alice, 0.5)
        assert [e for e in quiet if e["type"] in ("joined", "left")] == []
        await alice.send('{"type": "who"}')
        assert (await next_of(alice, "members"))["names"] == names
        for ws in (alice, bob, carol):
            await ws.close()


async def test_look_alikes_of_admin_are_refused_on_a_real_server(
    shared_server: Server, tag: str
) -> None:
    server = shared_server  # no other test of the module holds a name that looks like admin
    async with asyncio.timeout(20):
        admin, _ = await connect(server, "admin", room=f"admin-{tag}")
        for name in ISSUE_15:
            for subprotocols in (["wschat.v1"], None):
                code, reason = await closed_with(f"{server.ws}/ws/{quote(name)}", subprotocols)
                assert (code, bool(reason)) in ((4003, True), (4009, True)), (name, code)
                if code == 4009:
                    assert "admin" in reason
        # An ordinary accented name that looks like nobody online is still welcome.
        jose, _ = await connect(server, f"jos\u00e9-{tag}", room=f"admin-{tag}")
        await jose.close()
        await admin.close()
