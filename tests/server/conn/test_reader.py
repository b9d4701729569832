"""The one read loop: order, hold_reading while busy, the end, errors; both drivers."""

from __future__ import annotations

import asyncio

import pytest

from tests.server.conn.fake import FakeSocket, FakeTransport, text, until
from wschat.protocol import CloseCode
from wschat.server.conn.connection import Connection
from wschat.server.conn.hub import Hub
from wschat.server.conn.reader import serve_connection
from wschat.server.transport.asgi import AsgiEvent
from wschat.server.transport.extension import Sink


class Handler:
    """Records messages and ends; ``gate`` holds each message until it is set."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.ends: list[int | None] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def on_frame(self, conn: Connection, message: AsgiEvent) -> None:
        await self.gate.wait()
        self.seen.append(message["text"])
        if self.fail:
            raise RuntimeError("boom")

    def on_end(self, conn: Connection, code: int | None) -> None:
        self.ends.append(code)


class Lease:
    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


async def detached() -> tuple[Connection, FakeTransport, Hub, Handler, Lease, Sink]:
    transport = FakeTransport()
    conn = Connection(FakeSocket(transport), "a", outbox_size=4, close_timeout_s=1.0)
    hub, handler, lease = Hub(), Handler(), Lease()
    await serve_connection(conn, hub, handler.on_frame, handler.on_end, lease)
    assert transport.sink is not None  # returned at once: the socket holds no task
    assert conn in hub.connections
    return conn, transport, hub, handler, lease, transport.sink


async def test_messages_are_handled_one_at_a_time_in_order() -> None:
    _conn, transport, _hub, handler, lease, sink = await detached()
    handler.gate.clear()
    for word in ("one", "two", "three"):
        sink.on_message(text(word))
    assert sink.busy
    assert transport.holds == [True, True]  # reading paused while a message is in hand
    handler.gate.set()
    async with asyncio.timeout(1):
        await until(lambda: not sink.busy)
    assert handler.seen == ["one", "two", "three"]
    assert transport.holds[-1] is False  # resumed once the backlog is done
    assert handler.ends == [] and lease.released == 0


async def test_a_disconnect_while_busy_is_handled_after_the_message() -> None:
    conn, transport, hub, handler, lease, sink = await detached()
    handler.gate.clear()
    sink.on_message(text("last"))
    sink.on_disconnect(1000)
    sink.on_message(text("after the end"))  # ignored
    assert handler.ends == [] and conn in hub.connections
    handler.gate.set()
    async with asyncio.timeout(1):
        await until(lambda: bool(handler.ends))
    assert handler.seen == ["last"]
    assert handler.ends == [1000]
    assert conn not in hub.connections
    assert hub.stats.closed_by_code == {1000: 1}
    assert lease.released == 1
    assert transport.holds == []  # nothing resumed after the end
    sink.on_disconnect(1006)  # only the first end counts
    assert handler.ends == [1000] and lease.released == 1


async def test_an_error_in_the_handler_closes_1011_once() -> None:
    _conn, transport, _hub, handler, _lease, sink = await detached()
    handler.fail = True
    handler.gate.clear()
    sink.on_message(text("bad"))
    sink.on_message(text("ignored: closing"))
    handler.gate.set()
    async with asyncio.timeout(1):
        await until(lambda: not sink.busy)
    assert handler.seen == ["bad"]
    assert transport.closes == [(CloseCode.INTERNAL_ERROR, "internal error")]


async def test_the_asgi_pump_feeds_the_same_reader_and_holds_reading() -> None:
    socket = FakeSocket()  # no wschat transport: plain ASGI receive()
    conn = Connection(socket, "a", outbox_size=4, close_timeout_s=1.0)
    hub, handler, lease = Hub(), Handler(), Lease()
    handler.gate.clear()
    for word in ("one", "two", "three"):
        socket.incoming.put_nowait(text(word))
    served = asyncio.create_task(
        serve_connection(conn, hub, handler.on_frame, handler.on_end, lease)
    )
    async with asyncio.timeout(1):
        await until(lambda: socket.incoming.qsize() == 1)
    for _ in range(5):
        await asyncio.sleep(0)
    # One in hand, one in the backlog: the pump waits instead of reading the third.
    assert socket.incoming.qsize() == 1
    handler.gate.set()
    socket.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})
    async with asyncio.timeout(1):
        await served
    assert handler.seen == ["one", "two", "three"]
    assert handler.ends == [1001]
    assert lease.released == 1
    assert hub.connections == set()


@pytest.mark.parametrize("fail", [False, True])
async def test_the_asgi_pump_ends_the_reader_if_cancelled(fail: bool) -> None:
    socket = FakeSocket()
    conn = Connection(socket, "a", outbox_size=4, close_timeout_s=1.0)
    hub, handler, lease = Hub(), Handler(), Lease()
    handler.fail = fail
    socket.incoming.put_nowait(text("hi"))
    served = asyncio.create_task(
        serve_connection(conn, hub, handler.on_frame, handler.on_end, lease)
    )
    async with asyncio.timeout(1):
        await until(lambda: handler.seen == ["hi"])
        await asyncio.sleep(0)
    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await served
    assert handler.ends == [1006]
    assert lease.released == 1
    assert hub.connections == set()


class SyncHandler:
    """A handler with nothing to await (the echo's shape): a plain function returning None."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.ends: list[int | None] = []
        self.fail = False

    def on_frame(self, conn: Connection, message: AsgiEvent) -> None:
        self.seen.append(message["text"])
        if self.fail:
            raise RuntimeError("boom")

    def on_end(self, conn: Connection, code: int | None) -> None:
        self.ends.append(code)


async def test_a_handler_with_nothing_to_await_runs_as_the_message_arrives() -> None:
    transport = FakeTransport()
    conn = Connection(FakeSocket(transport), "a", outbox_size=4, close_timeout_s=1.0)
    hub, handler, lease = Hub(), SyncHandler(), Lease()
    await serve_connection(conn, hub, handler.on_frame, handler.on_end, lease)
    sink = transport.sink
    assert sink is not None
    tasks = len(asyncio.all_tasks())
    for word in ("one", "two"):
        sink.on_message(text(word))
        assert not sink.busy  # handled already: no task, reading never held
    assert handler.seen == ["one", "two"]
    assert len(asyncio.all_tasks()) == tasks
    assert transport.holds == []
    handler.fail = True
    sink.on_message(text("bad"))  # an error closes 1011, as for an async handler
    sink.on_message(text("ignored: closing"))
    assert handler.seen == ["one", "two", "bad"]
    assert transport.closes == [(CloseCode.INTERNAL_ERROR, "internal error")]
    sink.on_disconnect(1000)
    assert handler.ends == [1000] and lease.released == 1
