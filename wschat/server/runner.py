"""Run the app under uvicorn: bind, announce the real address, shut down in bounded time.

uvicorn's own shutdown closes WebSockets with 1012 and then waits without limit for open
sockets. ``serve`` first closes every chat socket itself with 1001 (going away) after its
queued frames, in jittered batches over ``drain_s`` (see ``drain.py``), aborts whoever has not
gone after ``shutdown_timeout_s``, and gives uvicorn a graceful-shutdown timeout too, so
SIGTERM or Ctrl-C always ends the process promptly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn

from wschat.errors import ConfigError
from wschat.protocol import CloseCode
from wschat.rlimit import available_memory, raise_fd_limit
from wschat.server.app import create_app
from wschat.server.chat.engine import check_broker, is_redis
from wschat.server.conn.hub import Hub
from wschat.server.logs import log_config
from wschat.server.settings import ServerSettings
from wschat.server.transport.accept import AcceptGate, capacity
from wschat.server.transport.http import HttpFront, http_protocol
from wschat.server.transport.limits import TransportLimits
from wschat.server.transport.ws import websocket_protocol

log = logging.getLogger("wschat.server")
BYTES_PER_CONNECTION = 16 * 1024  # server RSS per idle connection, with margin (performance.md)
SWITCH_INTERVAL_S = 0.001  # how long another thread may hold the GIL while the loop waits


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        hub: Hub,
        settings: ServerSettings,
        on_ready: Callable[[], None],
        http: type[HttpFront],
    ) -> None:
        super().__init__(config)
        self._hub = hub
        self._settings = settings
        self._on_ready = on_ready
        self._http = http
        self._gate: AcceptGate | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            self._gate_accept(sockets[0])
        if self.started:
            # Everything loaded so far (frameworks, the app) lives as long as the process:
            # keep it out of the collector's scans. Without this a burst of allocations (a
            # 20k-message replay) triggered full collections of 40-60 ms over the whole
            # heap, stalling every socket (issue 15); now they scan what serving created.
            gc.collect()
            gc.freeze()
            # The history store's threads (wschat.store.sqlite) hold the GIL while they turn
            # rows into messages; the loop would wait up to the default 5 ms for it at every
            # wake-up. 1 ms keeps that wait below a loopback round trip's noise.
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._on_ready()

    def _gate_accept(self, sock: socket.socket) -> None:
        """Stop accepting at this process's descriptor capacity (``transport/accept.py``)."""
        cap = capacity()
        log.info(cap.describe(), extra={"event": "capacity", "connections": cap.connections})
        limit = self._settings.max_connections
        if cap.connections and (limit == 0 or limit > cap.connections):
            shown = "no limit" if limit == 0 else str(limit)
            log.warning(
                "descriptors stop this process at %d open connections, before "
                "--max-connections (%s): raise 'ulimit -n' or run --workers",
                cap.connections,
                shown,
                extra={"event": "capacity_below_max", "connections": cap.connections},
            )
        memory = available_memory()
        wanted = (cap.connections or limit) * BYTES_PER_CONNECTION
        if memory is not None and wanted > memory:
            log.warning(
                "memory: %d connections need about %d MiB, %d MiB are available",
                cap.connections or limit,
                wanted // 2**20,
                memory // 2**20,
                extra={"event": "capacity_memory"},
            )
        if not cap.connections:
            return
        config, loop = self.config, asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return self._http(
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        async def listen(listening: socket.socket) -> asyncio.Server:
            return await loop.create_server(protocol, sock=listening, backlog=config.backlog)

        self._gate = AcceptGate(
            cap.connections, self.server_state.connections, self.servers, sock.dup(), listen
        )
        self._http.gate = self._gate

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._gate is not None:
            self._gate.close()
        for server in getattr(self, "servers", []):
            server.close()  # no new connections while the old ones drain
        settings = self._settings
        await self._hub.close_all(
            CloseCode.GOING_AWAY,
            settings.shutdown_timeout_s,
            drain_s=settings.drain_s,
            batch_size=settings.drain_batch,
        )
        await super().shutdown(sockets)


def display_url(host: str, port: int) -> str:
    """Return the http:// address a person or script uses to reach ``host``:``port``."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free one (read it back from the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def preflight(settings: ServerSettings, workers: int = 1) -> None:
    """Check the broker setting, and that a Redis broker answers; raise ``WschatError``.

    A bad value (an unknown broker, ``workers`` > 1 without Redis) raises ``ConfigError``.
    """
    check_broker(settings.broker)
    if workers > 1 and not is_redis(settings.broker):
        raise ConfigError(
            "--workers needs --broker redis://...: with the in-memory broker each worker "
            "would be a separate chat"
        )
    if is_redis(settings.broker):
        from wschat.broker.redis import check_reachable

        check_reachable(settings.broker)


def serve(settings: ServerSettings, announce: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; call ``announce(url)`` once the server accepts connections.

    Raises ``OSError`` when the address cannot be bound, ``WschatError`` when the broker
    cannot be used (a Redis that does not answer is an error at start, not a wait).
    """
    preflight(settings)
    sock = bind(settings.host, settings.port)
    url = display_url(settings.host, sock.getsockname()[1])

    def on_ready() -> None:
        (announce or _print_url)(url)

    run(settings, sock, on_ready)


def run(
    settings: ServerSettings,
    sock: socket.socket,
    on_ready: Callable[[], None],
    pool_dir: str | None = None,
) -> None:
    """Serve on the bound ``sock`` until SIGINT/SIGTERM; call ``on_ready()`` once accepting.

    ``pool_dir``: this process is one of ``--workers N`` (see ``pool``).

    A SIGTERM is a request to stop: once uvicorn has shut down it hands the signal back to
    the handler it found, which here just returns, so ``wschat serve`` exits 0, not 143.
    """
    signal.signal(signal.SIGTERM, _stopped)
    # One descriptor per socket: room for every allowed connection plus the server's own.
    raise_fd_limit((settings.max_connections or 65_536) + 1024)
    app = create_app(settings, pool_dir)
    ws = websocket_protocol(transport_limits(settings))
    http = http_protocol(ws.limits, ws)
    config = uvicorn.Config(
        app,
        http=http,
        ws=ws,
        interface="asgi3",
        lifespan="on",
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format),
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
        server_header=False,
    )
    if not is_redis(settings.broker):  # logged here: uvicorn's Config set up the logging
        log.info(
            "history: %s",
            describe_db(settings.db),
            extra={"event": "history", "db": db_location(settings.db)},
        )
    _Server(config, app.state.hub, settings, on_ready, http).run(sockets=[sock])


def db_location(db: str) -> str:
    """Return where the SQLite history lives: ``:memory:``, or the file's absolute path."""
    return db if db == ":memory:" else os.path.abspath(db)


def describe_db(db: str) -> str:
    """Return the startup line's account of the SQLite history file ``db``."""
    if db == ":memory:":
        return "in memory only (--db :memory:), lost when the server stops"
    return f"SQLite file {db_location(db)}"


def transport_limits(settings: ServerSettings) -> TransportLimits:
    """Return the transport's limits for ``settings`` (docs/security.md)."""
    return TransportLimits(
        max_message_bytes=settings.max_message_bytes,
        max_fragments=settings.max_fragments,
        fragment_timeout_s=settings.fragment_timeout_s,
        control_rate_per_s=settings.control_rate_per_s,
        write_buffer_bytes=settings.write_buffer_bytes,
        close_timeout_s=settings.close_timeout_s,
        ping_interval_s=settings.ping_interval_s,
        ping_timeout_s=settings.ping_timeout_s,
        handshake_timeout_s=settings.handshake_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        http_timeout_s=settings.http_timeout_s,
        max_http_connections=settings.max_http_connections,
    )


def _stopped(signum: int, frame: object) -> None:
    """Take a SIGTERM that uvicorn re-raises after its graceful shutdown: nothing to do."""


def _print_url(url: str) -> None:
    print(f"wschat listening on {url}", flush=True)
    sys.stdout.flush()
