"""The contract between wschat's transport and the layers above it (``wschat.transport``).

Under wschat's own protocol class (``transport/ws.py``), every WebSocket scope carries
``scope["extensions"]["wschat.transport"] = {"transport": T}``, where ``T`` satisfies
``Transport``. The connection layer uses it to:

- write a server frame serialised once for every receiver of a broadcast straight to the
  socket (``write_frame``) while the socket's buffer has room (``can_write``), and hear when a
  full buffer drains again (``on_writable``): no writer task per socket;
- hand the socket's further messages and its end to a ``Sink`` (``detach``) and return from
  the ASGI call, so an idle socket holds no task; the sink pauses reading while it handles a
  message (``hold_reading``);
- close (``close``: the closing handshake, with the transport's own close timeout) or drop
  (``abort``) the connection without an ASGI ``send``.

Apps run under another ASGI server find no such extension and use plain ASGI messages. This
module imports only the standard library: it is the seam, not an implementation.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Protocol

TRANSPORT_EXTENSION = "wschat.transport"

# An ASGI ``websocket.receive`` event: ``{"type": "websocket.receive", "text": str}`` or
# ``{"type": "websocket.receive", "bytes": bytes}``.
AsgiEvent = MutableMapping[str, Any]


class Sink(Protocol):
    """Takes a detached socket's messages and its end (the connection layer's ``Reader``)."""

    @property
    def busy(self) -> bool:
        """Return whether a message is being handled now (reading stays paused meanwhile)."""
        ...

    def on_message(self, message: AsgiEvent) -> None:
        """Take one complete message, as a ``websocket.receive`` event."""
        ...

    def on_disconnect(self, code: int) -> None:
        """Take the end of the connection, once: the close code sent or received (1006: none)."""
        ...


class Transport(Protocol):
    """One accepted WebSocket, as the layers above see it (see the module docstring)."""

    on_writable: Callable[[], None] | None

    def can_write(self) -> bool:
        """Return whether a data frame may be written now without overfilling the buffer."""
        ...

    def write_frame(self, frame: bytes) -> None:
        """Write serialised, unfragmented, unmasked server frames; only when ``can_write()``."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake after what was written; abort if it does not finish."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        ...

    def detach(self, sink: Sink) -> None:
        """Hand further messages and the end to ``sink``; the ASGI call may then return.

        Messages that arrived before are handed over first, in order. Call after accept.
        """
        ...

    def hold_reading(self, hold: bool) -> None:
        """Pause (``hold``) or resume reading from the socket for the sink."""
        ...


def transport_of(scope: MutableMapping[str, Any]) -> Transport | None:
    """Return the scope's ``Transport``, or None under a server without wschat's protocol."""
    extension = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    if not extension:
        return None
    transport: Transport | None = extension.get("transport")
    return transport
