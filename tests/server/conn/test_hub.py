"""Hub: groups, the one delivery policy (a full outbox closes 4001) and its counters."""

from __future__ import annotations

from collections.abc import Callable

from tests.server.conn.fake import FakeSocket, FakeTransport, stall
from wschat.protocol import CloseCode
from wschat.server.conn.connection import Connection
from wschat.server.conn.hub import Hub
from wschat.server.conn.outgoing import Outgoing


def make(hub: Hub, label: str, group: str | None = "r") -> tuple[Connection, FakeTransport]:
    transport = FakeTransport()
    conn = Connection(FakeSocket(transport), label, group, outbox_size=2, close_timeout_s=1.0)
    conn.start()
    if group is not None:
        hub.join(conn, group)
    else:
        hub.add(conn)
    return conn, transport


async def test_deliver_offers_one_frame_to_every_receiver() -> None:
    hub = Hub()
    pairs = [make(hub, name) for name in ("a", "b", "c")]
    frame = Outgoing("hello")
    assert hub.deliver(hub.members("r"), frame) == 3
    for _, transport in pairs:
        assert transport.texts() == ["hello"]
    assert hub.stats.deliveries == 3
    assert hub.stats.slow_consumers == 0


async def test_a_full_outbox_closes_the_slow_consumer_4001_and_nobody_else() -> None:
    hub = Hub()
    (fast, fast_t), (slow, slow_t) = make(hub, "fast"), make(hub, "slow")
    stall(slow, slow_t)
    assert hub.deliver([fast, slow], Outgoing("x")) == 1
    assert slow_t.closes == [(CloseCode.SLOW_CONSUMER, "outbox full")]
    assert slow.close_code == CloseCode.SLOW_CONSUMER
    assert fast_t.texts() == ["x"] and fast_t.closes == []
    assert hub.stats.slow_consumers == 1
    assert hub.stats.deliveries == 1
    hub.deliver([slow], Outgoing("y"))  # closing: dropped, not counted again
    assert hub.stats.slow_consumers == 1


async def test_send_and_deliver_each_apply_the_same_policy() -> None:
    hub = Hub()
    (a, a_t), (b, b_t) = make(hub, "a", None), make(hub, "b", None)
    assert hub.send(a, Outgoing("reply"))
    stall(b, b_t)
    assert not hub.send(b, Outgoing("reply"))
    assert b_t.closes == [(CloseCode.SLOW_CONSUMER, "outbox full")]
    c, c_t = make(hub, "c", None)
    stall(c, c_t)
    assert hub.deliver_each([(a, Outgoing("1")), (c, Outgoing("2"))]) == 1
    assert a_t.texts() == ["reply", "1"]
    assert c_t.closes == [(CloseCode.SLOW_CONSUMER, "outbox full")]
    assert hub.stats.slow_consumers == 2
    assert hub.stats.deliveries == 2


async def test_direct_delivery_writes_at_once_in_a_fresh_pass() -> None:
    hub = Hub()
    conn = Connection(
        FakeSocket(transport := FakeTransport()),
        "a",
        outbox_size=2,
        close_timeout_s=1.0,
        coalescer=hub.coalescer,
    )
    conn.start()
    hub.join(conn, "r")
    assert hub.fresh_pass()
    hub.deliver(hub.members("r"), Outgoing("first"), direct=True)
    assert transport.texts() == ["first"]  # written, not waiting for the end of the pass
    assert not hub.fresh_pass()  # the same pass: later broadcasts queue and coalesce


async def test_groups_join_leave_remove_and_close_codes() -> None:
    hub = Hub()
    (a, _), (b, _) = make(hub, "a"), make(hub, "b")
    assert hub.members("r") == {a, b}
    hub.join(a, "s")
    assert hub.members("r") == {b} and hub.members("s") == {a}
    assert a.group == "s"
    hub.remove(a, 1000)
    hub.remove(a, 1000)  # twice: counted once
    assert "s" not in hub.rooms
    assert a.group == "s"  # kept for the last log line
    hub.remove(b, None)  # ended without a code: not counted
    assert hub.connections == set() and hub.rooms == {}
    assert hub.stats.closed_by_code == {1000: 1}


async def test_close_all_closes_everyone_and_waits_for_the_hub_to_empty() -> None:
    hub = Hub()
    pairs = [make(hub, name) for name in ("a", "b")]
    closing: list[tuple[Connection, int]] = []
    for conn, transport in pairs:
        transport.on_close = _closer(hub, conn, closing)
    await hub.close_all(CloseCode.GOING_AWAY, timeout_s=1.0)
    assert hub.connections == set()
    assert hub.stats.closed_by_code == {CloseCode.GOING_AWAY: 2}
    assert sorted(c.label for c, _ in closing) == ["a", "b"]


def _closer(
    hub: Hub, conn: Connection, log: list[tuple[Connection, int]]
) -> Callable[[int, str], None]:
    """A transport close that reports the end at once, as a peer answering the close would."""

    def close(code: int, reason: str) -> None:
        log.append((conn, code))
        hub.remove(conn, code)

    return close
