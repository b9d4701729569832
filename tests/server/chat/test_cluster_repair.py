"""Cluster repair in process: what brings a node's members the messages its subscriber missed.

A fake store, broker and host; no Redis. The real-Redis side of the same faults is
tests/broker/test_redis_failover.py (a Sentinel failover, Cluster masters killed) and
tests/broker/test_redis_recovery.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from wschat.errors import Unavailable
from wschat.server.chat import cluster as cluster_mod
from wschat.server.chat.cluster import Cluster
from wschat.store import Replay, StoredMessage


class FakeStore:
    """A room's history; ``failing`` reads raise ``Unavailable`` (Redis failing over)."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self.failing = 0
        self.reads = 0

    def add(self, *ids: int) -> None:
        for i in ids:
            self.messages.append(StoredMessage("lobby", i, "al", f"m{i}", 0.0, epoch="e1"))

    async def replay(self, room: str, since: int, limit: int) -> Replay:
        self.reads += 1
        if self.failing:
            self.failing -= 1
            raise Unavailable("CLUSTERDOWN The cluster is down")
        newer = [m for m in self.messages if m.id > since]
        latest = self.messages[-1].id if self.messages else 0
        return Replay(newer, latest, False, "e1", 0)


class FakeHost:
    """One v1 member of ``lobby`` on this node, shown messages in id order."""

    def __init__(self) -> None:
        self.last_id = 0
        self.shown: list[int] = []
        self.answers: list[tuple[Any, int, bool]] = []

    def rooms(self) -> list[str]:
        return ["lobby"]

    def cursor(self, room: str) -> int | None:
        return self.last_id

    def catch_up(self, room: str, replay: Replay) -> bool:
        for m in replay.messages:
            if m.id == self.last_id + 1:
                self.shown.append(m.id)
                self.last_id = m.id
        return False

    def holders(self) -> list[Any]:
        return []

    def answer_unshown(self, conn: Any, said: StoredMessage, stored: bool) -> None:
        self.answers.append((conn, said.id, stored))


class FakeBroker:
    def __init__(self) -> None:
        self.subscribed = "ok"
        self.on_resubscribed: Any = None

    def state(self) -> str:
        return self.subscribed


@pytest.fixture
async def node(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Cluster, FakeStore]]:
    monkeypatch.setattr(cluster_mod, "EXPECT_WITHIN_S", 0.1)
    monkeypatch.setattr(cluster_mod, "REPAIR_DELAY_S", 0.05)
    store = FakeStore()
    registry = SimpleNamespace(node="n1")
    cluster = Cluster(registry, FakeBroker(), store, ttl_s=3600)  # type: ignore[arg-type]
    cluster._host = FakeHost()  # the host, without start()'s heartbeat
    yield cluster, store
    await cluster.close()


def host(cluster: Cluster) -> FakeHost:
    assert isinstance(cluster.host, FakeHost)
    return cluster.host


async def settle(cluster: Cluster, until: float = 2.0) -> None:
    """Wait until the cluster's repairs have ended (or ``until`` s)."""
    async with asyncio.timeout(until):
        while cluster._repairing:
            await asyncio.sleep(0.01)


async def test_a_repair_whose_read_fails_is_tried_again_while_subscribed(
    node: tuple[Cluster, FakeStore],
) -> None:
    # Messages 1-3 were stored; 2 and 3 came while a gap held them back. The repair's read
    # fails twice (the room's master failing over) and nothing else will trigger one: every
    # sender of the room waits for an echo held behind the gap. It must get through alone.
    cluster, store = node
    store.add(1, 2, 3)
    store.failing = 2
    cluster.repair("lobby", delay_s=0)
    await asyncio.sleep(1.0)
    assert host(cluster).shown == [1, 2, 3]
    assert store.reads == 3


async def test_a_repair_while_the_subscriber_is_down_waits_for_the_resubscription(
    node: tuple[Cluster, FakeStore],
) -> None:
    cluster, store = node
    broker = cluster.broker
    assert isinstance(broker, FakeBroker)
    store.add(1, 2)
    store.failing = 1
    broker.subscribed = "down"
    cluster.repair("lobby", delay_s=0)
    await settle(cluster)
    assert (host(cluster).shown, store.reads) == ([], 1)  # no read per backoff while down
    broker.subscribed = "ok"
    cluster._resubscribed()
    await settle(cluster)
    assert host(cluster).shown == [1, 2]


async def test_a_stored_message_that_never_comes_back_is_repaired(
    node: tuple[Cluster, FakeStore],
) -> None:
    # The sender's own message was stored (its master replied) but its publish never reached
    # this node, and nobody says anything after it: no gap will ever show.
    cluster, store = node
    store.add(1)
    cluster.expect("lobby", 1)
    await asyncio.sleep(0.5)
    assert host(cluster).shown == [1]


async def test_an_expected_message_that_came_back_costs_no_read(
    node: tuple[Cluster, FakeStore],
) -> None:
    cluster, store = node
    for i in range(1, 21):  # a busy room: one check at a time, each of the newest id
        store.add(i)
        cluster.expect("lobby", i)
        host(cluster).last_id = host(cluster).last_id + 1  # shown through the broker
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    assert store.reads == 0
    store.add(21)
    cluster.expect("lobby", 21)  # this one is lost
    await asyncio.sleep(0.5)
    assert (host(cluster).last_id, store.reads) == (21, 1)


async def test_an_expected_message_is_looked_for_until_a_read_finds_it(
    node: tuple[Cluster, FakeStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Sentinel failover settling: the first reads go to a server that does not have the
    # message yet (the pool still held a connection there). The sender waits for its echo:
    # the node must keep looking, not read once and give up.
    monkeypatch.setattr(cluster_mod, "REPAIR_RETRY_MAX_S", 0.1)
    cluster, store = node
    cluster.expect("lobby", 1)
    await asyncio.sleep(0.5)
    assert host(cluster).shown == [] and store.reads >= 2
    store.add(1)
    await asyncio.sleep(0.5)
    assert host(cluster).shown == [1]
    reads = store.reads
    await asyncio.sleep(0.5)
    assert store.reads == reads  # found: no more reads


async def test_says_cut_off_by_a_new_epoch_are_echoed_if_held_else_refused(
    node: tuple[Cluster, FakeStore],
) -> None:
    # The room's epoch changed before the sender was shown its says 2 and 3 (a failover to a
    # replica that had 2 but not 3). Each gets an answer: 2 its echo, 3 an error. The
    # first read fails (the history failing over too) and is tried again.
    cluster, store = node
    store.add(1, 2)
    store.failing = 1
    said = [StoredMessage("lobby", i, "al", f"m{i}", 0.0, epoch="e1") for i in (2, 3)]
    cluster.settle_unshown("al's socket", said)
    async with asyncio.timeout(3):
        while len(host(cluster).answers) < 2:
            await asyncio.sleep(0.02)
    assert host(cluster).answers == [("al's socket", 2, True), ("al's socket", 3, False)]


async def test_a_say_of_another_sender_under_the_same_id_is_not_taken_for_it(
    node: tuple[Cluster, FakeStore],
) -> None:
    cluster, store = node
    store.add(1)  # id 1 is someone else's message in this store ("al" said "m1", not "x")
    said = StoredMessage("lobby", 1, "al", "x", 0.0, cid="c9", epoch="e1")
    cluster.settle_unshown("socket", [said])
    async with asyncio.timeout(3):
        while not host(cluster).answers:
            await asyncio.sleep(0.02)
    assert host(cluster).answers == [("socket", 1, False)]
