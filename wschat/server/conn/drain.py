"""When to close which connections on shutdown: a pure schedule, no I/O (stdlib only).

Closing thousands of sockets with 1001 in the same instant makes every client reconnect in the
same instant, to the next server or to this one restarted: a thundering herd. ``drain_plan``
splits the connections into batches and gives each batch a start time inside the spread, one
batch per slot at a random point of its slot, so the closes, and the reconnects they trigger,
are spread out (the clients add their own backoff jitter on top).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batch:
    """Close connections ``start`` to ``stop`` (indexes into the caller's list) at ``at_s``."""

    at_s: float
    start: int
    stop: int


def drain_plan(
    count: int, batch_size: int, spread_s: float, rng: random.Random | None = None
) -> list[Batch]:
    """Return the batches that close ``count`` connections over ``spread_s`` seconds.

    The first batch starts at 0; batch ``i`` of ``k`` starts at a random time in
    ``[i, i + 1) * spread_s / k``, so the start times increase and all lie within the spread.
    A ``batch_size`` below 1, a spread of 0, or a single batch closes everyone at once.
    """
    if count <= 0:
        return []
    if batch_size < 1 or spread_s <= 0 or count <= batch_size:
        return [Batch(0.0, 0, count)]
    rng = rng or random.Random()
    batches = math.ceil(count / batch_size)
    slot = spread_s / batches
    plan = []
    for i in range(batches):
        at = 0.0 if i == 0 else (i + rng.random()) * slot
        plan.append(Batch(at, i * batch_size, min(count, (i + 1) * batch_size)))
    return plan
