"""DMs are never silently lost (issue 14): to a user who is reconnecting they are kept and
delivered on resume, on any node; to a dead node's ghost the sender gets an error, no echo."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

from websockets.asyncio.client import ClientConnection

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import wait_until
from tests.server.v1client import connect, next_of, nothing_within


def _connections(server: Server) -> int:
    with urllib.request.urlopen(server.http + "/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("wschat_connections "):
                return int(float(line.split()[1]))
    raise AssertionError("no wschat_connections in /metrics")


async def _dm(ws: ClientConnection, to: str, text: str) -> dict[str, object]:
    """Send a DM and return the sender's answer: its echo or an error."""
    await ws.send(json.dumps({"type": "dm", "to": to, "text": text}))
    return await next_of(ws, "dm", "error", within=10)


async def _drop(ws: ClientConnection, node: Server, remaining: int = 0) -> None:
    """Drop ``ws`` as a lost network would (not a clean quit), once ``node`` has noticed."""
    await ws.close(code=4000)
    await wait_until(lambda: _connections(node) == remaining)


async def test_dms_to_a_reconnecting_user_arrive_on_resume_and_a_ghost_is_an_error(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    args = ("--broker", redis_server.url, "--node-ttl", "3", "--presence-grace", "10")
    a, b = server_factory(*args), server_factory(*args)
    async with asyncio.timeout(40):
        alice, _ = await connect(a, "alice")
        carol, _ = await connect(b, "carol")
        bob, welcome = await connect(b, "bob")
        # bob drops; alice's DMs (from another node) wait for him and are echoed to her.
        await _drop(bob, b, remaining=1)
        for text in ("one", "two"):
            echo = await _dm(alice, "bob", text)
            assert (echo["type"], echo["text"]) == ("dm", text), echo
        # He comes back on alice's node with his resume token: both DMs, in order, after
        # the welcome; nothing twice.
        bob, again = await connect(a, "bob", resume=welcome["token"])
        got = [await next_of(bob, "dm") for _ in range(2)]
        assert [(d["from"], d["text"]) for d in got] == [("alice", "one"), ("alice", "two")]
        assert not [e for e in await nothing_within(bob, 0.2) if e["type"] == "dm"]
        # Same node: bob drops again and alice writes to him from there.
        await _drop(bob, a, remaining=1)
        assert (await _dm(alice, "bob", "three"))["type"] == "dm"
        bob, _ = await connect(a, "bob", resume=again["token"])
        assert (await next_of(bob, "dm"))["text"] == "three"
        # A live DM still reaches both ends at once.
        assert (await _dm(alice, "bob", "live"))["type"] == "dm"
        assert (await next_of(bob, "dm"))["text"] == "live"

        # Node b dies: carol is a ghost until her name expires. A DM to her is an error for
        # the sender, never an echo with nothing delivered.
        b.stop(signal.SIGKILL)
        error = await _dm(alice, "carol", "hello?")
        assert (error["type"], error["code"]) == ("error", "not_delivered"), error
        assert not [e for e in await nothing_within(alice, 0.2) if e["type"] == "dm"]
        await alice.close()
        await bob.close()
        del carol


async def test_dms_wait_for_a_reconnecting_user_on_one_process(server: Server) -> None:
    async with asyncio.timeout(20):
        alice, _ = await connect(server, "alice")
        bob, welcome = await connect(server, "bob")
        await _drop(bob, server, remaining=1)
        assert (await _dm(alice, "bob", "kept"))["type"] == "dm"
        bob, _ = await connect(server, "bob", resume=welcome["token"])
        dm = await next_of(bob, "dm")
        assert (dm["from"], dm["text"]) == ("alice", "kept")
        await bob.close()
        await alice.close()


async def test_a_dm_that_reaches_a_stalled_node_too_late_is_an_error_and_not_delivered(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    """Never both: the sender is told ``not_delivered`` after 2 s without an answer, so a
    node that gets the DM later (here: stopped for 3 s) must not deliver it then."""
    args = ("--broker", redis_server.url)
    a, b = server_factory(*args), server_factory(*args)
    async with asyncio.timeout(30):
        alice, _ = await connect(a, "alice")
        carol, _ = await connect(b, "carol")
        assert (await _dm(alice, "carol", "live"))["type"] == "dm"  # both nodes know carol
        assert (await next_of(carol, "dm"))["text"] == "live"
        b.proc.send_signal(signal.SIGSTOP)
        try:
            error = await _dm(alice, "carol", "late")
            assert (error["type"], error["code"]) == ("error", "not_delivered"), error
            await asyncio.sleep(1.0)  # the DM waits in b's socket, past its delivery time
        finally:
            b.proc.send_signal(signal.SIGCONT)
        assert (await _dm(alice, "carol", "after"))["type"] == "dm"  # b answers again
        got = [await next_of(carol, "dm")]
        assert [d["text"] for d in got] == ["after"], got  # "late" never came
        await alice.close()
        await carol.close()
