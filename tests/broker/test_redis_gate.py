"""Commands wait their turn for a pooled Redis connection first come, first served (issue
19): with more commands in flight than connections and a busy event loop, none waits for
long. redis-py's blocking pool alone hands a connection to whichever task asks next: some
waiters starved until its 10 s wait ran out, while the others passed in milliseconds (5,766
connections closed 1013 at 60,000 over 4 workers)."""

from __future__ import annotations

import asyncio
import time

from tests.broker.conftest import RedisServer
from wschat.broker.redis import POOL_CONNECTIONS, Gate, close_client, connect

TASKS = 2 * POOL_CONNECTIONS  # as many handshakes in flight per worker as in the 60,000 run
RUN_S = 4.0
BUSY_S = 0.002  # the loop runs other work this long at a time (handshakes, fan-out)


async def test_no_command_waits_long_for_a_connection(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    gate = Gate()
    waits: list[float] = []
    stop = time.monotonic() + RUN_S

    async def commands() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            async with gate.turn():
                await client.get("wschat:gate-test")
            waits.append(time.monotonic() - started)

    async def busy() -> None:
        while time.monotonic() < stop:
            until = time.perf_counter() + BUSY_S
            while time.perf_counter() < until:
                pass  # the loop is busy with something else
            await asyncio.sleep(0)

    try:
        async with asyncio.timeout(RUN_S + 15):
            await asyncio.gather(*(commands() for _ in range(TASKS)), busy())
    finally:
        await close_client(client)
    waits.sort()
    # Without the gate: a median of milliseconds, and a few waited the whole run.
    assert len(waits) > 10 * TASKS and waits[-1] < 1.0, (
        len(waits),
        waits[len(waits) // 2],
        waits[-5:],
    )
