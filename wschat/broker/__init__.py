"""Brokers carry chat events between server processes; one interface, several engines.

A broker takes an *envelope* (a JSON-able dict: a room message, a DM or a presence change)
from ``publish`` and hands it to the ``deliver`` callback of every process subscribed — this
process included — which fans it out to its local sockets. The in-memory broker is for one
process; the Redis broker (``wschat.broker.redis``) joins many. Imports only the standard
library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Envelope = dict[str, Any]
Deliver = Callable[[Envelope], None]


class Broker(Protocol):
    """Carries envelopes to every subscribed process, in publish order per publisher."""

    name: str

    async def start(self, deliver: Deliver) -> None:
        """Begin calling ``deliver`` for each envelope published anywhere."""
        ...

    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to every process; the local one gets it before this returns
        when the engine allows (the in-memory one always does)."""
        ...

    def state(self) -> str:
        """Return a one-word state for /healthz: ``ok``, ``connecting`` or ``down``."""
        ...

    async def close(self) -> None:
        """Stop delivering and release connections."""
        ...
