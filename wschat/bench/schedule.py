"""The open-loop schedule: when each sender's messages are due, and how many (pure).

With ``--rate R`` every sender sends one message each ``1/R`` s, the senders staggered evenly
over the first interval so that they do not all send in the same instant. Times are integer
nanoseconds from the start of the load phase, so the count of messages due before the end
(``count``) is exactly the number of due times ``due_ns`` gives before it; the runner sends by
``due_ns`` and reports by ``count`` what never left (``unsent``) or was cut off by a close
(``cancelled by close``). No clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Schedule:
    """The open loop of ``senders`` senders, ``rate`` messages/s each, for ``duration_s``.

    ``messages`` bounds each sender's count (0: no bound). ``rate`` must be above 0.
    """

    rate: float
    senders: int
    duration_s: float
    messages: int = 0

    @property
    def interval_ns(self) -> int:
        return int(1e9 / self.rate)

    def first_ns(self, slot: int) -> int:
        """Return when sender ``slot`` (0-based) sends its first message."""
        return int(slot / max(1, self.senders) / self.rate * 1e9)

    def due_ns(self, slot: int, seq: int) -> int | None:
        """Return when message ``seq`` of sender ``slot`` is due, or ``None`` if it is not."""
        if self.messages and seq >= self.messages:
            return None
        due = self.first_ns(slot) + seq * self.interval_ns
        return due if due < int(self.duration_s * 1e9) else None

    def count(self, slot: int) -> int:
        """Return how many messages sender ``slot`` is due to send (those ``due_ns`` gives)."""
        span = int(self.duration_s * 1e9) - self.first_ns(slot)
        due = max(0, -(-span // self.interval_ns))  # ceil: seq 0 is due at the start
        return min(due, self.messages) if self.messages else due
