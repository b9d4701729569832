"""The token bucket and the strike counter, driven by a fake clock (no event loop)."""

from __future__ import annotations

import pytest

from wschat.ratelimit import RateLimiter, TokenBucket, Verdict


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True  # one token after 0.5 s at 2/s
    assert bucket.take(0.5) is False


def test_bucket_never_stores_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=2)
    bucket.take(0.0)
    assert [bucket.take(1000.0) for _ in range(3)] == [True, True, False]


def test_limiter_refuses_then_closes_sustained_abuse() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, strike_limit=3)
    verdicts = [limiter.check(0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 2 + [Verdict.REFUSE] * 3 + [Verdict.CLOSE]


def test_strikes_leak_away_so_an_occasional_burst_is_only_refused() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, strike_limit=3, strike_decay_per_s=1.0)
    now = 0.0
    for _ in range(50):  # two messages every 2 s: one allowed, one refused, forever
        assert limiter.check(now) is Verdict.ALLOW
        assert limiter.check(now) is Verdict.REFUSE
        now += 2.0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_rate_zero_turns_limiting_off(rate: float) -> None:
    limiter = RateLimiter(rate=rate, burst=1)
    assert all(limiter.check(0.0) is Verdict.ALLOW for _ in range(1000))


def test_a_sender_paces_itself_after_a_burst() -> None:
    """``wschat join`` sleeps ``wait_s()`` between lines past its burst (one bucket for all)."""
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.wait_s(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_s(0.0) == pytest.approx(0.1)
    assert bucket.wait_s(0.1) == 0.0
    assert [bucket.wait_s(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # never past the burst
    assert bucket.wait_s(10.0) > 0
