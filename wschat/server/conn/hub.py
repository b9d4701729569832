"""The registry of live connections on one server process, and fan-out to them.

``Hub`` knows which connection is in which room and delivers a prepared frame to each member
without awaiting anyone (see ``Connection.offer``). It keeps the counters that ``/healthz``
and the metrics report.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

from wschat.protocol import CloseCode
from wschat.server.conn.connection import Coalescer, Connection, Outgoing
from wschat.server.conn.drain import drain_plan

log = logging.getLogger("wschat.server")


class Hub:
    """Live connections by room; every method is synchronous but ``close_all``."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.rooms: dict[str, set[Connection]] = {}
        self.closed_by_code: Counter[int] = Counter()
        self.slow_consumers = 0
        self.deliveries = 0
        self.coalescer = Coalescer()
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: Connection) -> None:
        """Register ``conn`` (and put it in its room, if it has one)."""
        self.connections.add(conn)
        self._empty.clear()
        if conn.room is not None:
            self.rooms.setdefault(conn.room, set()).add(conn)

    def remove(self, conn: Connection, code: int | None) -> None:
        """Forget ``conn``; safe to call twice. ``code`` is the close code it ended with."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if code is not None:
            self.closed_by_code[code] += 1
        if conn.room is not None:
            self.leave(conn)
        if not self.connections:
            self._empty.set()

    def leave(self, conn: Connection) -> None:
        """Take ``conn`` out of its room, dropping the room when it empties."""
        members = self.rooms.get(conn.room) if conn.room is not None else None
        if members is not None:
            members.discard(conn)
            if not members:
                del self.rooms[conn.room]  # type: ignore[arg-type]

    def members(self, room: str) -> set[Connection]:
        """Return the live set of ``room``'s connections (empty if there is none)."""
        return self.rooms.get(room, set())

    def deliver(self, receivers: Iterable[Connection], frame: Outgoing) -> int:
        """Offer one prepared ``frame`` to each receiver; return how many took it.

        The frame is built once by the caller and serialised at most once for all. A receiver whose outbox is full
        is closed with ``CloseCode.SLOW_CONSUMER``; nobody else waits for it.
        """
        delivered = 0
        slow: list[Connection] = []
        for conn in receivers:
            if conn.offer(frame):
                delivered += 1
            else:
                slow.append(conn)
        for conn in slow:
            self.drop_slow(conn)
        self.deliveries += delivered
        return delivered

    def deliver_each(self, pairs: list[tuple[Connection, Outgoing]]) -> int:
        """Offer each connection its own prepared frame; see ``deliver`` for the policy."""
        delivered = 0
        for conn, frame in pairs:
            if conn.offer(frame):
                delivered += 1
            else:
                self.drop_slow(conn)
        self.deliveries += delivered
        return delivered

    def drop_slow(self, conn: Connection) -> None:
        """Count ``conn`` as a slow consumer and close it 4001, dropping what it has queued."""
        self.slow_consumers += 1
        log.warning("closing %s: outbox full (slow consumer)", conn.name)
        conn.close(CloseCode.SLOW_CONSUMER, "outbox full", flush=False)

    async def close_all(
        self, code: int, timeout_s: float, *, drain_s: float = 0.0, batch_size: int = 0
    ) -> None:
        """Close every connection with ``code`` after its queued frames; abort the rest.

        With ``drain_s`` and ``batch_size`` the closes go out in batches of ``batch_size``
        spread with jitter over ``drain_s`` seconds (see ``drain.drain_plan``), at most half
        of ``timeout_s``, so that every close frame is sent before the deadline. Returns when
        the registry is empty or ``timeout_s`` passed, whichever comes first.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        conns = list(self.connections)
        plan = drain_plan(len(conns), batch_size, min(drain_s, timeout_s / 2))
        if len(plan) > 1:
            log.info(
                "draining %d connections in %d batches over %.1f s",
                len(conns),
                len(plan),
                plan[-1].at_s,
            )
        try:
            async with asyncio.timeout_at(started + timeout_s):
                for batch in plan:
                    await asyncio.sleep(max(0.0, started + batch.at_s - loop.time()))
                    for conn in conns[batch.start : batch.stop]:
                        conn.close(code, "server shutting down")
                for conn in list(self.connections):  # any that arrived meanwhile
                    conn.close(code, "server shutting down")
                await self._empty.wait()
        except TimeoutError:
            log.warning("aborting %d connections that did not close", len(self.connections))
            for conn in list(self.connections):
                conn.abort()
