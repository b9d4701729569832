"""The exception tree of wschat; imports nothing but the standard library.

WschatError
 ├── ConfigError         a setting or flag has a value we cannot use
 ├── ProtocolError       a peer sent something the protocol does not allow (has a code)
 ├── AuthError           a token is missing, expired, forged or for another name
 ├── ConnectFailed       a client could not reach or was refused by a server
 │    ├── NameRejected    the server refused the name or room (4003 invalid, 4009 taken)
 │    └── AccessDenied    the server refused the handshake (HTTP 401/403) or closed 1008
 ├── ClosedByServer      the server closed a live connection with a code we cannot recover from
 ├── BenchError          a load test cannot start or run (no server, limits too low)
 ├── Unavailable         a backend (Redis, a locked SQLite file) cannot serve right now
 └── Refusal             the server turns a WebSocket handshake away with an HTTP status
                         (defined in ``wschat.server.guard``, where it is raised and caught)
"""

from __future__ import annotations


class WschatError(Exception):
    """Base class of every error wschat raises on purpose."""


class ConfigError(WschatError):
    """A setting has a value that cannot be used."""


class ProtocolError(WschatError):
    """A peer sent a frame the protocol does not allow.

    ``code`` is the machine-readable error code sent back to the peer in an
    ``error`` event; ``detail`` is the human-readable explanation.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class AuthError(WschatError):
    """A chat token cannot be accepted; ``reason`` says why (missing, expired, forged, name)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ConnectFailed(WschatError):
    """A client could not connect, or the server refused the connection."""


class NameRejected(ConnectFailed):
    """The server refused the name or room: invalid (close 4003) or taken (close 4009)."""


class AccessDenied(ConnectFailed):
    """The server refused the connection: HTTP 401/403 at the handshake, or close 1008."""


class ClosedByServer(WschatError):
    """The server closed a live connection with a code that makes reconnecting pointless.

    ``code`` is the WebSocket close code and ``reason`` the close reason the server sent.
    """

    def __init__(self, message: str, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BenchError(WschatError):
    """A load test cannot start or run: no server at the URL, or a system limit below ``-n``."""


class Unavailable(WschatError):
    """A backend (the Redis broker or store, a locked SQLite file) cannot serve now; retry later."""
