"""Drive a load test with asyncio on ``BenchConnection``; measure into ``BenchStats``.

A run has four phases, each bounded in time: *probe* (one connection: is a server there,
which dialect does it speak, and if it is no WebSocket endpoint, what did it answer),
*connect* (open ``n`` connections, TCP connect and WebSocket upgrade timed apart), *load*
(senders send for ``--duration`` or ``--messages``), *drain* (wait, bounded, for every
expected delivery) and *close*. Every connection is read from the moment it opens, each
message handled as it is read (``connection``: no queue, no task per connection); it matches
what arrives by the stamp inside the text (see ``payload``), never by arrival order, and
checks each sender's stream for loss, duplicates and reordering.

In open-loop mode (``rate > 0``) each sender follows a fixed schedule (``schedule``) and
stamps each message with its *intended* send time, so a stalled server or a backed-up socket
shows in the latency instead of silently delaying the next send (coordinated omission). In
closed-loop mode (``rate == 0``) each sender waits for its own message to come back before
sending the next.

A connection the server closes mid-run is counted once, by its close code; what it could no
longer send is ``cancelled`` and what it could no longer receive ``missed_while_closed``,
apart from ``unsent`` (a sender that fell behind) and ``lost`` (a live receiver never got it).
A message the server answers with an ``error`` event is ``refused``, never expected.

A child of a shared-room run (``--processes``, fan-out and chat) numbers its connections from
``index_offset`` within the run's one ``run_id`` and room, and meets the other processes at
each phase (``barrier``): its receivers then expect, and are checked against, what every
sender of every process had sent.
"""

from __future__ import annotations

import asyncio
import errno
import math
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from wschat import __version__
from wschat.bench.barrier import Barrier
from wschat.bench.config import BenchConfig, Protocol, Scenario
from wschat.bench.connection import BenchConnection, open_connection
from wschat.bench.limits import Plan, open_socket, plan
from wschat.bench.payload import (
    Dialect,
    Stamp,
    client_frame,
    find_stamp,
    v1_error_code,
    v1_event,
    v1_message_stamp,
)
from wschat.bench.schedule import Schedule
from wschat.bench.stats import BenchStats, Latency, SequenceCheck, generator_limited
from wschat.errors import BenchError
from wschat.protocol import SUBPROTOCOL
from wschat.refusal import explain, explain_head, one_line

SETTLE_QUIET_S = 0.2  # after connecting: no frame for this long means presence events are done
SETTLE_MAX_S = 5.0
SAMPLE_INTERVAL_S = 0.1  # event-loop lag probe
LAG_OFF = 2**63  # no probe starts after this: loop lag is recorded during the load phase only
PROGRESS_INTERVAL_S = 0.25
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for the live display."""

    phase: str
    elapsed_s: float
    n: int
    attempted: int
    opened: int
    open: int
    sent: int
    delivered: int
    errors: int
    p99_ms: float | None


@dataclass
class BenchResult:
    """What a finished run hands to the report."""

    config: BenchConfig
    run_id: str
    room: str
    dialect: Dialect
    plan: Plan
    stats: BenchStats
    connect_s: float = 0.0
    load_s: float = 0.0  # from the first send to the last delivery (or the end of drain)
    load_started: float = 0.0  # wall clock (Unix time) of the first send, to line up samples
    send_s: float = 0.0
    cpu: float = 0.0  # generator CPU during connect+load, 1.0 = one core
    limited_by_generator: str | None = None
    unsent: int = 0  # scheduled sends that never left an open connection (the sender was behind)
    cancelled: int = 0  # scheduled sends of connections the server had closed: not sent
    partial: bool = False  # interrupted (Ctrl-C): the counts cover the run so far
    shared_room: bool = False  # --processes: every process's receivers were in the one room
    unreported: tuple[str, ...] = ()  # --processes, interrupted: children that wrote no report


@dataclass(eq=False, slots=True)
class _Client:
    index: int
    conn: BenchConnection | None = None  # set once open
    check: SequenceCheck = field(default_factory=SequenceCheck)
    got: int = 0  # distinct stamped messages of this run received
    sent: int = 0
    waiting: int = -1  # closed loop: the seq this client's sender waits for
    reply: asyncio.Event = field(default_factory=asyncio.Event)
    refused: int = 0  # its messages the server answered with an error event (not sent on)
    gone: bool = False  # the server (or the network) closed it before the run's end


def error_kind(exc: BaseException) -> str:
    """Name the kind of a connection failure for the error table."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, InvalidStatus):
        why = one_line(exc.response.body, 60)  # the server's reason: "too many connections..."
        return f"handshake HTTP {exc.response.status_code}" + (f" ({why})" if why else "")
    if isinstance(exc, ConnectionClosed):
        return close_kind(exc)
    if isinstance(exc, InvalidHandshake):
        return "handshake invalid"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__


def close_kind(exc: ConnectionClosed) -> str:
    """Name a connection closed by the peer: its close code, or 1006 when no frame came."""
    return f"close {exc.rcvd.code}" if exc.rcvd is not None else "close 1006 (no close frame)"


class Runner:
    """One load test. Build it, ``await run()``, read the result; not reusable.

    ``on_progress`` is called from the event loop every 0.25 s and must return quickly.
    """

    def __init__(
        self, config: BenchConfig, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        self.config = config
        self.on_progress = on_progress
        self.stats = BenchStats()
        self.run_id = config.run_id or secrets.token_hex(3)
        self.room = config.room or f"bench-{self.run_id}"
        self.phase = "probe"
        self.clients: list[_Client] = []
        self.result: BenchResult | None = None  # set once the run has started (after DNS)
        self._dialect = Dialect.PLAIN
        self._closing = False
        self._started = time.monotonic()
        self._last_rx_ns = 0
        self._frames = 0  # every frame received, stamped or not
        self._lag_since_ns = LAG_OFF  # probes starting before this belong to another phase
        # the processes of a shared-room run probe at once: each with its own id
        self._probe_id = f"probe{config.index_offset}" if config.index_offset else "probe"
        fds = config.sync_fds
        self._barrier = Barrier(*fds) if fds is not None else None
        # a shared room: every sender's accepted count (all processes'), once the senders are done
        self._room_accepted: dict[int, int] | None = None
        parts = urlsplit(config.url)  # BenchConfig has checked its shape
        self._scheme = parts.scheme
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._prefix = parts.path.rstrip("/")
        netloc = f"[{self._host}]" if ":" in self._host else self._host
        self._base = f"{parts.scheme}://{netloc}:{self._port}{self._prefix}"
        self._user_agent = f"wschat-bench/{__version__}"

    # --- URLs and dialects --------------------------------------------------------------

    def uri(self, index: int | str) -> str:
        """Return the URL connection ``index`` opens for this scenario."""
        if self.config.scenario is Scenario.ECHO:
            return f"{self._base}/ws"
        return f"{self._base}/ws/b{self.run_id}-{index}?room={quote(self.room)}"

    def _subprotocols(self) -> list[str] | None:
        if self.config.scenario is Scenario.ECHO or self.config.protocol is Protocol.PLAIN:
            return None
        return [SUBPROTOCOL]

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> BenchResult:
        """Run every phase and return the result.

        Raises ``BenchError`` when no connection can be made at all (nothing listening, a
        refused upgrade, limits too low); failures of single connections are counted instead.
        """
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise BenchError(f"cannot resolve {self._host!r}: {exc.strerror}") from None
        family, _, _, _, addr = infos[0]
        self._addr: tuple[Any, ...] = tuple(addr)
        self._family = socket.AddressFamily(family)
        self.plan = plan(
            self.config.n,
            str(self._addr[0]),
            self.config.spread,
            source_offset=self.config.source_offset,
        )
        self.result = result = BenchResult(
            self.config, self.run_id, self.room, self._dialect, self.plan, self.stats
        )
        await self._probe()
        result.dialect = self._dialect
        stop = asyncio.Event()
        cpu0, wall0 = time.process_time(), time.monotonic()
        # Nothing raises inside the task group on purpose: it would come out as an ExceptionGroup.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sample(stop))
            try:
                self.phase = "connect"
                t0 = time.monotonic()
                await self._connect_all(tg)
                result.connect_s = time.monotonic() - t0
                ready = bool(self.clients) and await self._meet("connected")
                if ready:
                    await self._settle()
                    ready = await self._meet("settled")
                if ready:
                    # the verdict on the generator covers the load phase only
                    self.stats.loop_lag = Latency()
                    self._lag_since_ns = time.monotonic_ns()
                    cpu0, wall0 = time.process_time(), time.monotonic()
                    self.phase = "load"
                    await self._load(result)
                    self._lag_since_ns = LAG_OFF
                result.cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
            finally:
                self.phase = "close"
                await self._close_all()
                stop.set()
        if not self.clients:
            raise BenchError(self._nothing_opened())
        self.finish(result)
        return result

    def _nothing_opened(self) -> str:
        kinds = ", ".join(f"{v} {k}" for k, v in self.stats.errors.most_common(3))
        return f"none of {self.config.n} connections to {self._base} opened ({kinds})"

    async def _probe(self) -> None:
        """Open one connection to learn whether a server is there and which dialect it speaks.

        Runs on ``BenchConnection`` like every other connection; when the server answers with
        something other than an upgrade, the error says what it answered (status, body).
        """
        timeout = self.config.connect_timeout_s
        conn = BenchConnection(
            self.uri(self._probe_id), self._subprotocols(), self._user_agent, lambda _t, _n: None
        )
        try:
            async with asyncio.timeout(timeout):
                await self._connect(conn, None)
        except ConnectionRefusedError:
            raise BenchError(
                f"no server at {self._base}: connection refused — start one with "
                f"'wschat serve --port {self._port}' or pass --url"
            ) from None
        except TimeoutError:
            raise BenchError(
                f"no answer from {self._base} within {timeout:g} s (connect and upgrade)"
            ) from None
        except InvalidStatus as exc:
            response = exc.response
            why = explain(response.status_code, response.reason_phrase, response.body)
            raise BenchError(
                f"{self.uri(self._probe_id)} refused the WebSocket upgrade: {why}"
            ) from None
        except (InvalidHandshake, InvalidURI) as exc:
            why = explain_head(conn.head) or str(exc)
            raise BenchError(f"{self.uri(self._probe_id)} answered {why}") from None
        except OSError as exc:
            raise BenchError(f"cannot connect to {self._base}: {error_kind(exc)}") from None
        try:
            self._dialect = Dialect.V1 if conn.subprotocol == SUBPROTOCOL else Dialect.PLAIN
            if self.config.protocol is Protocol.V1 and self._dialect is not Dialect.V1:
                raise BenchError(
                    f"{self._base} did not accept the subprotocol {SUBPROTOCOL}: "
                    f"use --protocol plain (or auto)"
                )
        finally:
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 1):
                await conn.close()

    async def _connect(self, conn: BenchConnection, source: str | None) -> tuple[int, int]:
        """Connect ``conn`` (from ``source``) and run its handshake; return when each ended (ns)."""
        loop = asyncio.get_running_loop()
        sock = open_socket(self._family, source)
        try:
            t0 = time.monotonic_ns()
            await loop.sock_connect(sock, self._addr)
            t1 = time.monotonic_ns()
            await open_connection(
                sock, conn, server_hostname=self._host if self._scheme == "wss" else None
            )
        except BaseException:
            sock.close()
            raise
        return t1 - t0, time.monotonic_ns() - t1

    async def _open(self, client: _Client, source: str | None) -> BenchConnection:
        """Open connection ``client``, timing its TCP connect and its upgrade apart."""
        conn = BenchConnection(
            self.uri(client.index), self._subprotocols(), self._user_agent, self._receiver(client)
        )
        tcp_ns, upgrade_ns = await self._connect(conn, source)
        self.stats.tcp_connect.record_ns(tcp_ns)
        self.stats.upgrade.record_ns(upgrade_ns)
        return conn

    async def _connect_all(self, tg: asyncio.TaskGroup) -> None:
        """Open ``n`` connections (``concurrency`` handshakes at a time, spread over ramp)."""
        cfg = self.config
        gate = asyncio.Semaphore(cfg.concurrency)
        start = time.monotonic()

        async def open_one(index: int) -> None:
            if cfg.ramp_s:
                await asyncio.sleep(max(0.0, start + index * cfg.ramp_s / cfg.n - time.monotonic()))
            client = _Client(cfg.index_offset + index)  # the run's number: its id and stamp
            async with gate:
                self.stats.attempted += 1
                try:
                    async with asyncio.timeout(cfg.connect_timeout_s):
                        conn = await self._open(client, self.plan.source(index))
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    self.stats.record_error(error_kind(exc))
                    return
            client.conn = conn
            self.clients.append(client)
            self.stats.opened += 1
            self.stats.open += 1
            conn.on_lost = on_lost = self._lost_handler(client)
            if conn.lost.done():  # the TCP connection ended while the handshake finished
                on_lost(conn)

        rounds = math.ceil(cfg.n / cfg.concurrency) + 1
        try:
            async with asyncio.timeout(cfg.ramp_s + cfg.connect_timeout_s * rounds):
                async with asyncio.TaskGroup() as opening:
                    for index in range(cfg.n):
                        opening.create_task(open_one(index))
        except TimeoutError:
            self.stats.record_error("timeout")
        self.clients.sort(key=lambda c: c.index)

    def _receiver(self, client: _Client) -> Callable[[str, int], None]:
        """Return the function that handles each text message ``client`` reads, as it is read.

        Called from ``data_received``: it must be cheap and must not raise. A v1 ``message``
        event's stamp is read straight from the JSON text (``v1_message_stamp``); any other
        frame is parsed, so ``error`` events are counted and foreign text is recognised.
        """
        stats, run, own = self.stats, self.run_id, client.index
        check = client.check
        v1 = self._dialect is Dialect.V1
        record = stats.record_delivery

        def on_text(text: str, now: int) -> None:
            self._frames += 1
            if v1:
                stamp = v1_message_stamp(text)
                if stamp is None:
                    kind, body = v1_event(text)
                    if body is None:
                        if kind == "error":
                            # the answer to this client's last say: refused, never sent on
                            code = v1_error_code(text)
                            stats.record_error(f"v1 error {code}")
                            stats.refused[code] += 1
                            client.refused += 1
                            client.reply.set()
                        return
                    stamp = find_stamp(body)
            else:
                stamp = find_stamp(text)
            if stamp is None or stamp.run != run:
                stats.foreign += 1
                return
            self._last_rx_ns = now
            sender, seq = stamp.sender, stamp.seq
            if record(check, sender, seq, stamp.sent_ns, now, len(text)):
                client.got += 1
            if sender == own and seq == client.waiting:
                client.reply.set()

        return on_text

    def _lost_handler(self, client: _Client) -> Callable[[BenchConnection], None]:
        """Return what to do once ``client``'s connection has ended (called once per connection).

        A connection the server closed mid-run is counted once, as an error named by its close
        code, and marked gone: its sender stops (a closed-loop sender waiting for its reply is
        woken, not timed out) and what it could no longer send or receive is counted apart.
        """

        def on_lost(conn: BenchConnection) -> None:
            self.stats.open -= 1
            if not self._closing:
                client.gone = True
                client.reply.set()
                self.stats.record_error(conn.close_kind())

        return on_lost

    async def _meet(self, phase: str) -> bool:
        """Meet the run's other processes at ``phase`` (a shared room); ``False``: stop here.

        Hands in this process's senders' accepted counts and keeps every sender's, which the
        drain waits for and ``finish`` checks against. Without a barrier, returns ``True``.
        """
        if self._barrier is None:
            return True
        counts = await self._barrier.meet(phase, self._accepted())
        if counts is None:
            self.stats.record_error("lost the other processes (bench --processes)")
            return False
        self._room_accepted = counts
        return True

    def _accepted(self) -> dict[int, int]:
        """Return this process's senders' messages the server took (sent, not refused)."""
        return {c.index: c.sent - c.refused for c in self._senders()}

    async def _settle(self) -> None:
        """Wait (at most ``SETTLE_MAX_S``) until the frames of connecting have stopped arriving.

        A v1 server sends every member a ``joined`` event per newcomer: n²/2 frames that would
        otherwise be measured as the first messages' latency.
        """
        self.phase = "settle"
        try:
            async with asyncio.timeout(SETTLE_MAX_S):
                while True:
                    seen = self._frames
                    await asyncio.sleep(SETTLE_QUIET_S)
                    if self._frames == seen:
                        return
        except TimeoutError:
            pass

    # --- load -----------------------------------------------------------------------------

    def _senders(self) -> list[_Client]:
        scenario = self.config.scenario
        if scenario is Scenario.CONNECT:
            return []
        if scenario is Scenario.FANOUT:
            return self.clients[: self.config.senders]
        return list(self.clients)

    async def _load(self, result: BenchResult) -> None:
        cfg = self.config
        senders = self._senders()
        start_ns = time.monotonic_ns()
        result.load_started = time.time()
        if cfg.scenario is Scenario.CONNECT:
            await asyncio.sleep(cfg.duration_s)  # hold
            result.load_s = cfg.duration_s
            return
        schedule = Schedule(cfg.rate, len(senders), cfg.duration_s, cfg.messages)
        bound = cfg.duration_s + cfg.reply_timeout_s + cfg.connect_timeout_s
        try:
            async with asyncio.timeout(bound):
                async with asyncio.TaskGroup() as sending:
                    for slot, client in enumerate(senders):
                        if cfg.rate:
                            sending.create_task(self._send_open(client, schedule, slot, start_ns))
                        else:
                            sending.create_task(self._send_closed(client, start_ns))
        except TimeoutError:
            self.stats.record_error("send phase timeout")
        send_end = time.monotonic_ns()
        result.send_s = (send_end - start_ns) / 1e9
        if cfg.rate:
            for slot, sender in enumerate(senders):
                behind = schedule.count(slot) - sender.sent
                if sender.gone:  # its close is counted once, by code; not a slow sender
                    result.cancelled += behind
                else:
                    result.unsent += behind
            if result.unsent:
                self.stats.errors["unsent (behind schedule)"] += result.unsent
        self.phase = "drain"
        if await self._meet("sent"):
            await self._drain()
            await self._meet("drained")
        end = max(self._last_rx_ns, send_end)
        result.load_s = max(1e-9, (end - start_ns) / 1e9)

    async def _send_open(
        self, client: _Client, schedule: Schedule, slot: int, start_ns: int
    ) -> None:
        """Send ``client``'s messages on the schedule, each stamped with its due time."""
        seq = 0
        while (due := schedule.due_ns(slot, seq)) is not None:
            intended = start_ns + due
            now = time.monotonic_ns()
            if intended > now:
                await asyncio.sleep((intended - now) / 1e9)
            if not await self._send_one(client, seq, intended):
                return  # on_lost counts the close
            seq += 1

    async def _send_closed(self, client: _Client, start_ns: int) -> None:
        """Send ``client``'s messages one at a time, each once the previous one came back."""
        cfg, stats = self.config, self.stats
        deadline_ns = start_ns + int(cfg.duration_s * 1e9)
        seq = 0
        while (not cfg.messages or seq < cfg.messages) and time.monotonic_ns() < deadline_ns:
            if not await self._send_one(client, seq, time.monotonic_ns()):
                return  # on_lost counts the close
            seq += 1
            try:
                async with asyncio.timeout(cfg.reply_timeout_s):
                    await client.reply.wait()
            except TimeoutError:
                if not (client.gone or self._is_closed(client)):
                    stats.record_error("reply timeout")
            if client.gone or self._is_closed(client):
                return  # on_lost counts the close, once

    @staticmethod
    def _is_closed(client: _Client) -> bool:
        return client.conn is None or client.conn.closed

    async def _send_one(self, client: _Client, seq: int, intended_ns: int) -> bool:
        """Send message ``seq`` of ``client`` stamped ``intended_ns``; ``False`` once it is closed."""
        conn = client.conn
        if conn is None or client.gone or self._is_closed(client):
            return False
        stamp = Stamp(self.run_id, client.index, seq, intended_ns).encode(self.config.size)
        frame = client_frame(self._dialect, stamp)
        client.waiting = seq
        client.reply.clear()
        if not await conn.send(frame):
            return False
        self.stats.record_sent(len(frame))
        client.sent = seq + 1
        return True

    def _expected(self, client: _Client, total_accepted: int) -> int:
        if self.config.scenario is Scenario.ECHO:
            return client.sent - client.refused
        return total_accepted

    async def _drain(self) -> None:
        """Wait until every open connection has every message it should get, or the timeout.

        A message the server refused (its error event may still be on its way) is not waited for.
        """
        stats = self.stats
        try:
            async with asyncio.timeout(self.config.drain_timeout_s):
                # Polled: completion depends on every client, and a 50 ms poll costs less than
                # checking all of them on each delivery.
                room = self._room_accepted
                total = sum(room.values()) if room is not None else None
                while any(  # noqa: ASYNC110
                    c.got
                    < self._expected(
                        c, total if total is not None else stats.sent - stats.refused.total()
                    )
                    for c in self.clients
                    if c.conn is not None and not c.conn.closed
                ):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass  # what is still missing is counted as lost

    async def _close_all(self) -> None:
        """Close every connection (1000); abort whatever has not closed in time."""
        self._closing = True
        conns = [c.conn for c in self.clients if c.conn is not None]
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 3):
                async with asyncio.TaskGroup() as closing:
                    for conn in conns:
                        closing.create_task(conn.close())
        except TimeoutError:
            for conn in conns:
                conn.abort()

    async def _sample(self, stop: asyncio.Event) -> None:
        """Sample event-loop lag every 0.1 s, CPU and the series every 1 s, progress 4 times a second."""
        stats = self.stats
        t_cpu, t_wall = time.process_time(), time.monotonic()
        last_progress = 0.0
        while not stop.is_set():
            before = time.monotonic_ns()
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            now_ns = time.monotonic_ns()
            if before >= self._lag_since_ns:
                stats.record_lag(now_ns - before - int(SAMPLE_INTERVAL_S * 1e9))
            now = now_ns / 1e9
            if now - t_wall >= 1.0:
                cpu = time.process_time()
                stats.tick(now - self._started, (cpu - t_cpu) / (now - t_wall))
                t_cpu, t_wall = cpu, now
            if self.on_progress is not None and now - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = now
                self.on_progress(self.progress())
        now = time.monotonic()
        if now - t_wall > SAMPLE_INTERVAL_S / 2:  # the last, partial second
            stats.tick(now - self._started, (time.process_time() - t_cpu) / (now - t_wall))

    def progress(self) -> Progress:
        """Return a snapshot of the counters for a live display."""
        s = self.stats
        recent = next((x.p99_ms for x in reversed(s.series) if x.p99_ms is not None), None)
        return Progress(
            self.phase,
            time.monotonic() - self._started,
            self.config.n,
            s.attempted,
            s.opened,
            s.open,
            s.sent,
            s.delivered,
            s.error_count,
            recent,
        )

    def finish(self, result: BenchResult) -> None:
        """Count losses against what every sender had accepted, and judge the generator.

        A message the server refused (an ``error`` event) was never sent on: it counts in
        ``refused``, not in ``expected``. A receiver the server closed mid-run misses the tail
        of every stream from then on: that is ``missed_while_closed``; ``lost`` is what a
        receiver did not get while it was open (a gap below the last message it got). In a
        shared room, the senders are every process's, as counted at the last meeting (an
        interrupted run may not have met after sending: its receivers are then checked
        against this process's senders only, and ``partial`` says so).
        """
        stats = self.stats
        accepted = self._accepted()
        if self._room_accepted is not None:
            accepted = {**self._room_accepted, **accepted}
        echo = self.config.scenario is Scenario.ECHO
        stats.expected = stats.lost = stats.missed_while_closed = 0
        for client in self.clients:
            streams = {client.index: accepted.get(client.index, 0)} if echo else accepted
            stats.expected += sum(streams.values())
            missing = client.check.missing(streams)
            missed = min(missing, client.check.tail(streams)) if client.gone else 0
            stats.lost += missing - missed
            stats.missed_while_closed += missed
        result.limited_by_generator = generator_limited(result.cpu, stats.loop_lag.summary())


async def run_bench(
    config: BenchConfig, on_progress: Callable[[Progress], None] | None = None
) -> BenchResult:
    """Run one load test described by ``config``; see ``Runner.run`` for what it raises."""
    return await Runner(config, on_progress).run()
