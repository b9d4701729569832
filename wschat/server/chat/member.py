"""A chat connection: a ``Connection`` plus what the chat layer keeps per member.

``Member`` subclasses the connection layer's ``Connection`` rather than wrapping it, so the
hub's groups hold members directly: fan-out reads ``v1``/``last_id``/``pending`` and offers
the frame on one object, with no extra indirection per delivery and no extra object per
socket (``__slots__``; an idle chat socket stays under 10 KB, docs/performance.md). The
member's room is the connection's hub ``group``; change it only through ``Hub.join``.

Imports the connection layer and the pure core; no socket type, nothing of the handlers.
"""

from __future__ import annotations

from wschat.ratelimit import RateLimiter
from wschat.server.conn.connection import OUTBOX_BYTES, Coalescer, Connection, Socket
from wschat.store import StoredMessage


class Member(Connection):
    """One chat connection: its name, dialect and place in its room's message sequence."""

    __slots__ = (
        "awaiting",
        "epoch",
        "expires_at",
        "last_id",
        "limiter",
        "name",
        "pending",
        "replaced",
        "v1",
    )

    def __init__(
        self,
        socket: Socket,
        name: str,
        room: str,
        *,
        v1: bool,
        outbox_size: int,
        close_timeout_s: float,
        coalescer: Coalescer | None = None,
        outbox_bytes: int = OUTBOX_BYTES,
    ) -> None:
        super().__init__(
            socket,
            name,
            room,
            outbox_size=outbox_size,
            close_timeout_s=close_timeout_s,
            coalescer=coalescer,
            outbox_bytes=outbox_bytes,
        )
        self.name = name
        self.v1 = v1
        self.last_id = 0  # v1: the newest room message id queued for this peer
        self.epoch = ""  # v1: the epoch of ``last_id`` (the room's sequence; issue 14)
        # v1: while the room's history is being read, live messages wait here (service.enter)
        self.pending: list[StoredMessage] | None = None
        # v1 with Redis: its own says stored and not yet shown back to it (``Fanout``'s
        # ``adopt_epoch`` answers them if the room's epoch changes first; issue 14)
        self.awaiting: list[StoredMessage] | None = None
        self.replaced = False  # the same user reconnected; this socket no longer owns the name
        self.limiter: RateLimiter | None = None  # made at the first message (handlers)
        self.expires_at: int | None = None  # its token's exp, while ``chat.expiry`` holds it

    @property
    def room(self) -> str:
        """Return the member's room (its hub group)."""
        room = self.group
        if room is None:  # never: a member is made with its room
            raise RuntimeError(f"member {self.name!r} has no room")
        return room
