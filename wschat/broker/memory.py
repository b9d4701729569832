"""The in-memory broker: one process, envelopes delivered synchronously to this process."""

from __future__ import annotations

from wschat.broker import Deliver, Envelope


class MemoryBroker:
    """Delivers each published envelope to the local process, at once and in order."""

    name = "memory"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, envelope: Envelope) -> None:
        if self._deliver is not None:
            self._deliver(envelope)

    def state(self) -> str:
        return "ok"

    async def close(self) -> None:
        self._deliver = None
