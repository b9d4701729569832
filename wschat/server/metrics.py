"""Prometheus metrics for ``GET /metrics``, read from the hub's and chat's plain counters.

The hot path only bumps ints that ``Hub`` and ``ChatService`` keep anyway; ``ChatCollector``
turns them into metric families at scrape time, so a message costs no lock and no label
lookup. Each app has its own ``CollectorRegistry`` (never the process-global one): tests build
several apps in one process, and a registry holds only what its app counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wschat.server.chat.service import ChatService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@runtime_checkable
class SizedStore(Protocol):
    """A history store that can say how many messages it holds (cheaply, synchronously)."""

    def size(self) -> int: ...


@runtime_checkable
class ReplicatedStore(Protocol):
    """A history store that waits for replicas (Redis ``--redis-wait``) and counts shortfalls."""

    under_replicated: int


class ChatCollector(Collector):
    """Collect one ``ChatService``'s counters and gauges when Prometheus scrapes."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def collect(self) -> Iterator[Metric]:
        chat = self.chat
        hub = chat.hub
        yield GaugeMetricFamily(
            "wschat_connections", "Open WebSocket connections.", value=len(hub.connections)
        )
        yield GaugeMetricFamily(
            "wschat_rooms", "Rooms with at least one connection.", len(hub.rooms)
        )
        yield GaugeMetricFamily(
            "wschat_names",
            "Names held, including those reserved during the presence grace period.",
            len(chat.presence.holders),
        )
        incoming = CounterMetricFamily(
            "wschat_messages_in", "Messages accepted from clients.", labels=["kind"]
        )
        incoming.add_metric(["room"], chat.messages_in)
        incoming.add_metric(["dm"], chat.dms_in)
        yield incoming
        outgoing = CounterMetricFamily(
            "wschat_messages_out",
            "Copies of chat messages queued for receivers (fan-out).",
            labels=["kind"],
        )
        outgoing.add_metric(["room"], chat.fanout.messages_out)
        outgoing.add_metric(["dm"], chat.fanout.dms_out)
        yield outgoing
        yield CounterMetricFamily(
            "wschat_deliveries",
            "Frames of any kind queued to a connection's outbox.",
            value=hub.stats.deliveries,
        )
        yield CounterMetricFamily(
            "wschat_outbox_drops",
            "Connections closed 4001 because their outbox was full (slow consumers).",
            value=hub.stats.slow_consumers,
        )
        closed = CounterMetricFamily(
            "wschat_disconnects", "Connections ended, by close code.", labels=["code"]
        )
        for code, count in sorted(hub.stats.closed_by_code.items()):
            closed.add_metric([str(code)], count)
        yield closed
        yield CounterMetricFamily(
            "wschat_resume_replays",
            "Welcomes followed by a replay of stored messages.",
            value=chat.replays,
        )
        yield CounterMetricFamily(
            "wschat_replayed_messages", "Stored messages sent as replay.", value=chat.replayed
        )
        yield CounterMetricFamily(
            "wschat_epoch_changes",
            "Epoch events sent: a room's id sequence was found reset (Redis lost it).",
            value=chat.fanout.epoch_changes,
        )
        state = chat.broker.state()
        broker = GaugeMetricFamily(
            "wschat_broker_state",
            "1 for the broker's current state (ok means messages flow).",
            labels=["engine", "state"],
        )
        broker.add_metric([chat.broker.name, state], 1)
        yield broker
        yield GaugeMetricFamily(
            "wschat_broker_up", "1 when the broker's state is ok.", value=int(state == "ok")
        )
        store = chat.store
        if isinstance(store, SizedStore):
            yield GaugeMetricFamily(
                "wschat_history_messages", "Messages held in history.", value=store.size()
            )
        if isinstance(store, ReplicatedStore):
            yield CounterMetricFamily(
                "wschat_under_replicated",
                "Messages acknowledged before --redis-wait replicas confirmed them.",
                value=store.under_replicated,
            )


def make_registry(chat: ChatService) -> CollectorRegistry:
    """Return a new registry reporting ``chat``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChatCollector(chat))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Return the registry's metrics in the Prometheus text exposition format."""
    return generate_latest(registry)
