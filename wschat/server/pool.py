"""Totals over the workers of ``wschat serve --workers N``: ``/metrics`` and ``/healthz`` of the
whole server, whichever worker the kernel hands the request to.

Every worker writes a snapshot of its own figures (its metric samples and its ``/healthz``
numbers) to ``PID.json`` in a directory the parent made, atomically (a temporary file, then a
rename): every ``WRITE_EVERY_S`` seconds, and before it answers a scrape. To answer, it sums
its fresh snapshot with the others' latest files. So a counter never goes down between two
scrapes, whoever answers: a worker's file only ever grows, and the one answering wrote what it
reports. A worker that died keeps its counters in the totals (as prometheus-client's
multiprocess mode does; its restarted successor counts from 0 under a new pid); its gauges
drop out. Gauges are summed over live workers, except ``wschat_broker_up`` (the minimum: 1
only if every worker is up) and ``wschat_history_messages`` (the maximum: one shared store).
A gauge such as ``wschat_rooms`` counts a room once per worker that has members in it.

Imports prometheus-client and the standard library only; the app (``app.py``) wires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

WRITE_EVERY_S = 1.0  # how stale another worker's gauges may be in a total
_POLICY: dict[str, Callable[[list[float]], float]] = {
    "wschat_broker_up": min,
    "wschat_history_messages": max,
}
_HEALTH_COUNTERS = ("replays", "slow_consumers")  # summed over every worker, dead ones too
_HEALTH_GAUGES = ("connections", "rooms", "tasks", "names")  # summed over live workers

Snapshot = dict[str, Any]


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Pool:
    """One worker's view of every worker's figures (a directory of snapshots)."""

    def __init__(
        self, directory: str, registry: CollectorRegistry, health: Callable[[], Snapshot]
    ) -> None:
        self.directory = Path(directory)
        self.registry = registry
        self.health_of_this = health
        self.pid = os.getpid()

    def metrics(self) -> bytes:
        """Return the Prometheus text of every worker's metrics, summed."""
        snapshots = self._gather()
        families: dict[str, tuple[str, str, dict[tuple[str, str], list[float]]]] = {}
        labels_of: dict[tuple[str, str], dict[str, str]] = {}
        for snap, alive in snapshots:
            for name, kind, doc, samples in snap["metrics"]:
                if kind != "counter" and not alive:
                    continue
                values = families.setdefault(name, (kind, doc, {}))[2]
                for sample_name, labels, value in samples:
                    key = (sample_name, json.dumps(labels, sort_keys=True))
                    labels_of[key] = labels
                    values.setdefault(key, []).append(value)
        out: list[Metric] = []
        for name, (kind, doc, values) in families.items():
            family = Metric(name, doc, kind)
            combine = _POLICY.get(name, sum)
            for key, found in values.items():
                family.add_sample(key[0], labels_of[key], combine(found))
            out.append(family)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(out))
        return generate_latest(registry)

    def health(self) -> Snapshot:
        """Return ``/healthz`` for the whole server: this worker's answer with summed figures."""
        snapshots = self._gather()
        total = dict(snapshots[0][0]["health"])
        live = [snap["health"] for snap, alive in snapshots if alive]
        every = [snap["health"] for snap, _ in snapshots]
        for key in _HEALTH_GAUGES:
            total[key] = sum(h[key] for h in live)
        for key in _HEALTH_COUNTERS:
            total[key] = sum(h[key] for h in every)
        closed: dict[str, int] = {}
        for h in every:
            for code, n in h["closed_by_code"].items():
                closed[code] = closed.get(code, 0) + n
        total["closed_by_code"] = dict(sorted(closed.items()))
        states = [h["broker"]["state"] for h in live]
        state = next((s for s in states if s != "ok"), "ok")
        total["broker"] = {**total["broker"], "state": state}
        total["status"] = "ok" if state == "ok" else "degraded"
        total["workers"] = len(live)
        return total

    def write(self) -> Snapshot:
        """Write this worker's snapshot (atomically) and return it."""
        families = [
            [m.name, m.type, m.documentation, [[s.name, s.labels, s.value] for s in m.samples]]
            for m in self.registry.collect()
        ]
        snap = {"pid": self.pid, "metrics": families, "health": self.health_of_this()}
        part = self.directory / f".{self.pid}.part"
        part.write_text(json.dumps(snap))
        part.replace(self.directory / f"{self.pid}.json")
        return snap

    async def run(self) -> None:
        """Write this worker's snapshot every ``WRITE_EVERY_S`` seconds, forever."""
        while True:
            with contextlib.suppress(OSError):
                self.write()
            await asyncio.sleep(WRITE_EVERY_S)

    def _gather(self) -> list[tuple[Snapshot, bool]]:
        """Return this worker's fresh snapshot first, then every other worker's latest one
        with whether that worker is alive."""
        found: list[tuple[Snapshot, bool]] = [(self.write(), True)]
        for path in sorted(self.directory.glob("*.json")):
            pid = int(path.stem)
            if pid == self.pid:
                continue
            try:
                snap = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile
            found.append((snap, process_alive(pid)))
        return found


def process_alive(pid: int) -> bool:
    """Return whether process ``pid`` exists (someone else's counts: it cannot be signalled)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
