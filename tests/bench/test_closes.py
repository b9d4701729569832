"""A server that closes connections mid-run: each close counted once, by code, and what it
cut off counted apart from losses and from a slow sender (issue 18)."""

from __future__ import annotations

from tests.bench.plain_server import plain_server
from wschat.bench.config import BenchConfig, Scenario
from wschat.bench.runner import run_bench


async def test_a_closed_connection_is_one_close_not_unsent_reply_timeouts_or_loss() -> None:
    # the server closes sender 0 (4000) when its 6th message (seq 5) arrives, without echoing it
    def close_sender_0(sender: int, seq: int) -> tuple[int, int] | None:
        return (0, 4000) if (sender, seq) == (0, 5) else None

    async with plain_server(close_at=close_sender_0) as srv:
        common = {"url": srv.url, "n": 2, "scenario": Scenario.ECHO, "messages": 20}
        open_loop = await run_bench(BenchConfig(**common, rate=50, duration_s=5))  # type: ignore[arg-type]
        closed_loop = await run_bench(BenchConfig(**common, reply_timeout_s=1))  # type: ignore[arg-type]
    for result in (open_loop, closed_loop):
        s = result.stats
        # one close, by its code: not also "unsent (behind schedule)" nor "reply timeout"
        assert dict(s.errors) == {"close 4000": 1}, s.errors
        assert result.unsent == 0
        # seq 5, unanswered, and whatever sender 0 sent before the close reached it (at 50/s
        # in open loop, sometimes seq 6 too) went to a receiver the server closed: missed,
        # not lost
        sent_by_0 = s.sent - 20
        assert (s.lost, s.missed_while_closed) == (0, sent_by_0 - 5) and sent_by_0 >= 6
        assert s.delivered == 20 + 5
    # open loop: sender 0's remaining schedule was cancelled by the close
    sent_by_0 = open_loop.stats.sent - 20
    assert open_loop.cancelled == 20 - sent_by_0 >= 10


async def test_copies_for_a_receiver_already_closed_are_not_lost() -> None:
    # receiver 3 is closed (4001) just before message 5 of sender 0 is broadcast
    def close_receiver_3(sender: int, seq: int) -> tuple[int, int] | None:
        return (3, 4001) if seq == 5 else None

    async with plain_server(close_at=close_receiver_3) as srv:
        config = BenchConfig(url=srv.url, n=4, messages=20, rate=50, duration_s=5)
        result = await run_bench(config)
    s = result.stats
    assert dict(s.errors) == {"close 4001": 1}, s.errors
    assert s.lost == 0  # every live receiver got every copy
    assert s.missed_while_closed == 15  # seq 5..19 for the closed receiver
    assert s.delivered == 4 * 20 - 15
    assert (result.unsent, result.cancelled) == (0, 0)  # the sender was not the one closed
