"""The measurements of a load test: HDR latency histograms, counters, per-receiver order checks.

Pure: no I/O, no event loop, no clock — every time is passed in by the caller (nanoseconds of
one monotonic clock), so all of it is unit-tested without sockets. Imports ``hdrh`` and the
standard library only.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

LATENCY_MAX_US = 3_600_000_000  # one hour: anything slower is clamped and counted as such
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
SIGNIFICANT_FIGURES = 3
LAG_LIMIT_MS = 50.0  # event-loop lag p99 above this: the generator, not the server, was slow
CPU_LIMIT = 0.85  # one core: asyncio runs on one thread


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles of one histogram, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Latency:
    """An HDR histogram of durations: microsecond resolution, 3 significant figures, up to 1 h.

    Recording is on the receive path of every message, so it computes the counts index itself
    from the histogram's public bucket parameters (what ``get_counts_array_index`` returns for
    these fixed parameters) and increments the public ``counts`` array, instead of calling
    ``record_value`` (about four times slower); percentiles are read from one C-speed prefix
    sum of the counts. This relies on ``hdrh``'s counts layout: the adapter's every name is
    listed in ``tests/bench/test_dependency_contract.py``, which checks that the arithmetic
    equals ``record_value``; ``tests/bench/test_stats.py`` checks the percentiles and mean.
    """

    __slots__ = ("_count", "_counts", "_hist", "_max", "_min", "clamped")

    def __init__(self) -> None:
        self._hist = HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
        self._counts = self._hist.counts
        self.clamped = 0
        self._count = 0
        self._min = LATENCY_MAX_US + 1
        self._max = 0

    @property
    def count(self) -> int:
        return self._count

    def record_ns(self, duration_ns: int) -> None:
        """Record one duration; negative ones count as 1 µs, those above one hour as one hour."""
        us = duration_ns // 1000
        if us < 1:
            us = 1
        elif us > LATENCY_MAX_US:
            us = LATENCY_MAX_US
            self.clamped += 1
        bucket = (us | _SUB_BUCKET_MASK).bit_length() - _BUCKET_SHIFT
        self._counts[((bucket + 1) << _HALF_MAGNITUDE) + (us >> bucket) - _HALF_COUNT] += 1
        self._count += 1
        if us > self._max:
            self._max = us
        if us < self._min:
            self._min = us

    def counts(self) -> array[int]:
        """Return a copy of the histogram's counts, indexed like ``hdrh``'s counts array."""
        return array("Q", bytes(self._counts))  # ctypes (64-bit words) → array at C speed

    def dump(self) -> dict[str, Any]:
        """Return the histogram as JSON-able data ``merge`` takes back exactly (sparse counts)."""
        counts = self.counts()
        return {
            "counts": [[i, c] for i, c in enumerate(counts) if c],
            "min_us": self._min,
            "max_us": self._max,
            "clamped": self.clamped,
        }

    def merge(self, dumped: Mapping[str, Any]) -> None:
        """Add a histogram ``dump`` returned (of another process): as if recorded here."""
        for index, count in dumped["counts"]:
            self._counts[index] += count
            self._count += count
        self._min = min(self._min, dumped["min_us"])
        self._max = max(self._max, dumped["max_us"])
        self.clamped += dumped["clamped"]

    def summary(self, mean: bool = True) -> LatencySummary | None:
        """Return the percentiles, or ``None`` when nothing was recorded.

        ``mean=False`` skips the mean (a pass over every recorded bucket) and reports it as 0;
        the one-second series does not show it.
        """
        if not self._count:
            return None
        counts = self.counts()
        p50, p90, p99, p999 = self._at(PERCENTILES, list(accumulate(counts)))
        hist, total = self._hist, self._count
        return LatencySummary(
            count=total,
            p50_ms=p50 / 1000,
            p90_ms=p90 / 1000,
            p99_ms=p99 / 1000,
            p999_ms=p999 / 1000,
            max_ms=hist.get_highest_equivalent_value(self._max) / 1000,
            mean_ms=round(_mean_us(counts, total) / 1000, 3) if mean else 0.0,
        )

    def _at(self, percentiles: Sequence[float], cumulative: list[int]) -> list[int]:
        """Return the value (µs) at each percentile, given the prefix sum of the counts."""
        hist, total = self._hist, self._count
        values = []
        for percentile in percentiles:
            target = max(1, int(percentile * total / 100 + 0.5))  # hdrh's rounding
            index = bisect_left(cumulative, target)
            values.append(hist.get_highest_equivalent_value(hist.get_value_from_index(index)))
        return values

    def distribution(self) -> list[tuple[float, float]]:
        """Return the HDR percentile distribution: ``(percentile, ms)`` points, then the max.

        Percentiles halve the distance to 100 each step (0, 50, 75, 87.5, ...) while there are
        samples to tell them apart, as HdrHistogram's percentile plots do; empty when nothing
        was recorded.
        """
        if not self._count:
            return []
        percentiles = [0.0]
        while 1 / (1 - percentiles[-1] / 100) * 2 <= self._count and len(percentiles) < 40:
            percentiles.append(100 - (100 - percentiles[-1]) / 2)
        cumulative = list(accumulate(self.counts()))
        values = self._at(percentiles, cumulative)
        points = [(p, v / 1000) for p, v in zip(percentiles, values, strict=True)]
        max_ms = self._hist.get_highest_equivalent_value(self._max) / 1000
        return [*points, (100.0, max_ms)]


_TEMPLATE = HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
_HALF_MAGNITUDE = _TEMPLATE.sub_bucket_half_count_magnitude
_HALF_COUNT = _TEMPLATE.sub_bucket_half_count
_SUB_BUCKET_MASK = _TEMPLATE.sub_bucket_mask
_BUCKET_SHIFT = _HALF_MAGNITUDE + 1 + _TEMPLATE.unit_magnitude
if _TEMPLATE.unit_magnitude != 0:  # the inline bucket arithmetic assumes a 1 µs unit
    raise ImportError("Latency needs lowest_trackable_value 1")


def _mean_us(counts: array[int], total: int) -> float:
    """Return hdrh's mean: each bucket counts at the middle of its value range."""
    hist = _TEMPLATE
    weighted = 0
    for index, count in enumerate(counts):
        if count:
            bucket = max(0, (index >> _HALF_MAGNITUDE) - 1)
            middle = hist.get_value_from_index(index) + ((1 << bucket) >> 1)
            weighted += count * middle
    return weighted / total


class Order(Enum):
    """What one received sequence number says about its stream."""

    IN_ORDER = "in_order"
    REORDERED = "reordered"  # new, but a higher number from the same sender came first
    DUPLICATE = "duplicate"


IN_ORDER, REORDERED, DUPLICATE = Order.IN_ORDER, Order.REORDERED, Order.DUPLICATE


@dataclass(slots=True)
class _Stream:
    low: int = 0  # every seq below this has arrived
    top: int = -1  # the highest seq seen
    distinct: int = 0
    above: set[int] = field(default_factory=set)  # seqs > low that arrived early (a gap below)


class SequenceCheck:
    """Check what one receiver got from each sender: loss, duplicates and reordering.

    Senders number their messages 0, 1, 2, ... Memory stays small while streams arrive in
    order: only numbers that arrive across a gap are remembered.
    """

    def __init__(self) -> None:
        self._streams: dict[int, _Stream] = {}

    def record(self, sender: int, seq: int) -> Order:
        """Note that ``seq`` from ``sender`` arrived; say whether it was new and in order."""
        stream = self._streams.get(sender)
        if stream is None:
            stream = self._streams[sender] = _Stream()
        low = stream.low
        if seq == low and not stream.above:  # the common case: the next one, no gap open
            # no gap open means every seq seen is below low, so seq is also the new top
            stream.top = seq
            stream.low = seq + 1
            stream.distinct += 1
            return IN_ORDER
        if seq < low or seq in stream.above:
            return DUPLICATE
        order = REORDERED if seq < stream.top else IN_ORDER
        stream.distinct += 1
        if seq > stream.top:
            stream.top = seq
        if seq == low:
            low += 1
            while low in stream.above:
                stream.above.remove(low)
                low += 1
            stream.low = low
        else:
            stream.above.add(seq)
        return order

    def received(self, sender: int) -> int:
        """Return how many distinct messages from ``sender`` arrived."""
        stream = self._streams.get(sender)
        return stream.distinct if stream else 0

    def tail(self, sent: Mapping[int, int]) -> int:
        """Return how many of ``sent`` come after the last one that arrived from each sender.

        For a receiver that was closed mid-run, these are the copies it missed once gone; the
        rest of ``missing`` (gaps below the last one that arrived) it lost while open.
        """
        total = 0
        for sender, count in sent.items():
            stream = self._streams.get(sender)
            total += max(0, count - (stream.top + 1 if stream else 0))
        return total

    def missing(self, sent: Mapping[int, int]) -> int:
        """Return how many of the messages in ``sent`` (sender → count sent) never arrived."""
        return sum(max(0, count - self.received(sender)) for sender, count in sent.items())


@dataclass(frozen=True, slots=True)
class Sample:
    """One second of a run: cumulative counters and that second's latency."""

    t_s: float
    open: int
    sent: int
    delivered: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    cpu: float  # the load generator's CPU use in this second, 1.0 = one core
    lag_ms: float  # the worst event-loop lag seen in this second


@dataclass
class BenchStats:
    """Everything one run measures; the runner feeds it, the report reads it."""

    tcp_connect: Latency = field(default_factory=Latency)
    upgrade: Latency = field(default_factory=Latency)
    latency: Latency = field(default_factory=Latency)
    loop_lag: Latency = field(default_factory=Latency)
    attempted: int = 0
    opened: int = 0
    open: int = 0
    sent: int = 0
    sent_bytes: int = 0
    delivered: int = 0
    received_bytes: int = 0
    duplicates: int = 0
    reordered: int = 0
    foreign: int = 0  # frames carrying no stamp of this run (other users, presence events)
    lost: int = 0  # set once at the end: copies a receiver never got while it was open
    missed_while_closed: int = 0  # set once at the end: copies for receivers already closed
    refused: Counter[str] = field(default_factory=Counter)  # messages refused, by error code
    expected: int = 0  # set once at the end: deliveries that should have happened
    errors: Counter[str] = field(default_factory=Counter)
    series: list[Sample] = field(default_factory=list)
    _second: Latency = field(default_factory=Latency)
    _second_lag_ns: int = 0

    def record_sent(self, nbytes: int) -> None:
        self.sent += 1
        self.sent_bytes += nbytes

    def record_delivery(
        self, check: SequenceCheck, sender: int, seq: int, sent_ns: int, now_ns: int, nbytes: int
    ) -> bool:
        """Count one stamped message a receiver got; return whether it was new (not a duplicate).

        Its latency counts only the first time; a reordered message counts in ``reordered``.
        """
        self.received_bytes += nbytes
        order = check.record(sender, seq)
        if order is not IN_ORDER:
            if order is DUPLICATE:
                self.duplicates += 1
                return False
            self.reordered += 1
        self.delivered += 1
        self.latency.record_ns(now_ns - sent_ns)
        self._second.record_ns(now_ns - sent_ns)
        return True

    def record_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def record_lag(self, lag_ns: int) -> None:
        self.loop_lag.record_ns(lag_ns)
        self._second_lag_ns = max(self._second_lag_ns, lag_ns)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def tick(self, t_s: float, cpu: float) -> Sample:
        """Close one second of the series and return its sample."""
        second = self._second.summary(mean=False)
        sample = Sample(
            t_s=round(t_s, 3),
            open=self.open,
            sent=self.sent,
            delivered=self.delivered,
            errors=self.error_count,
            p50_ms=second.p50_ms if second else None,
            p99_ms=second.p99_ms if second else None,
            max_ms=second.max_ms if second else None,
            cpu=round(cpu, 3),
            lag_ms=round(self._second_lag_ns / 1e6, 3),
        )
        self.series.append(sample)
        self._second = Latency()
        self._second_lag_ns = 0
        return sample


def generator_limited(cpu: float, lag: LatencySummary | None) -> str | None:
    """Return why the load generator (not the server) limited the run, or ``None`` if it did not.

    ``cpu`` is the generator's average CPU use while loading (1.0 = one full core, which is all
    one asyncio thread can use); ``lag`` is its event-loop lag.
    """
    reasons = []
    if cpu >= CPU_LIMIT:
        reasons.append(f"its CPU use was {cpu:.0%} of one core")
    if lag is not None and lag.p99_ms > LAG_LIMIT_MS:
        reasons.append(f"its event loop lagged {lag.p99_ms:.0f} ms (p99)")
    return " and ".join(reasons) or None


HISTOGRAMS = "histograms"  # the JSON key of ``dump_histograms`` in a process's report
_DUMPED = ("tcp_connect", "upgrade", "latency", "loop_lag")


def dump_histograms(stats: BenchStats) -> dict[str, Any]:
    """Return every histogram of ``stats`` as JSON-able data (``Latency.dump``), by name."""
    return {name: getattr(stats, name).dump() for name in _DUMPED}


def merge_histograms(stats: BenchStats, dumped: Mapping[str, Any]) -> None:
    """Add histograms ``dump_histograms`` returned (another process's) into ``stats``."""
    for name in _DUMPED:
        getattr(stats, name).merge(dumped[name])
