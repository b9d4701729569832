"""The exception tree of wschat; imports nothing but the standard library.

WschatError
 ├── ConfigError         a setting or flag has a value we cannot use
 ├── ProtocolError       a peer sent something the protocol does not allow (has a code)
 ├── ConnectFailed       a client could not reach or was refused by a server
 └── Unavailable         a shared backend (Redis) cannot be reached right now
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


class ConnectFailed(WschatError):
    """A client could not connect, or the server refused the connection."""


class Unavailable(WschatError):
    """A shared backend (the Redis broker or store) cannot be reached right now; retry later."""
