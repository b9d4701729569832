"""A v1 test client that says lines one at a time until each is acknowledged, recording
everything it is sent: the way to count lost and doubled messages across a Redis fault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.server.v1client import say


class Talker:
    """One v1 connection that says numbered lines one at a time, each with a ``cid``, and
    records what came back: echoes by cid, errors, and every event in order."""

    def __init__(
        self, ws: ClientConnection, name: str, log: Callable[[], str] | None = None
    ) -> None:
        self.ws = ws
        self.name = name
        self.log = log  # its server's log, shown when a say gets no answer
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            self.events.append(json.loads(frame))
            self.changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def echoed(self, cid: str) -> int:
        return sum(1 for m in self.of("message") if m.get("cid") == cid)

    async def say_until_acked(self, text: str, cid: str, within: float = 30.0) -> int:
        """Say ``text`` (the same cid each time) until it is echoed; an ``unavailable``
        error means "not stored, send it again". Return how many errors it took."""
        try:
            return await self._say_until_acked(text, cid, within)
        except TimeoutError:
            log = self.log()[-6000:] if self.log is not None else ""
            raise AssertionError(
                f"{self.name}: {text!r} got neither its echo nor an error within {within} s;"
                f" last events {self.events[-3:]}\n{log}"
            ) from None

    async def _say_until_acked(self, text: str, cid: str, within: float) -> int:
        errors = 0
        async with asyncio.timeout(within):
            while True:
                seen = len(self.of("error"))
                await say(self.ws, text, cid=cid)
                while not self.echoed(cid) and len(self.of("error")) == seen:
                    self.changed.clear()
                    await self.changed.wait()
                if self.echoed(cid):
                    return errors
                assert self.of("error")[-1]["code"] == "unavailable", self.of("error")[-1]
                errors += 1
                await asyncio.sleep(0.2)
                # Refused means not stored: its echo must not come after all (never both).
                assert not self.echoed(cid), f"{text} was refused and delivered"

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
