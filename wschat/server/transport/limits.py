"""The transport's limits, in one frozen value (docs/security.md, "Transport limits").

Standard library only: the runner builds it from ``ServerSettings``, the protocol classes read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """What one TCP connection may cost; 0 turns a limit off where that makes sense."""

    max_message_bytes: int = 64 * 1024  # one message, all its fragments together; else 1009
    max_fragments: int = 128  # frames one message may be split into; more closes 1009
    fragment_timeout_s: float = 10.0  # a fragmented message must be finished this soon; 1008
    control_rate_per_s: float = 10.0  # pings and pongs per second, burst twice that; 1008
    write_buffer_bytes: int = 64 * 1024  # unsent bytes before reading pauses and writes wait
    close_timeout_s: float = 5.0  # a closing handshake not finished this soon is aborted
    ping_interval_s: float = 20.0  # keepalive ping period; 0 sends none
    ping_timeout_s: float = 20.0  # no pong this soon after a ping closes 1011
    handshake_timeout_s: float = 10.0  # a request head must arrive whole this soon
    max_header_bytes: int = 8192  # request line (else 414) or one header line (else 431)
    max_headers: int = 128  # header lines in a request head; more gets 431
    http_timeout_s: float = 10.0  # a plain HTTP connection is closed this long after it opened
    max_http_connections: int = 512  # plain HTTP connections open at once; past it 503
