"""One WebSocket connection on the server: its bounded outbox and how it is drained.

Fan-out never awaits a peer: ``offer()`` either writes a prepared frame at once or queues it,
and returns. Under wschat's own transport (``transport.extension.Transport``) a frame goes
straight to the socket while the socket's buffer has room, and the outbox only fills while
the peer is not reading; the transport's ``on_writable`` drains it — no task per connection.
Under any other ASGI server a writer task drains the outbox with ASGI sends.

A peer that does not read fills its outbox; the next ``offer()`` fails, and the caller (the
``Hub``, the one delivery policy) closes the connection with ``CloseCode.SLOW_CONSUMER``.
Nothing here is unbounded: the outbox holds at most ``outbox_size`` entries and about
``outbox_bytes`` bytes of serialised frames (issue 15: one welcome with its replay is one entry,
so a count of entries alone let a peer that never reads hold 43 MB), and a close that the peer
does not read within ``close_timeout_s`` aborts the TCP connection. The byte count costs the
fan-out no allocation: a broadcast's wire bytes are built once and shared, and each connection
adds their length on queueing and takes it off on writing.

``Coalescer`` lives here, not with ``Outgoing``, because it drives a connection's private
flush. This module knows no rooms, names or chat, and imports nothing above
``wschat.server.transport`` but ``conn.outgoing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from wschat.server.conn.outgoing import Outgoing
from wschat.server.transport.asgi import AsgiEvent, Scope
from wschat.server.transport.extension import Transport, transport_of

WRITE_CHUNK_BYTES = 64 * 1024
OUTBOX_BYTES = 1024 * 1024  # the default bound on the bytes queued for one peer

log = logging.getLogger("wschat.server")


class Socket(Protocol):
    """An accepted ASGI WebSocket as the connection layer uses it (Starlette's fits)."""

    @property
    def scope(self) -> Scope: ...

    async def receive(self) -> AsgiEvent: ...

    async def send(self, message: AsgiEvent) -> None: ...


def peer_of(scope: Scope) -> str:
    """Return a socket's client as ``host:port`` (or ``-``), for logs."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class Coalescer:
    """Batch the frames offered to each connection during one event-loop pass into one write.

    Offers only mark a connection dirty; one callback per loop pass then writes each dirty
    connection's queued frames with a single ``write`` — so a burst of messages costs one
    system call per receiver instead of one per message, and a lone message waits for no
    more than the rest of the current pass.
    """

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._scheduled = False

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def fresh_pass(self) -> bool:
        """Return True for the first broadcast of a loop pass: its frames may be written at once.

        Nothing is queued yet in such a pass, so a receiver with an empty outbox can take its
        frame straight away (``Connection.write_now``), without being marked and flushed; later
        broadcasts in the same pass queue and are joined into one write per receiver.
        """
        if self._scheduled:
            return False
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)  # ends the pass
        return True

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn._dirty = False
            conn._flush()


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


Entry = Outgoing | list[Outgoing] | _Close


class Connection:
    """A live WebSocket and its outbox; owned by the handler that accepted it.

    ``label`` is an opaque identity for logs; ``group`` is the key the ``Hub`` files the
    connection under for fan-out (the chat layer's room), or None. The layers above keep
    their own per-connection state in a subclass with ``__slots__`` (no dict per socket).
    """

    __slots__ = (
        "_close_timeout_s",
        "_closer",
        "_coalescer",
        "_dirty",
        "_outbox",
        "_outbox_bytes",
        "_outbox_size",
        "_proto",
        "_queued_bytes",
        "_ready",
        "_writer",
        "close_code",
        "group",
        "label",
        "socket",
    )

    def __init__(
        self,
        socket: Socket,
        label: str,
        group: str | None = None,
        *,
        outbox_size: int,
        close_timeout_s: float,
        coalescer: Coalescer | None = None,
        outbox_bytes: int = OUTBOX_BYTES,
    ) -> None:
        self.socket = socket
        self.label = label
        self.group = group
        self.close_code: int | None = None  # set once we decided to close
        # A list, not a deque: 56 bytes while empty (most of the time) against about 600.
        self._outbox: list[Entry] = []
        self._outbox_size = outbox_size
        self._outbox_bytes = outbox_bytes
        self._queued_bytes = 0  # the serialised size of what the outbox holds
        self._close_timeout_s = close_timeout_s
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._coalescer = coalescer
        self._dirty = False
        self._proto: Transport | None = transport_of(socket.scope)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r} group={self.group!r}>"

    @property
    def peer(self) -> str:
        """Return the client's ``host:port`` (or ``-``), for logs."""
        return peer_of(self.socket.scope)

    @property
    def protocol(self) -> Transport | None:
        """Return wschat's transport for this socket, or None under another server."""
        return self._proto

    @property
    def queued(self) -> int:
        """Return how many entries wait in the outbox."""
        return len(self._outbox)

    @property
    def queued_bytes(self) -> int:
        """Return how many bytes of serialised frames wait in the outbox."""
        return self._queued_bytes

    def start(self) -> None:
        """Begin sending; call once, after the handshake. Frames offered earlier wait until then."""
        if self._proto is not None:
            self._proto.on_writable = self._flush
            self._flush()
        else:
            self._ready = asyncio.Event()
            self._ready.set()
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, frame: Outgoing) -> bool:
        """Send or queue ``frame`` and return True; return False if the outbox is full.

        Full means ``outbox_size`` entries, or ``outbox_bytes`` bytes with ``frame`` added to a
        non-empty outbox (a lone frame is bounded by the largest message). ``frame`` is shared
        by every receiver of a broadcast and must not be changed. A False return means the
        peer is too slow: the caller must ``close()`` it.
        """
        if self.close_code is not None:
            return True  # closing: drop silently, the peer will resume from history
        outbox = self._outbox
        if len(outbox) >= self._outbox_size and not self._flush_burst():
            return False
        size = len(frame.wire)  # built once per broadcast, shared by every receiver
        if (
            outbox
            and self._queued_bytes + size > self._outbox_bytes
            and not self._flush_burst(size)
        ):
            return False
        outbox.append(frame)
        self._queued_bytes += size
        if not self._dirty:  # _wake(), inlined: this runs once per receiver per broadcast
            proto = self._proto
            if proto is None:
                if self._ready is not None:
                    self._ready.set()
            elif proto.on_writable is not None:
                if self._coalescer is None:
                    self._flush()
                else:
                    self._dirty = True
                    self._coalescer.mark(self)
        return True

    def write_now(self, frame: Outgoing) -> bool:
        """Write ``frame`` to the socket at once and return True, if nothing waits before it
        and the socket takes it; else return False, and the caller ``offer()``s it.

        Only for the first broadcast of a loop pass (``Coalescer.fresh_pass``). A failed write
        never changes the hub here: the transport reports a lost connection in a later pass.
        """
        proto = self._proto
        if (
            proto is None
            or self._outbox
            or self.close_code is not None
            or proto.on_writable is None
            or not proto.can_write()
        ):
            return False
        proto.write_frame(frame.wire)
        return True

    def _flush_burst(self, size: int = 0) -> bool:
        """Make room in a full outbox by writing it now, if the socket takes data.

        A burst (many messages in one loop pass: a pipelined flood, many senders at once)
        fills the outbox before the end-of-pass flush; that is not a slow reader. Return
        whether there is room now for one more entry of ``size`` bytes; a socket that cannot
        take data means a slow consumer.
        """
        proto = self._proto
        if proto is None or proto.on_writable is None or not proto.can_write():
            return False
        self._flush()
        outbox = self._outbox
        return len(outbox) < self._outbox_size and (
            not outbox or self._queued_bytes + size <= self._outbox_bytes
        )

    def push(self, batch: list[Outgoing]) -> bool:
        """Queue ``batch`` (a welcome and its replay) as one outbox entry and return True;
        return False if an earlier batch is still unsent or the outbox is full.

        The batch is bounded by the caller (the replay cap, in messages and in bytes), and it
        is sent in order, before anything offered afterwards. Its bytes count against
        ``outbox_bytes`` like any frame's; into an empty outbox it is always taken. One batch
        waits at a time: a peer that asks for welcome after welcome (``join`` again and again)
        and reads none would otherwise hold one history replay per request (issue 15: 110 MB
        in 30 s under the rate limit). A False return means the peer is too slow: the caller
        must ``close()`` it, as for ``offer``.
        """
        if self.close_code is not None or not batch:
            return True
        size = 0
        for frame in batch:
            size += len(frame.wire)
        outbox = self._outbox
        if outbox:
            self._flush_burst()  # writes what the socket takes now
            if outbox and (
                len(outbox) >= self._outbox_size
                or self._queued_bytes + size > self._outbox_bytes
                or any(type(e) is list for e in outbox)
            ):
                return False
        outbox.append(batch)
        self._queued_bytes += size
        self._wake()
        return True

    def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close the connection with ``code``; idempotent, never blocks the caller.

        With ``flush`` the frames already queued are sent first (a graceful close); without it
        they are dropped (a slow consumer). Either way a peer that does not read its close frame
        within ``close_timeout_s`` has its TCP connection aborted.
        """
        if self.close_code is not None:
            return
        self.close_code = code
        if not flush:
            self._outbox.clear()
            self._queued_bytes = 0
            if self._writer is not None:
                # The writer may be parked on a full socket buffer: stop it; the close task
                # waits for room itself (bounded by the close timeout).
                self._writer.cancel()
                self._start_close(_Close(code, reason))
                return
        self._outbox.append(_Close(code, reason))
        self._wake()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self._proto is not None:
            self._proto.abort()

    async def stop(self) -> None:
        """Stop sending and wait for the writer and closer tasks to end."""
        self.stop_now()
        for task in (self._writer, self._closer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def stop_now(self) -> None:
        """Stop sending, without waiting for the writer or closer tasks to finish."""
        if self._proto is not None:
            self._proto.on_writable = None
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()

    def _wake(self) -> None:
        if self._proto is not None:
            if self._proto.on_writable is None or self._dirty:
                return  # not started yet, or a flush is already due in this loop pass
            if self._coalescer is None:
                self._flush()
            else:
                self._dirty = True
                self._coalescer.mark(self)
        elif self._ready is not None:
            self._ready.set()

    def _flush(self) -> None:
        """Write queued frames while the socket takes them (the direct path)."""
        proto = self._proto
        outbox = self._outbox
        assert proto is not None
        if len(outbox) == 1 and type(outbox[0]) is Outgoing:
            # The common case (one message since the last pass): no chunk to build.
            if proto.can_write():
                self._queued_bytes = 0  # the outbox is empty after this write
                proto.write_frame(outbox.pop().wire)  # type: ignore[union-attr]
            return
        done = 0  # entries written; removed from the front once, at the end
        try:
            while done < len(outbox):
                entry = outbox[done]
                if isinstance(entry, _Close):
                    done += 1
                    self._start_close(entry)
                    return
                if not proto.can_write():
                    return
                # Join consecutive frames into one write, up to about one socket buffer's
                # worth; past that the transport pauses us (can_write) until the peer reads.
                chunk: list[bytes] = []
                size = 0
                while done < len(outbox) and size < WRITE_CHUNK_BYTES:
                    entry = outbox[done]
                    if isinstance(entry, _Close):
                        break
                    if isinstance(entry, list):
                        # A batch is written a chunk at a time too, so that a long replay
                        # waits here, counted, not whole in the transport's buffer (issue 15).
                        taken = 0
                        while taken < len(entry) and size < WRITE_CHUNK_BYTES:
                            wire = entry[taken].wire
                            chunk.append(wire)
                            size += len(wire)
                            taken += 1
                        if taken < len(entry):
                            outbox[done] = entry[taken:]
                            break
                    else:
                        wire = entry.wire
                        chunk.append(wire)
                        size += len(wire)
                    done += 1
                self._queued_bytes -= size
                proto.write_frame(chunk[0] if len(chunk) == 1 else b"".join(chunk))
        finally:
            del outbox[:done]

    def _start_close(self, entry: Entry) -> None:
        if not isinstance(entry, _Close):
            return
        if self._proto is not None:
            self._proto.close(entry.code, entry.reason)
            return
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self._send_close(entry))

    async def _drain(self) -> None:
        """Drain the outbox with ASGI sends (when not under wschat's own protocol)."""
        send = self.socket.send
        outbox = self._outbox
        ready = self._ready
        assert ready is not None
        try:
            while True:
                if not outbox:
                    ready.clear()
                    await ready.wait()
                    continue
                entry = outbox.pop(0)
                if isinstance(entry, _Close):
                    self._start_close(entry)
                    return
                for frame in entry if isinstance(entry, list) else (entry,):
                    self._queued_bytes -= len(frame.wire)
                    await send(frame.asgi())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer vanished mid-send
            log.debug("send to %s failed: %r", self.label, exc)
            self.abort()

    async def _send_close(self, entry: _Close) -> None:
        message: AsgiEvent = {
            "type": "websocket.close",
            "code": int(entry.code),
            "reason": entry.reason,
        }
        try:
            async with asyncio.timeout(self._close_timeout_s):
                await self.socket.send(message)
        except TimeoutError:
            log.info("%s did not read its close frame in time; aborting", self.label)
            self.abort()
        except Exception as exc:  # already gone
            log.debug("close of %s failed: %r", self.label, exc)
