"""The open-loop schedule (pure): due times, staggering, and a count that matches them."""

from __future__ import annotations

from itertools import pairwise

import pytest

from wschat.bench.schedule import Schedule


def due_times(schedule: Schedule, slot: int) -> list[int]:
    times, seq = [], 0
    while (due := schedule.due_ns(slot, seq)) is not None:
        times.append(due)
        seq += 1
    return times


@pytest.mark.parametrize(
    ("rate", "senders", "duration_s", "messages"),
    [(10, 1, 1.0, 0), (3, 1, 1.0, 0), (50, 3, 0.5, 0), (100, 7, 2.0, 150), (20, 2, 1.0, 5)],
)
def test_count_is_the_number_of_due_times(
    rate: float, senders: int, duration_s: float, messages: int
) -> None:
    schedule = Schedule(rate, senders, duration_s, messages)
    for slot in range(senders):
        times = due_times(schedule, slot)
        assert schedule.count(slot) == len(times)
        assert all(b - a == schedule.interval_ns for a, b in pairwise(times))
        assert times[-1] < duration_s * 1e9


def test_senders_are_staggered_over_one_interval() -> None:
    schedule = Schedule(rate=10, senders=4, duration_s=1)
    assert [schedule.first_ns(slot) for slot in range(4)] == [0, 25_000_000, 50_000_000, 75_000_000]
    assert schedule.count(0) == 10 and schedule.count(3) == 10  # 0.075, 0.175, ... 0.975 s
    assert Schedule(rate=10, senders=1, duration_s=1, messages=3).count(0) == 3
