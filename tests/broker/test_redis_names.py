"""Names across nodes (issue 14): look-alikes refused on any node; during a Redis outage no
node hands out a name it cannot confirm; a registry Redis lost leaves one holder per name."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import websockets

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import get_json, wait_until
from tests.server.v1client import closed_with, connect, next_of


async def _refusal(server: Server, name: str, v1: bool = True) -> tuple[int | None, str]:
    return await closed_with(f"{server.ws}/ws/{quote(name)}", ["wschat.v1"] if v1 else None)


def _broker(server: Server) -> str:
    state: str = get_json(server.http + "/healthz")["broker"]["state"]
    return state


async def test_names_are_confirmed_by_the_shared_registry_or_refused(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    args = ("--broker", redis_server.url, "--node-ttl", "1.5")
    a, b = server_factory(*args), server_factory(*args)
    async with asyncio.timeout(40):
        alice, _ = await connect(a, "alice")
        cope, _ = await connect(a, "cope")
        # Cyrillic look-alikes on the other node: mixed with Latin (4003), or all Cyrillic
        # with the same UTS #39 skeleton as a name held on node a (4009).
        assert (await _refusal(b, "\u0430lice"))[0] == 4003
        code, reason = await _refusal(b, "\u0441\u043e\u0440\u0435")  # Cyrillic es, o, er, ie
        assert (code, "looks like 'cope'" in reason) == (4009, True), reason

        # Redis goes away: a new name can be confirmed by nobody, so both nodes refuse it
        # with 1013 (try again), v1 and plain alike; connected users stay.
        redis_server.kill()
        await wait_until(lambda: _broker(a) != "ok" and _broker(b) != "ok", within=20)
        for node, v1 in ((a, True), (b, False)):
            code, reason = await _refusal(node, "newbie", v1)
            assert (code, "cannot be confirmed" in reason) == (1013, True), (code, reason)
        redis_server.start()
        await wait_until(lambda: _broker(a) == "ok" and _broker(b) == "ok", within=20)
        newbie, _ = await connect(b, "newbie")
        assert (await _refusal(a, "newbie"))[0] == 4009

        # Redis loses the registry (as a restart without persistence would) and node b
        # registers alice before node a's next heartbeat: node a lets its alice go (4009).
        # If a's heartbeat comes first, b refuses her instead. Either way: one alice.
        assert redis_server.command(b"FLUSHALL").startswith(b"+OK")
        try:
            other, _ = await connect(b, "alice")
        except (websockets.ConnectionClosed, AssertionError):
            assert alice.close_code is None
        else:
            with_reason = await _closed(alice)
            assert with_reason[0] == 4009, with_reason
            await other.close()
        for ws in (cope, newbie):
            await ws.close()


async def _closed(ws: websockets.ClientConnection) -> tuple[int | None, str]:
    try:
        await next_of(ws, "never", within=5)
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""
