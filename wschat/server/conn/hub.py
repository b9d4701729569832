"""The registry of live connections on one server process, and the one delivery policy.

``Hub`` knows which connection is in which fan-out group (the chat layer's rooms; plain keys
here) and delivers prepared frames without awaiting anyone (see ``Connection.offer``). Every
frame any layer sends to a peer goes through ``deliver``, ``deliver_each`` or ``send``: a
full outbox always closes the receiver with ``CloseCode.SLOW_CONSUMER`` (``drop_slow``), and
the counters that ``/healthz`` and the metrics report live in one ``Stats``.

Imports the connection layer and ``wschat.protocol``; nothing of the chat layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

from wschat.protocol import CloseCode
from wschat.server.conn.connection import Coalescer, Connection
from wschat.server.conn.drain import drain_plan
from wschat.server.conn.outgoing import Outgoing

log = logging.getLogger("wschat.server")


class Stats:
    """The delivery counters of one hub (plain ints, read at scrape time)."""

    __slots__ = ("closed_by_code", "deliveries", "slow_consumers")

    def __init__(self) -> None:
        self.deliveries = 0  # frames queued or written to a connection
        self.slow_consumers = 0  # connections closed 4001
        self.closed_by_code: Counter[int] = Counter()  # connections ended, by close code


class Hub:
    """Live connections, and by group; every method is synchronous but ``close_all``.

    Only the layer above files connections under groups (``join``), and it knows what type
    it files: the chat layer files only its ``Member``s (see ``chat.fanout``).
    """

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.rooms: dict[str, set[Connection]] = {}
        self.stats = Stats()
        self.coalescer = Coalescer()
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: Connection) -> None:
        """Register ``conn`` as live (in no group: see ``join``); safe to call twice."""
        self.connections.add(conn)
        self._empty.clear()

    def join(self, conn: Connection, group: str) -> None:
        """Register ``conn`` and file it under ``group``, leaving the group it was in."""
        if conn.group != group:
            self.leave(conn)
            conn.group = group
        self.add(conn)
        self.rooms.setdefault(group, set()).add(conn)

    def remove(self, conn: Connection, code: int | None) -> None:
        """Forget ``conn``; safe to call twice. ``code`` is the close code it ended with."""
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        if code is not None:
            self.stats.closed_by_code[code] += 1
        self.leave(conn)
        if not self.connections:
            self._empty.set()

    def leave(self, conn: Connection) -> None:
        """Take ``conn`` out of its group's set, dropping the set when it empties.

        ``conn.group`` is kept: it still names where the connection was, for its last logs.
        """
        group = conn.group
        if group is None:
            return
        members = self.rooms.get(group)
        if members is not None:
            members.discard(conn)
            if not members:
                del self.rooms[group]

    def members(self, group: str) -> set[Connection]:
        """Return the live set of ``group``'s connections (empty if there is none)."""
        return self.rooms.get(group, set())

    def fresh_pass(self) -> bool:
        """Return whether a broadcast may write at once (``Coalescer.fresh_pass``)."""
        return self.coalescer.fresh_pass()

    def deliver(
        self, receivers: Iterable[Connection], frame: Outgoing, *, direct: bool = False
    ) -> int:
        """Offer one prepared ``frame`` to each receiver; return how many took it.

        The frame is built once by the caller and serialised at most once for all. With
        ``direct`` (the first broadcast of a loop pass, ``fresh_pass``) it is written at once
        to each receiver with nothing queued. A receiver whose outbox is full is closed with
        ``CloseCode.SLOW_CONSUMER``; nobody else waits for it. Neither write nor offer changes
        a group's set while the caller walks it: a failed write is reported by the transport
        in a later pass.
        """
        delivered = 0
        slow: list[Connection] = []
        if direct:  # two loops, not a test per receiver: this is the fan-out hot path
            for conn in receivers:
                if conn.write_now(frame) or conn.offer(frame):
                    delivered += 1
                else:
                    slow.append(conn)
        else:
            for conn in receivers:
                if conn.offer(frame):
                    delivered += 1
                else:
                    slow.append(conn)
        for conn in slow:
            self.drop_slow(conn)
        self.stats.deliveries += delivered
        return delivered

    def deliver_each(self, pairs: Iterable[tuple[Connection, Outgoing]]) -> int:
        """Offer each connection its own prepared frame; see ``deliver`` for the policy."""
        delivered = 0
        for conn, frame in pairs:
            delivered += self.send(conn, frame)
        return delivered

    def send(self, conn: Connection, frame: Outgoing) -> bool:
        """Offer one reply to one connection; see ``deliver`` for the policy."""
        if conn.offer(frame):
            self.stats.deliveries += 1
            return True
        self.drop_slow(conn)
        return False

    def drop_slow(self, conn: Connection, reason: str = "outbox full") -> None:
        """Count ``conn`` as a slow consumer and close it 4001, dropping what it has queued.

        Does nothing to a connection already closing.
        """
        if conn.close_code is not None:
            return
        self.stats.slow_consumers += 1
        log.warning("closing %s: %s (slow consumer)", conn.label, reason)
        conn.close(CloseCode.SLOW_CONSUMER, reason, flush=False)

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
