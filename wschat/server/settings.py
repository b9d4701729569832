"""The server's settings: one frozen value built by the CLI (or a test) and read everywhere.

Imports only the standard library and the protocol's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from wschat.protocol import MAX_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``wschat serve`` can be told; each field is a CLI flag and a WSCHAT_* variable."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_message_bytes: int = MAX_MESSAGE_BYTES
    outbox_size: int = 256  # frames queued for one connection before it is dropped as too slow
    outbox_bytes: int = 1024 * 1024  # bytes queued for one connection, likewise (issue 15)
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 5.0  # how long a closing peer may take to read its close frame
    shutdown_timeout_s: float = 5.0  # how long SIGTERM waits for clients before aborting them
    log_level: str = "info"
    log_format: str = "text"  # "text" or "json" (one JSON object per line)
    drain_s: float = 2.0  # SIGTERM spreads the 1001 closes over this long, in batches
    drain_batch: int = 50  # connections closed together in one drain step
    db: str = ":memory:"  # the SQLite history file; the CLI defaults to the user's data dir
    history_size: int = 10_000  # messages kept per room
    db_timeout_s: float = 2.0  # one SQLite call waits this long (queue + lock); then unavailable
    replay_count: int = 50  # messages replayed to a client that gives no ``since``
    replay_max: int = 1000  # at most this many (the newest) replayed for a ``since``; then gap
    presence_limit: int = 1000  # rooms bigger than this get no joined/left events
    rooms_listed: int = 100  # the answer to ``rooms`` lists at most this many (the busiest)
    presence_grace_s: float = 5.0  # a dropped v1 client keeps its name and place this long
    dm_keep: int = 100  # DMs kept for a name in its grace, delivered when it resumes
    # --- security and abuse limits (issue 7; docs/security.md) ---
    secret: str | None = None  # when set, every chat connection needs a token signed with it
    allow_origins: tuple[str, ...] = ()  # browser origins allowed besides the server's own
    rate_per_s: float = 20.0  # chat messages per second per connection; 0 turns limiting off
    burst: int = 40  # messages a connection may send at once before the rate applies
    max_connections: int = 10_000  # open WebSockets in total; past it HTTP 503
    max_connections_per_ip: int = 1_000  # open WebSockets per client address; past it HTTP 429
    handshake_timeout_s: float = 10.0  # to send a complete HTTP request head (upgrade or not)
    # --- transport limits (issue 13; docs/security.md) ---
    max_header_bytes: int = 8192  # request line (else 414) or one header line (else 431)
    max_headers: int = 128  # header lines in a request head; more gets 431
    http_timeout_s: float = 10.0  # a plain HTTP connection (not a WebSocket) lives this long
    max_http_connections: int = 512  # plain HTTP connections open at once; past it 503
    max_fragments: int = 128  # frames one message may be split into; more closes 1009
    fragment_timeout_s: float = 10.0  # a fragmented message must be finished this soon; 1008
    control_rate_per_s: float = 10.0  # pings and pongs per second (burst twice); past it 1008
    write_buffer_bytes: int = 64 * 1024  # unsent bytes per socket before reading pauses
    broker: str = "memory"  # or redis://HOST:PORT/DB: many processes act as one server
    node_ttl_s: float = 10.0  # Redis: a dead node's users leave everyone's presence this soon
    redis_wait: int = 0  # Redis: replicas that must have a message before it is acknowledged
    cid_ttl_s: int = 600  # Redis: a say's cid is remembered this long (a repeat is not stored)
