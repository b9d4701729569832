"""A node's heartbeat costs Redis the same whatever the node holds (issue 19): 1,000 names on
one node, and the commands Redis runs over three heartbeats stay a handful. Before, each
heartbeat refreshed every name (about ten commands per name, in scripts of 500) and re-read
every member set: 4 workers holding 60,000 connections kept their Redis connections busy
past the pool's wait and closed thousands of connections 1013. The names still die with
their node, and another node sees them leave and may take them."""

from __future__ import annotations

import asyncio
import json
import signal

import redis

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import wait_until
from tests.server.v1client import connect, next_of

NAMES = 1_000
BEATS = 3
NODE_TTL_S = 1.5  # a heartbeat every 0.5 s


def _commands(client: redis.Redis) -> dict[str, int]:
    """Return Redis's command counts (commands run inside scripts included) since RESETSTAT."""
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _traffic(client: redis.Redis) -> int:
    """Return the bytes Redis has read and written over the network since it started."""
    stats = client.info("stats")
    return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])


async def _who(ws: object) -> list[str]:
    await ws.send(json.dumps({"type": "who"}))  # type: ignore[attr-defined]
    names: list[str] = (await next_of(ws, "members"))["names"]  # type: ignore[arg-type]
    return names


async def test_a_heartbeat_stays_cheap_with_many_names(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    args = ("--broker", redis_server.url, "--node-ttl", str(NODE_TTL_S), "--rate-limit", "0")
    # No joined/left (clients ask with who): 1,000 arrivals would be a million events.
    a: Server = server_factory(*args, "--presence-limit", "0")
    b: Server = server_factory(*args, "--presence-limit", "0")
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    async with asyncio.timeout(28):
        held = []
        for start in range(0, NAMES, 100):
            batch = [connect(a, f"user{i}") for i in range(start, start + 100)]
            held += [ws for ws, _ in await asyncio.gather(*batch)]
        watcher, _ = await connect(b, "watcher")
        await wait_until(lambda: len(client.keys("wschat:{registry}:name:*")) == NAMES + 1)
        # The arrivals' last writes, and heartbeats that bring each node's mirror to the
        # registry (one may have read the room while an arrival's envelope was on its way).
        await asyncio.sleep(NODE_TTL_S)

        client.config_resetstat()
        before = _traffic(client)
        await asyncio.sleep(BEATS * NODE_TTL_S / 3)
        traffic = _traffic(client) - before
        calls = _commands(client)
        total = sum(n for command, n in calls.items() if command not in ("config|resetstat",))
        # Per heartbeat and node: its key, its rooms' versions and counts (a few commands, a
        # few hundred bytes). Refreshing 1,000 names took more than 10,000 commands and 60 KB
        # of arguments; re-reading the room, 10 KB of names.
        assert total < 100 * BEATS, calls
        assert traffic < 8_000, (traffic, calls)  # bytes in and out, our INFO replies included

        # The names die with their node: b sees them leave within the TTL and a heartbeat,
        # and may take them.
        assert len(await _who(watcher)) == NAMES + 1
        a.stop(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while len(await _who(watcher)) > 1:
            assert loop.time() - started < 2 * NODE_TTL_S, "names outlived a"  # TTL + beats
            await asyncio.sleep(0.1)
        again, welcome = await connect(b, "user7")
        assert welcome["name"] == "user7"
        # And b sweeps a's names from the registry, a batch per script.
        await wait_until(lambda: len(client.keys("wschat:{registry}:name:*")) == 2, within=10)
        for ws in (again, watcher):
            await ws.close()
        del held
