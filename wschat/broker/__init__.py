"""Brokers carry chat events between server processes; one interface, several engines.

A broker takes an *envelope* (a JSON-able dict: a room message, a DM or a presence change)
from ``publish`` and hands it to the ``deliver`` callback of every process subscribed — this
process included — which fans it out to its local sockets. The in-memory broker is for one
process; the Redis broker (``wschat.broker.redis``) joins many. ``redact`` is how a broker
URL is written anywhere a person may read it (logs, errors): without its password. Imports
only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

# user:password@ in the authority, and password= in the query (redis-py takes both).
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^@/?#]*?):([^@/?#]*)@")
_QUERY_PASSWORD = re.compile(r"([?&](?:sentinel_)?password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and error messages)."""
    url = _USERINFO.sub(r"\1\2:***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


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
