"""The pure measurement core: histograms, sequence checks, counters; no event loop."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hdrh.histogram import HdrHistogram

from wschat.bench.stats import (
    LATENCY_MAX_US,
    SIGNIFICANT_FIGURES,
    BenchStats,
    Latency,
    Order,
    SequenceCheck,
    generator_limited,
)

MS = 1_000_000


def test_percentiles_of_a_known_distribution() -> None:
    latency = Latency()
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        latency.record_ns(ms * MS)
    summary = latency.summary()
    assert summary is not None
    assert summary.count == 1000
    assert summary.p50_ms == pytest.approx(500, rel=0.01)
    assert summary.p90_ms == pytest.approx(900, rel=0.01)
    assert summary.p99_ms == pytest.approx(990, rel=0.01)
    assert summary.p999_ms == pytest.approx(999, rel=0.01)
    assert summary.max_ms == pytest.approx(1000, rel=0.01)


def test_one_slow_message_shows_in_the_tail_only() -> None:
    latency = Latency()
    for _ in range(999):
        latency.record_ns(1 * MS)
    latency.record_ns(2000 * MS)
    summary = latency.summary()
    assert summary is not None
    assert summary.p50_ms == pytest.approx(1, rel=0.01)
    assert summary.p99_ms == pytest.approx(1, rel=0.01)
    assert summary.max_ms == pytest.approx(2000, rel=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_fast_recording_gives_exactly_what_hdrh_gives(seed: int) -> None:
    rng = random.Random(seed)
    latency = Latency()
    reference = HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
    for _ in range(3000):
        us = rng.choice([rng.randint(1, 3000), rng.randint(1, 10**6), rng.randint(1, 10**9)])
        latency.record_ns(us * 1000 + rng.randint(0, 999))
        reference.record_value(us)
    summary = latency.summary()
    assert summary is not None
    values = reference.get_percentile_to_value_dict([50.0, 90.0, 99.0, 99.9])
    assert summary.count == reference.get_total_count()
    assert (summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.p999_ms) == (
        values[50.0] / 1000,
        values[90.0] / 1000,
        values[99.0] / 1000,
        values[99.9] / 1000,
    )
    assert summary.max_ms == reference.get_max_value() / 1000
    assert summary.mean_ms == round(reference.get_mean_value() / 1000, 3)
    assert latency.summary(mean=False) == dataclasses.replace(summary, mean_ms=0.0)


def test_empty_and_out_of_range() -> None:
    latency = Latency()
    assert latency.summary() is None
    latency.record_ns(-5)
    latency.record_ns(10**16)
    assert latency.count == 2
    assert latency.clamped == 1


@pytest.mark.parametrize(
    ("seqs", "orders", "received"),
    [
        ([0, 1, 2], ["in_order"] * 3, 3),
        ([0, 2, 1], ["in_order", "in_order", "reordered"], 3),
        ([0, 1, 1, 0], ["in_order", "in_order", "duplicate", "duplicate"], 2),
        ([1, 3, 3, 0, 2], ["in_order", "in_order", "duplicate", "reordered", "reordered"], 4),
        ([0, 2, 4], ["in_order"] * 3, 3),
    ],
)
def test_sequence_check(seqs: list[int], orders: list[str], received: int) -> None:
    check = SequenceCheck()
    assert [check.record(7, s).value for s in seqs] == orders
    assert check.received(7) == received
    assert check.missing({7: 5}) == 5 - received


@pytest.mark.parametrize("seed", range(20))
def test_sequence_check_against_a_model(seed: int) -> None:
    """Shuffled, duplicated, lossy streams: the check agrees with a set-based model."""
    rng = random.Random(seed)
    arrivals = [s for s in range(60) if rng.random() > 0.1]
    arrivals += rng.sample(arrivals, 10)  # duplicates
    for _ in range(15):  # local reordering
        i = rng.randrange(len(arrivals) - 1)
        arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    check, seen, top = SequenceCheck(), set(), -1
    for seq in arrivals:
        expected = (
            Order.DUPLICATE if seq in seen else Order.REORDERED if seq < top else Order.IN_ORDER
        )
        assert check.record(3, seq) is expected
        seen.add(seq)
        top = max(top, seq)
    assert check.received(3) == len(seen)
    assert check.missing({3: 60}) == 60 - len(seen)


def test_sequence_check_keeps_senders_apart() -> None:
    check = SequenceCheck()
    assert check.record(1, 0) is Order.IN_ORDER
    assert check.record(2, 0) is Order.IN_ORDER
    assert check.missing({1: 2, 2: 1, 3: 4}) == 1 + 0 + 4


def test_bench_stats_counts_and_series() -> None:
    stats = BenchStats()
    check = SequenceCheck()
    stats.record_sent(10)
    stats.record_sent(10)
    stats.record_delivery(check, 0, 0, sent_ns=0, now_ns=2 * MS, nbytes=10)
    stats.record_delivery(check, 0, 0, sent_ns=0, now_ns=3 * MS, nbytes=10)
    stats.record_error("close 4001")
    stats.record_lag(7 * MS)
    sample = stats.tick(1.0, cpu=0.5)
    assert (stats.sent, stats.delivered, stats.duplicates, stats.error_count) == (2, 1, 1, 1)
    assert stats.received_bytes == 20
    assert sample.p99_ms == pytest.approx(2, rel=0.01)
    assert sample.lag_ms == 7
    assert stats.tick(2.0, cpu=0.1).p99_ms is None


def test_generator_limited() -> None:
    idle = Latency()
    idle.record_ns(1 * MS)
    busy = Latency()
    busy.record_ns(200 * MS)
    assert generator_limited(0.3, idle.summary()) is None
    assert "CPU" in (generator_limited(0.95, idle.summary()) or "")
    assert "lagged" in (generator_limited(0.3, busy.summary()) or "")
