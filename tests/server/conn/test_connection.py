"""Connection: offer, write_now, coalesced flush, the outbox bound, close and abort."""

from __future__ import annotations

import asyncio

from tests.server.conn.fake import FakeSocket, FakeTransport, until
from wschat.server.conn.connection import Coalescer, Connection
from wschat.server.conn.outgoing import Outgoing


def make(
    outbox_size: int = 4, coalescer: Coalescer | None = None
) -> tuple[Connection, FakeTransport]:
    transport = FakeTransport()
    conn = Connection(
        FakeSocket(transport),
        "alice",
        outbox_size=outbox_size,
        close_timeout_s=1.0,
        coalescer=coalescer,
    )
    conn.start()
    return conn, transport


async def test_offer_writes_through_when_the_socket_has_room() -> None:
    conn, transport = make()
    assert conn.offer(Outgoing("one"))
    assert conn.offer(Outgoing("two"))
    assert transport.texts() == ["one", "two"]
    assert conn.queued == 0
    assert conn.peer == "127.0.0.1:5000"


async def test_frames_offered_before_start_wait_for_it() -> None:
    transport = FakeTransport()
    conn = Connection(FakeSocket(transport), "a", outbox_size=4, close_timeout_s=1.0)
    assert conn.offer(Outgoing("early"))
    assert transport.writes == []
    conn.start()
    assert transport.texts() == ["early"]


async def test_coalescer_joins_one_pass_into_one_write() -> None:
    conn, transport = make(coalescer=Coalescer())
    for word in ("a", "b", "c"):
        assert conn.offer(Outgoing(word))
    assert transport.writes == []  # nothing until the end of the loop pass
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.texts() == ["a", "b", "c"]


async def test_write_now_only_with_nothing_queued_and_room() -> None:
    conn, transport = make(coalescer=Coalescer())
    assert conn.write_now(Outgoing("direct"))
    assert conn.offer(Outgoing("queued"))
    assert not conn.write_now(Outgoing("would overtake"))  # something waits before it
    await asyncio.sleep(0)
    assert transport.texts() == ["direct", "queued"]
    transport.full = True
    assert not conn.write_now(Outgoing("no room"))


async def test_outbox_is_bounded_while_the_peer_does_not_read() -> None:
    conn, transport = make(outbox_size=3)
    transport.full = True
    assert all(conn.offer(Outgoing(str(i))) for i in range(3))
    assert conn.queued == 3
    assert not conn.offer(Outgoing("one too many"))
    assert conn.queued == 3
    transport.full = False
    assert transport.on_writable is not None
    transport.on_writable()  # the peer read: the buffer drained
    assert transport.texts() == ["0", "1", "2"]
    assert conn.queued == 0


async def test_graceful_close_sends_what_is_queued_first() -> None:
    conn, transport = make()
    transport.full = True
    conn.offer(Outgoing("last words"))
    conn.close(1001, "bye")
    conn.close(1011, "ignored: already closing")
    assert transport.closes == []
    transport.full = False
    assert transport.on_writable is not None
    transport.on_writable()
    assert transport.texts() == ["last words"]
    assert transport.closes == [(1001, "bye")]
    assert conn.close_code == 1001
    assert conn.offer(Outgoing("dropped"))  # closing: silently dropped
    assert transport.texts() == ["last words"]


async def test_close_without_flush_drops_the_outbox() -> None:
    conn, transport = make()
    transport.full = True
    conn.offer(Outgoing("never sent"))
    conn.close(4001, "outbox full", flush=False)
    assert transport.closes == [(4001, "outbox full")]
    transport.full = False
    assert transport.payloads() == []


async def test_abort_and_stop() -> None:
    conn, transport = make()
    conn.abort()
    assert transport.aborted
    conn.stop_now()
    assert transport.on_writable is None


async def test_without_a_transport_a_writer_task_sends_asgi_messages() -> None:
    socket = FakeSocket()
    conn = Connection(socket, "a", outbox_size=4, close_timeout_s=1.0)
    conn.start()
    conn.offer(Outgoing("hi"))
    conn.offer(Outgoing(data=b"\x01"))
    conn.close(1000, "done")
    async with asyncio.timeout(1):
        await until(lambda: len(socket.sent) == 3)
    assert socket.sent == [
        {"type": "websocket.send", "text": "hi"},
        {"type": "websocket.send", "bytes": b"\x01"},
        {"type": "websocket.close", "code": 1000, "reason": "done"},
    ]
    await conn.stop()


async def test_the_outbox_is_bounded_in_bytes_whatever_the_entry() -> None:
    transport = FakeTransport()
    conn = Connection(
        FakeSocket(transport), "a", outbox_size=100, close_timeout_s=1.0, outbox_bytes=10_000
    )
    conn.start()
    transport.full = True  # the peer does not read
    assert conn.push([Outgoing("w" * 9_000)])  # into an empty outbox: always taken
    assert conn.queued_bytes > 9_000
    assert not conn.offer(Outgoing("x" * 2_000))  # past 10,000 bytes: a slow consumer
    assert conn.offer(Outgoing("y" * 500))  # still within the bound
    assert not conn.push([Outgoing("z")])  # a second welcome, and a batch waits already


async def test_a_long_batch_is_written_a_chunk_at_a_time_and_uncounted_as_it_goes() -> None:
    transport = FakeTransport()
    conn = Connection(FakeSocket(transport), "a", outbox_size=4, close_timeout_s=1.0)
    batch = [Outgoing("m" * 4_000) for _ in range(100)]  # about 400 KB: several chunks
    writes = 0

    def write_frame(frame: bytes) -> None:
        nonlocal writes
        writes += 1
        transport.writes.append(frame)
        transport.full = True  # the socket takes one chunk, then pauses

    transport.write_frame = write_frame  # type: ignore[method-assign]
    conn.start()
    assert conn.push(batch)
    assert writes == 1 and 0 < conn.queued_bytes < 400_000
    while conn.queued_bytes:
        transport.full = False
        assert transport.on_writable is not None
        transport.on_writable()
    assert writes > 5
    assert transport.texts() == ["m" * 4_000] * 100
