"""A well-behaved wschat.v1 client that measures what an attack costs everybody else."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import Server

# The bystander says something every 20 ms (50/s), over the default --rate-limit of 20/s:
# servers it runs against need these flags (rate limiting stays on, above its pace).
BYSTANDER_FLAGS = ("--rate-limit", "100", "--rate-burst", "200")
FLOOR_S = 0.005  # the smallest baseline p99 a comparison uses (see ``Bystander.check``)
MIN_ATTACK_S = 3.0  # the shortest attack window measured: 150 round trips, so p99 is not the max
BASELINE_S = 2.5  # the window without attack that the p99 is compared with


def p99(samples: list[float]) -> float:
    """The 99th percentile by nearest rank (the largest sample below 100 samples)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Bystander:
    """A v1 client in a room of its own that ``say``s at a steady pace and times each echo.

    Every ``interval`` seconds it sends ``{"type": "say", "cid": "b<n>", ...}`` and waits for
    nothing: a reader matches each ``message`` that comes back to its ``cid`` and records the
    round trip under the phase that was current when the ``say`` was sent ("baseline" until
    ``attack()`` starts, "attack" inside it, "after" once it ends).

    Use::

        async with Bystander.running(server) as bystander:
            await bystander.baseline(1.5)
            async with bystander.attack():
                ...  # run the attacker
        bystander.check()

    ``check`` asserts that nothing was lost (every ``say`` acknowledged exactly once, in order,
    with the room's ids strictly increasing by one from the welcome's ``latest``, and no
    ``error`` event) and that the attack's p99 round trip is at most twice the baseline's.
    The baseline p99 counts as at least 5 ms (``FLOOR_S``): on a loaded 2-core CI machine an
    idle loopback round trip of well under a millisecond doubles by chance, and 10 ms is still
    far below what a stalled event loop costs. Run the server with ``BYSTANDER_FLAGS``.
    """

    server: Server
    name: str = "bystander"
    room: str = "quiet"
    interval: float = 0.02
    phase: str = "baseline"
    sent: dict[str, tuple[float, str]] = field(default_factory=dict)  # cid -> (at, phase)
    order: list[str] = field(default_factory=list)  # cids in the order they were sent
    acked: list[tuple[str, int]] = field(default_factory=list)  # (cid, id) as they came back
    rtts: dict[str, list[float]] = field(default_factory=dict)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    first_id: int = 0
    local_port: int = 0  # the bystander's own port, to tell its socket from an attacker's
    attack_s: float = 0.0
    stopping: bool = False

    @classmethod
    @asynccontextmanager
    async def running(cls, server: Server, **kwargs: Any) -> AsyncIterator[Bystander]:
        """Connect, keep saying things while the block runs, then wait for the last echoes."""
        self = cls(server, **kwargs)
        ws = await websockets.connect(
            f"{server.ws}/ws/{self.name}?room={self.room}",
            subprotocols=["wschat.v1"],  # type: ignore[list-item]
        )
        async with asyncio.timeout(5):
            welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        self.first_id = int(welcome["latest"]) + 1
        self.local_port = ws.local_address[1]
        reader = asyncio.create_task(self._read(ws))
        sender = asyncio.create_task(self._send(ws))
        try:
            yield self
        finally:
            self.stopping = True  # the sender finishes its current ``say`` and stops
            try:
                await asyncio.wait_for(sender, 5)
                async with asyncio.timeout(5):  # the last echoes (a lost one fails ``check``)
                    while len(self.acked) < len(self.order) and not reader.done():
                        await asyncio.sleep(0.01)
            except TimeoutError:
                pass
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await ws.close()

    async def _send(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        n = 0
        while not self.stopping:
            cid = f"b{n}"
            n += 1
            self.sent[cid] = (time.perf_counter(), self.phase)
            self.order.append(cid)
            await ws.send(json.dumps({"type": "say", "text": f"steady {cid}", "cid": cid}))
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            now = time.perf_counter()
            event = json.loads(frame)
            cid = event.get("cid")
            if event.get("type") != "message" or cid not in self.sent:
                self.unexpected.append(event)
                continue
            at, phase = self.sent[cid]
            self.acked.append((cid, int(event["id"])))
            self.rtts.setdefault(phase, []).append(now - at)

    async def baseline(self, seconds: float) -> None:
        """Measure ``seconds`` without any attack."""
        self.phase = "baseline"
        await asyncio.sleep(seconds)

    @asynccontextmanager
    async def attack(self) -> AsyncIterator[None]:
        """Count the ``say``s sent inside this block as sent during the attack."""
        self.phase = "attack"
        started = time.perf_counter()
        try:
            yield
            # An attack the server stops at once still gets a window long enough for a p99
            # (and for its aftermath, such as a close, to show).
            await asyncio.sleep(max(0.0, MIN_ATTACK_S - (time.perf_counter() - started)))
        finally:
            self.attack_s = time.perf_counter() - started
            self.phase = "after"

    def summary(self) -> dict[str, Any]:
        return {
            "sent": len(self.order),
            "acked": len(self.acked),
            "baseline_p99_ms": round(p99(self.rtts.get("baseline", [math.inf])) * 1000, 2),
            "attack_p99_ms": round(p99(self.rtts.get("attack", [math.inf])) * 1000, 2),
            "attack_samples": len(self.rtts.get("attack", [])),
            "attack_s": round(self.attack_s, 2),
            "unexpected": self.unexpected[:5],
        }

    def check(self) -> None:
        """Assert: nothing lost, nothing twice, in order, and p99 during the attack within 2x."""
        summary = self.summary()
        assert not self.unexpected, summary
        assert [cid for cid, _ in self.acked] == self.order, summary  # each once, in order
        ids = [i for _, i in self.acked]
        assert ids == list(range(self.first_id, self.first_id + len(ids))), summary
        assert len(self.rtts.get("baseline", [])) >= 20, summary
        assert len(self.rtts.get("attack", [])) >= 5, summary
        limit = 2 * max(p99(self.rtts["baseline"]), FLOOR_S)
        assert p99(self.rtts["attack"]) <= limit, summary
