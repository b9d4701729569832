"""Which browser origins may open a WebSocket (RFC 6454 origins, RFC 6455 §10.2).

Browsers send ``Origin`` with every WebSocket handshake and let any page connect anywhere, so
the server must check it; CORS does not apply to WebSockets. Pure functions, standard library
only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(raw: str) -> str | None:
    """Return ``raw`` as ``scheme://host[:port]`` (lowercase, default port dropped), or None.

    None means the value is not a usable origin: ``null`` (sandboxed frames, ``file:``
    pages), anything with a path, user info, query or fragment, or an unknown scheme.
    """
    value = raw.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origins(host_header: str) -> set[str]:
    """Return the origins of a page served by this server when reached as ``host_header``."""
    found = set()
    for scheme in ("http", "https"):
        origin = normalise_origin(f"{scheme}://{host_header}")
        if origin is not None:
            found.add(origin)
    return found


def origin_allowed(origin: str | None, host_header: str | None, allowed: frozenset[str]) -> bool:
    """Return whether a handshake with this ``Origin`` header may proceed.

    No ``Origin`` at all is a non-browser client: allowed (it could forge any header anyway).
    Otherwise the origin must be the server's own (the ``Host`` it was reached by), or listed
    in ``allowed`` (normalised with ``normalise_origin``; ``*`` allows every origin). Matching is
    exact, so ``https://host.evil.net`` never passes for ``https://host``.
    """
    if origin is None:
        return True
    if "*" in allowed:
        return True
    normal = normalise_origin(origin)
    if normal is None:
        return False
    if normal in allowed:
        return True
    return host_header is not None and normal in own_origins(host_header)
