"""Three ``wschat serve --broker redis://...`` nodes: each client's ``joined``/``left`` stream,
folded over its welcome's members, ends equal to ``who`` after simultaneous arrivals on every
node and a SIGTERM drain of one node (issue 14)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.server.v1client import connect


class Folder:
    """One v1 connection's view of its room: the welcome's members, then every joined/left."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.name: str = welcome["name"]
        self.token: str = welcome["token"]
        self.view = set(welcome["members"])
        self.answers: asyncio.Queue[list[str]] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            event = json.loads(frame)
            if event["type"] == "joined":
                self.view.add(event["name"])
            elif event["type"] == "left":
                self.view.discard(event["name"])
            elif event["type"] == "members":
                self.answers.put_nowait(event["names"])

    async def who(self) -> tuple[set[str], set[str]]:
        """Ask ``who``; return its answer and the folded view at the moment it arrived."""
        await self.ws.send(json.dumps({"type": "who"}))
        names = set(await asyncio.wait_for(self.answers.get(), 5))
        return names, set(self.view)

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


async def _agree(clients: list[Folder], expected: set[str], within: float) -> None:
    """Wait until every client's ``who`` is ``expected`` and its folded view equals it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answers = [await c.who() for c in clients]
        wrong = {c.name: a for c, a in zip(clients, answers, strict=True) if a != (expected,) * 2}
        if not wrong:
            return
        if loop.time() > deadline:
            report = {n: (sorted(w ^ expected), sorted(v ^ w)) for n, (w, v) in wrong.items()}
            raise AssertionError(f"who^expected, view^who per client: {report}")
        await asyncio.sleep(0.3)


async def test_presence_events_follow_who_across_arrivals_and_a_drain(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    args = ("--broker", redis_server.url, "--node-ttl", "1.5", "--presence-grace", "3")
    args += ("--drain-seconds", "0.2")
    nodes: list[Server] = [server_factory(*args) for _ in range(3)]
    async with asyncio.timeout(40):
        # 7 arrivals per node, all at once: the registry is read while others are arriving.
        made = await asyncio.gather(*(connect(nodes[i % 3], f"u{i}") for i in range(21)))
        clients = [Folder(ws, welcome) for ws, welcome in made]
        everyone = {c.name for c in clients}
        await _agree(clients, everyone, within=8)

        # Node 2 drains: its clients are closed 1012; two come back on node 0 with their
        # resume tokens, the others do not come back at all.
        drained = [c for i, c in enumerate(clients) if i % 3 == 2]
        assert nodes[2].stop(signal.SIGTERM) == 0
        back = [Folder(*(await connect(nodes[0], c.name, resume=c.token))) for c in drained[:2]]
        for c in drained:
            c.task.cancel()
        survivors = [c for i, c in enumerate(clients) if i % 3 != 2] + back
        await _agree(survivors, {c.name for c in survivors}, within=10)
        for c in survivors:
            await c.close()
