"""Per-connection rate limiting: a token bucket and a strike counter for sustained abuse.

Pure state with no clock of its own: callers pass ``now`` (monotonic seconds), so tests need
no event loop and no sleeping. Imports nothing outside the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

DEFAULT_RATE_PER_S = 20.0
DEFAULT_BURST = 40
# A refused message adds a strike; strikes leak away at this pace, so a client that trips the
# limit now and then is only told off, while one that keeps sending past it is closed.
STRIKE_LIMIT = 10
STRIKE_DECAY_PER_S = 1.0


class Verdict(Enum):
    ALLOW = "allow"  # handle the message
    REFUSE = "refuse"  # drop it and tell the client (error ``rate_limited``)
    CLOSE = "close"  # sustained abuse: close the connection with 1008


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; one message costs one token."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens and return True, or return False (spending nothing)."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Take one token and return 0, or take none and return how long until one is there.

        For a sender pacing itself (``wschat join``): sleep that long, then ask again.
        """
        if self.take(now):
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(slots=True)
class RateLimiter:
    """A bucket plus strikes: decide, per incoming message, to allow, refuse or close.

    ``rate`` <= 0 turns limiting off (every message is allowed).
    """

    rate: float = DEFAULT_RATE_PER_S
    burst: float = DEFAULT_BURST
    strike_limit: int = STRIKE_LIMIT
    strike_decay_per_s: float = STRIKE_DECAY_PER_S
    strikes: float = field(default=0.0, init=False)
    _bucket: TokenBucket = field(init=False)
    _struck: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate, max(1.0, self.burst))

    def check(self, now: float) -> Verdict:
        """Account for one incoming message at ``now``; the caller acts on the verdict."""
        if self.rate <= 0 or self._bucket.take(now):
            return Verdict.ALLOW
        if self._struck is not None:
            leaked = (now - self._struck) * self.strike_decay_per_s
            self.strikes = max(0.0, self.strikes - leaked)
        self._struck = now
        self.strikes += 1
        return Verdict.CLOSE if self.strikes > self.strike_limit else Verdict.REFUSE
