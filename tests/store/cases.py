"""Cases every ``HistoryStore`` must pass alike."""

from __future__ import annotations

# (since, most, ids, gap) after 30 messages: a capped replay is the newest page (issue 15).
CAPPED_REPLAYS = [
    (0, 10, list(range(21, 31)), True),  # capped: the newest 10, and a gap before them
    (20, 10, list(range(21, 31)), False),  # exactly 10 after since: all of them
    (25, 10, list(range(26, 31)), False),
    (0, None, list(range(1, 31)), False),  # no cap (a repair): everything
]
