"""Message history: one interface (``HistoryStore``), a SQLite implementation (the default).

A store assigns each room message its id (one more than the room's last, never reused, also
across restarts) at the moment it is stored, so that the id order is the delivery order.
Where the store itself may lose its sequence (Redis without persistence, a failover to a
replica that lagged), it says so with a new *epoch*: ``(epoch, id)`` is never reused.
Imports only the standard library and the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from wschat.protocol import message_event


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One room message as stored and replayed."""

    room: str
    id: int
    sender: str
    text: str
    ts: float
    action: bool = False
    cid: str | None = None  # the sender's own id for it (``say``'s ``cid``), if it gave one
    epoch: str = ""  # the room's epoch it belongs to ("" when the store does not say)
    base: int = 0  # the epoch's first id is base + 1 (see ``Replay.base``)

    def event(self) -> dict[str, Any]:
        """Return the ``message`` event of the v1 protocol for this message."""
        return message_event(
            self.room, self.id, self.sender, self.text, self.ts, self.action, self.cid
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """What a client entering a room is sent before live messages."""

    messages: list[StoredMessage]
    latest: int  # the room's newest id (0 when the room has no history)
    gap: bool  # some messages after ``since`` are not in ``messages``: deleted, or past ``most``
    # The room's id sequence: ids are unique within an epoch, and a new epoch starts whenever
    # the store may have lost or reset the sequence (issue 14). Its ids are all above ``base``.
    epoch: str = ""
    base: int = 0


class HistoryStore(Protocol):
    """Where room messages live; every method may be called concurrently from one loop."""

    # True when ``append`` also publishes the message to every process (the Redis store,
    # atomically with its id); False when the caller must publish it (SQLite).
    publishes: bool

    async def append(
        self,
        room: str,
        sender: str,
        text: str,
        ts: float,
        action: bool = False,
        cid: str | None = None,
    ) -> StoredMessage:
        """Store a message, give it the room's next id and return it; it is then durable."""
        ...

    async def replay(
        self,
        room: str,
        since: int | None,
        limit: int,
        *,
        most: int | None = None,
        chars: int | None = None,
    ) -> Replay:
        """Return the messages after ``since`` in id order, or the last ``limit`` when
        ``since`` is None.

        With ``most``, at most the newest ``most`` messages after ``since`` are read (the
        query has that LIMIT) and ``gap`` is True when older ones were left out (issue 15);
        without it, all of them (a repair of a few missed ids). ``chars`` is a hint with
        ``most``: a store may stop reading older messages once the texts read pass that many
        characters (the caller trims to its byte budget, which is at least as strict).
        """
        ...

    async def close(self) -> None:
        """Release the store's resources."""
        ...
