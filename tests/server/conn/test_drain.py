"""Graceful drain: SIGTERM closes many clients with 1001 in jittered batches, within bounds."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest
import websockets

from tests.conftest import Server
from wschat.server.conn.drain import drain_plan


@pytest.mark.parametrize(("count", "size", "spread"), [(200, 20, 2.0), (101, 50, 1.0), (7, 3, 0.5)])
def test_plan_covers_everyone_once_within_the_spread(count: int, size: int, spread: float) -> None:
    plan = drain_plan(count, size, spread, random.Random(count))
    covered = [i for b in plan for i in range(b.start, b.stop)]
    assert covered == list(range(count))
    starts = [b.at_s for b in plan]
    assert starts[0] == 0.0
    assert starts == sorted(starts)
    assert all(0 <= t < spread for t in starts)
    assert all(b.stop - b.start <= size for b in plan)


@pytest.mark.parametrize(("count", "size", "spread"), [(10, 50, 2.0), (10, 0, 2.0), (100, 10, 0)])
def test_plan_closes_at_once_when_there_is_nothing_to_spread(
    count: int, size: int, spread: float
) -> None:
    assert [(b.at_s, b.start, b.stop) for b in drain_plan(count, size, spread)] == [(0.0, 0, count)]


def test_plan_jitters() -> None:
    one = [b.at_s for b in drain_plan(200, 20, 2.0, random.Random(1))]
    two = [b.at_s for b in drain_plan(200, 20, 2.0, random.Random(2))]
    assert one != two


@pytest.mark.slow
async def test_sigterm_drains_200_clients_in_batches(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(
        "--drain-seconds", "2", "--drain-batch", "20", "--shutdown-timeout", "6"
    )
    count = 200
    async with asyncio.timeout(40):
        clients = [await websockets.connect(f"{server.ws}/ws/c{i}") for i in range(count)]
        closed_at: list[float] = []

        async def watch(ws: websockets.ClientConnection) -> int | None:
            await ws.wait_closed()
            closed_at.append(time.monotonic())
            return ws.close_code

        watchers = [asyncio.create_task(watch(ws)) for ws in clients]
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*watchers)
        status = await asyncio.to_thread(server.proc.wait, 15)
        elapsed = time.monotonic() - start
    assert codes == [1001] * count
    assert status == 0  # a SIGTERM is a request to stop, not a failure
    assert elapsed < 6 + 3  # --shutdown-timeout plus process start-up slack
    spread = max(closed_at) - min(closed_at)
    assert spread > 0.8, f"closes spread over only {spread:.3f} s"
    # No instant takes everyone: at most a quarter of the clients close within any 100 ms.
    closed_at.sort()
    busiest = max(sum(1 for t in closed_at if t0 <= t < t0 + 0.1) for t0 in closed_at)
    assert busiest <= count // 4, busiest
