"""Say why a server turned a WebSocket handshake away: its status line and body (stdlib only).

A WebSocket client asks for ``101 Switching Protocols``. A server that is not a WebSocket
endpoint (a plain HTTP server, a wrong path, a proxy) answers with an ordinary response
instead, often one our WebSocket library cannot even parse (``HTTP/1.0``). ``explain`` and
``explain_head`` turn that answer into one line a person can act on, for ``wschat join`` and
``wschat bench`` alike. Peer text is untrusted: only its first line, printable, bounded.
"""

from __future__ import annotations

import re

BODY_LIMIT = 200  # characters of the body shown
_STATUS_LINE = re.compile(rb"^HTTP/(\d(?:\.\d)?) (\d{3})(?: ([^\r\n]*))?")


def one_line(body: bytes | bytearray | None, limit: int = BODY_LIMIT) -> str:
    """Return the first non-empty line of an HTTP body, printable and at most ``limit`` long."""
    text = bytes(body or b"").decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:limit]


def explain(status: int, reason: str, body: bytes | bytearray | None) -> str:
    """Return ``HTTP 404 Not Found: not a WebSocket endpoint ("body")`` for a refused upgrade.

    The hint is for statuses that mean "nothing here speaks WebSocket" (404, 405, 400, 426
    and plain successes); a refusal that says why (401, 403, 429, 503) shows its body only.
    """
    head = f"HTTP {status}" + (f" {one_line(reason.encode())}" if reason else "")
    why = one_line(body)
    if status in (200, 204, 301, 302, 400, 404, 405, 426):
        head += ": not a WebSocket endpoint"
        return head + (f" ({why!r})" if why else "")
    return head + (f": {why}" if why else "")


def explain_head(raw: bytes | bytearray) -> str | None:
    """Explain a raw HTTP response (any version) as ``explain`` does; ``None`` if it is not one."""
    match = _STATUS_LINE.match(bytes(raw))
    if match is None:
        return None
    _, body = bytes(raw).partition(b"\r\n\r\n")[::2]
    return explain(int(match[2]), (match[3] or b"").decode("latin-1"), body)
