"""The Redis store's replay cap (issue 15): the newest page after ``since``, and ``gap``."""

from __future__ import annotations

import pytest

from tests.broker.conftest import RedisServer
from tests.store.cases import CAPPED_REPLAYS
from wschat.broker.redis import connect
from wschat.store.redis import RedisStore


@pytest.mark.parametrize(
    ("since", "most", "ids", "gap"),
    CAPPED_REPLAYS,
)
async def test_a_capped_replay_is_the_newest_page_and_says_gap(
    redis_server: RedisServer, since: int, most: int | None, ids: list[int], gap: bool
) -> None:
    client = connect(redis_server.url)
    try:
        store = RedisStore(client, 1000)
        for i in range(30):
            await store.append("r", "a", f"m{i}", 0.0)
        replay = await store.replay("r", since, 50, most=most)
        assert [m.id for m in replay.messages] == ids
        assert [m.text for m in replay.messages] == [f"m{i - 1}" for i in ids]
        assert (replay.gap, replay.latest) == (gap, 30)
        latest = await store.replay("r", None, 3)  # without since: the last few, unchanged
        assert [m.id for m in latest.messages] == [28, 29, 30] and not latest.gap
    finally:
        await client.aclose()
