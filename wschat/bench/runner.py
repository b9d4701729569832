"""Drive a load test with asyncio and the ``websockets`` client; measure into ``BenchStats``.

A run has four phases, each bounded in time: *probe* (one connection: is a server there,
which dialect does it speak), *connect* (open ``n`` connections, TCP connect and WebSocket
upgrade timed apart), *load* (senders send for ``--duration`` or ``--messages``), *drain*
(wait, bounded, for every expected delivery) and *close*. Every connection is read from the moment
it opens, each message handled as it is read (``connection``: no queue, no task per
connection); it matches what arrives by the stamp inside the text (see ``payload``), never by
arrival order, and checks each sender's stream for loss, duplicates and reordering.

In open-loop mode (``rate > 0``) each sender follows a fixed schedule and stamps each message
with its *intended* send time, so a stalled server or a backed-up socket shows in the latency
instead of silently delaying the next send (coordinated omission). In closed-loop mode
(``rate == 0``) each sender waits for its own message to come back before sending the next.
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
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from wschat import __version__
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
from wschat.bench.stats import BenchStats, Latency, SequenceCheck, generator_limited
from wschat.errors import BenchError
from wschat.protocol import SUBPROTOCOL

SETTLE_QUIET_S = 0.2  # after connecting: no frame for this long means presence events are done
SETTLE_MAX_S = 5.0
SAMPLE_INTERVAL_S = 0.1  # event-loop lag probe
LAG_OFF = 2**63  # no probe starts after this: loop lag is recorded during the load phase only
PROGRESS_INTERVAL_S = 0.25
CLOSE_TIMEOUT_S = 2.0


class Scenario(StrEnum):
    """What the connections do once open."""

    CONNECT = "connect"  # open and hold n connections for --duration
    ECHO = "echo"  # every connection does round trips on /ws
    FANOUT = "fanout"  # --senders connections send, all n in one room receive
    CHAT = "chat"  # every connection sends and receives every message of the room


class Protocol(StrEnum):
    """Which dialect to speak; ``auto`` offers ``wschat.v1`` and falls back to plain."""

    AUTO = "auto"
    V1 = "v1"
    PLAIN = "plain"


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything a run needs; the CLI's flags map one to one onto these fields."""

    url: str = "ws://127.0.0.1:8000"
    n: int = 500
    scenario: Scenario = Scenario.FANOUT
    protocol: Protocol = Protocol.AUTO
    size: int = 64
    duration_s: float = 10.0
    messages: int = 0  # per sender; 0: until --duration
    rate: float = 0.0  # messages per second per sender; 0: closed loop
    senders: int = 1  # fanout only
    ramp_s: float = 0.0  # spread connection opens over this many seconds
    room: str | None = None  # default: a fresh room per run
    connect_timeout_s: float = 10.0
    reply_timeout_s: float = 5.0  # closed loop: wait this long for one's own message
    drain_timeout_s: float = 5.0
    concurrency: int = 200  # handshakes in flight at once
    spread: bool | None = None  # None: spread source addresses when the target is loopback
    source_offset: int = 0  # --processes: this process's first source address (see limits)


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
    unsent: int = 0


@dataclass(eq=False, slots=True)
class _Client:
    index: int
    conn: BenchConnection | None = None  # set once open
    check: SequenceCheck = field(default_factory=SequenceCheck)
    got: int = 0  # distinct stamped messages of this run received
    sent: int = 0
    waiting: int = -1  # closed loop: the seq this client's sender waits for
    reply: asyncio.Event = field(default_factory=asyncio.Event)


def error_kind(exc: BaseException) -> str:
    """Name the kind of a connection failure for the error table."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, InvalidStatus):
        return f"handshake HTTP {exc.response.status_code}"
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
        self.run_id = secrets.token_hex(3)
        self.room = config.room or f"bench-{self.run_id}"
        self.phase = "probe"
        self.clients: list[_Client] = []
        self._dialect = Dialect.PLAIN
        self._closing = False
        self._started = time.monotonic()
        self._last_rx_ns = 0
        self._frames = 0  # every frame received, stamped or not
        self._lag_since_ns = LAG_OFF  # probes starting before this belong to another phase
        parts = urlsplit(config.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise BenchError(f"--url must look like ws://HOST:PORT, not {config.url!r}")
        self._scheme = parts.scheme
        self._host = parts.hostname
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
        result = BenchResult(
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
                if self.clients:
                    await self._settle()
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
        self._finish(result)
        return result

    def _nothing_opened(self) -> str:
        kinds = ", ".join(f"{v} {k}" for k, v in self.stats.errors.most_common(3))
        return f"none of {self.config.n} connections to {self._base} opened ({kinds})"

    async def _probe(self) -> None:
        """Open one connection to learn whether a server is there and which dialect it speaks."""
        timeout = self.config.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                ws = await self._open_probe()
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
            raise BenchError(
                f"{self.uri('probe')} refused the WebSocket upgrade with HTTP "
                f"{exc.response.status_code}: is this a WebSocket server with /ws endpoints?"
            ) from None
        except (InvalidHandshake, InvalidURI) as exc:
            raise BenchError(
                f"{self._base} did not complete a WebSocket handshake: {exc}"
            ) from None
        except OSError as exc:
            raise BenchError(f"cannot connect to {self._base}: {error_kind(exc)}") from None
        try:
            self._dialect = Dialect.V1 if ws.subprotocol == SUBPROTOCOL else Dialect.PLAIN
            if self.config.protocol is Protocol.V1 and self._dialect is not Dialect.V1:
                raise BenchError(
                    f"{self._base} did not accept the subprotocol {SUBPROTOCOL}: "
                    f"use --protocol plain (or auto)"
                )
        finally:
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 1):
                await ws.close()

    async def _open_probe(self) -> ClientConnection:
        """Open the probe connection with the ``websockets`` asyncio client."""
        loop = asyncio.get_running_loop()
        sock = open_socket(self._family, None)
        try:
            await loop.sock_connect(sock, self._addr)
            return await connect(
                self.uri("probe"),
                sock=sock,
                subprotocols=self._subprotocols(),  # type: ignore[arg-type]
                compression=None,
                open_timeout=None,  # the caller bounds the whole open
                ping_interval=None,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=None,
                proxy=None,
                user_agent_header=self._user_agent,
                server_hostname=self._host if self._scheme == "wss" else None,
            )
        except BaseException:
            sock.close()
            raise

    async def _open(self, client: _Client, source: str | None) -> BenchConnection:
        """Open connection ``client``, timing its TCP connect and its upgrade apart."""
        loop = asyncio.get_running_loop()
        sock = open_socket(self._family, source)
        try:
            t0 = time.monotonic_ns()
            await loop.sock_connect(sock, self._addr)
            t1 = time.monotonic_ns()
            conn = await open_connection(
                sock,
                self.uri(client.index),
                self._subprotocols(),
                self._user_agent,
                self._receiver(client),
                server_hostname=self._host if self._scheme == "wss" else None,
            )
        except BaseException:
            sock.close()
            raise
        self.stats.tcp_connect.record_ns(t1 - t0)
        self.stats.upgrade.record_ns(time.monotonic_ns() - t1)
        return conn

    async def _connect_all(self, tg: asyncio.TaskGroup) -> None:
        """Open ``n`` connections (``concurrency`` handshakes at a time, spread over ramp)."""
        cfg = self.config
        gate = asyncio.Semaphore(cfg.concurrency)
        start = time.monotonic()

        async def open_one(index: int) -> None:
            if cfg.ramp_s:
                await asyncio.sleep(max(0.0, start + index * cfg.ramp_s / cfg.n - time.monotonic()))
            client = _Client(index)
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
            conn.on_lost = self._on_lost
            if conn.closed:  # closed while the handshake's last bytes were handled
                self._on_lost(conn)

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
                            stats.record_error(f"v1 error {v1_error_code(text)}")
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

    def _on_lost(self, conn: BenchConnection) -> None:
        """Count a connection that ended; one the server closed mid-run is an error."""
        self.stats.open -= 1
        if not self._closing:
            self.stats.record_error(conn.close_kind())

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
            return self.clients[: max(1, self.config.senders)]
        return list(self.clients)

    async def _load(self, result: BenchResult) -> None:
        cfg = self.config
        senders = self._senders()
        start_ns = time.monotonic_ns()
        result.load_started = time.time()
        if not senders:
            await asyncio.sleep(cfg.duration_s)  # connect scenario: hold
            result.load_s = cfg.duration_s
            return
        deadline_ns = start_ns + int(cfg.duration_s * 1e9)
        bound = cfg.duration_s + cfg.reply_timeout_s + cfg.connect_timeout_s
        try:
            async with asyncio.timeout(bound):
                async with asyncio.TaskGroup() as sending:
                    for slot, client in enumerate(senders):
                        offset = slot / len(senders) / cfg.rate if cfg.rate else 0.0
                        sending.create_task(
                            self._send(client, start_ns + int(offset * 1e9), deadline_ns)
                        )
        except TimeoutError:
            self.stats.record_error("send phase timeout")
        send_end = time.monotonic_ns()
        result.send_s = (send_end - start_ns) / 1e9
        if cfg.rate:
            result.unsent = sum(
                self._scheduled(s, i, start_ns) - s.sent for i, s in enumerate(senders)
            )
            if result.unsent:
                self.stats.record_error("unsent (behind schedule)")
                self.stats.errors["unsent (behind schedule)"] += result.unsent - 1
        self.phase = "drain"
        await self._drain()
        end = max(self._last_rx_ns, send_end)
        result.load_s = max(1e-9, (end - start_ns) / 1e9)

    def _scheduled(self, client: _Client, slot: int, start_ns: int) -> int:
        """Return how many messages the open-loop schedule gave ``client`` within duration."""
        cfg = self.config
        offset = slot / len(self._senders()) / cfg.rate
        due = math.ceil((cfg.duration_s - offset) * cfg.rate)
        return max(0, min(due, cfg.messages) if cfg.messages else due)

    async def _send(self, client: _Client, first_ns: int, deadline_ns: int) -> None:
        """Send stamped messages from ``client`` until its count or the deadline is reached."""
        cfg, stats = self.config, self.stats
        interval_ns = int(1e9 / cfg.rate) if cfg.rate else 0
        conn, frame_of = client.conn, self._dialect
        if conn is None:
            return
        seq = 0
        while not cfg.messages or seq < cfg.messages:
            now = time.monotonic_ns()
            if interval_ns:
                intended = first_ns + seq * interval_ns
                if intended >= deadline_ns:
                    break
                if intended > now:
                    await asyncio.sleep((intended - now) / 1e9)
            else:
                intended = now
                if intended >= deadline_ns:
                    break
            frame = client_frame(
                frame_of, Stamp(self.run_id, client.index, seq, intended).encode(cfg.size)
            )
            client.waiting = seq
            client.reply.clear()
            if not await conn.send(frame):
                return  # on_lost counts the close
            stats.record_sent(len(frame))
            seq += 1
            client.sent = seq
            if not interval_ns:
                try:
                    async with asyncio.timeout(cfg.reply_timeout_s):
                        await client.reply.wait()
                except TimeoutError:
                    stats.record_error("reply timeout")
                    if conn.closed:
                        return

    def _expected(self, client: _Client, total_sent: int) -> int:
        if self.config.scenario is Scenario.ECHO:
            return client.sent
        return total_sent

    async def _drain(self) -> None:
        """Wait until every open connection has every message it should get, or the timeout."""
        total = self.stats.sent
        try:
            async with asyncio.timeout(self.config.drain_timeout_s):
                # Polled: completion depends on every client, and a 50 ms poll costs less than
                # checking all of them on each delivery.
                while any(  # noqa: ASYNC110
                    c.got < self._expected(c, total)
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

    def _finish(self, result: BenchResult) -> None:
        """Count losses against what every sender sent, and judge the generator."""
        stats = self.stats
        sent = {c.index: c.sent for c in self._senders()}
        if self.config.scenario is Scenario.ECHO:
            stats.expected = sum(sent.values())
            stats.lost = sum(c.check.missing({c.index: c.sent}) for c in self.clients)
        else:
            stats.expected = len(self.clients) * sum(sent.values())
            stats.lost = sum(c.check.missing(sent) for c in self.clients)
        result.limited_by_generator = generator_limited(result.cpu, stats.loop_lag.summary())


async def run_bench(
    config: BenchConfig, on_progress: Callable[[Progress], None] | None = None
) -> BenchResult:
    """Run one load test described by ``config``; see ``Runner.run`` for what it raises."""
    return await Runner(config, on_progress).run()
