"""Close chat connections when their signed token expires (issue 15; docs/security.md).

A connection opened with a token (``wschat serve --secret``) may speak until the token's
``exp``; then it is closed with ``CloseCode.TOKEN_EXPIRED`` (4011). ``Expiries`` keeps one
timer for every such connection of a process, in the way of the transport's shared
keepalive: connections wait in the set of their ``exp`` second (a JWT ``exp`` is whole
seconds), the seconds in a heap, and one ``TimerHandle`` is armed for the earliest. A
connection costs an entry in its second's set and the ``Member.expires_at`` slot, no task
and no timer handle of its own; one second shared by many tokens costs one set.

Imports the chat layer's ``Member`` and the pure core; nothing of the transport.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable

from wschat.protocol import CloseCode
from wschat.server.chat.member import Member

EXPIRED_REASON = "token expired"


class Expiries:
    """Connections by the second their token expires; closes them 4011 then, all on one timer.

    ``clock`` is the wall clock (``time.time``) that a JWT ``exp`` is written in; the timer is
    set on the event loop's clock, ``exp - clock()`` seconds ahead.
    """

    __slots__ = ("_clock", "_due", "_handle", "_heap", "closed")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._due: dict[int, set[Member]] = {}
        self._heap: list[int] = []  # the keys of ``_due``, plus some already emptied
        self._handle: asyncio.TimerHandle | None = None
        self.closed = 0  # connections closed 4011, for logs and tests

    def __len__(self) -> int:
        return sum(len(members) for members in self._due.values())

    def add(self, conn: Member, exp: int) -> None:
        """Close ``conn`` with 4011 at ``exp`` (Unix seconds), unless ``discard`` comes first.

        Call from the event loop, once the connection is registered; an ``exp`` already
        past closes it at the next loop pass.
        """
        self.discard(conn)
        conn.expires_at = exp
        members = self._due.get(exp)
        if members is None:
            members = self._due[exp] = set()
            heapq.heappush(self._heap, exp)
        members.add(conn)
        if self._heap[0] == exp:
            self._arm()

    def discard(self, conn: Member) -> None:
        """Forget ``conn`` (it ended); safe to call for a connection never added."""
        exp = conn.expires_at
        if exp is None:
            return
        conn.expires_at = None
        members = self._due.get(exp)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._due[exp]  # its heap entry is skipped when it comes up

    def cancel(self) -> None:
        """Stop the timer (the service is closing); the connections are closed by the hub."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        heap = self._heap
        while heap and heap[0] not in self._due:
            heapq.heappop(heap)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if heap:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(max(0.0, heap[0] - self._clock()), self._run)

    def _run(self) -> None:
        self._handle = None
        now = self._clock()
        heap = self._heap
        while heap and heap[0] <= now:
            for conn in self._due.pop(heapq.heappop(heap), ()):
                conn.expires_at = None
                self.closed += 1
                conn.close(CloseCode.TOKEN_EXPIRED, EXPIRED_REASON)
        self._arm()
