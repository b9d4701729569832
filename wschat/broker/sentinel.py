"""Redis behind Sentinel: the ``redis+sentinel://`` URL and clients that follow a failover.

``redis+sentinel://[[USER]:PASSWORD@]HOST1:PORT1,HOST2:PORT2,.../MASTER[/DB]`` names the
sentinels to ask (port 26379 when left out), the master's name as configured in them
(``sentinel monitor MASTER ...``) and the database (0). The password is the data nodes'
(``requirepass``/``masterauth``); a sentinel that wants one of its own takes
``?sentinel_password=...``. Clients are redis-py's public ``redis.asyncio.sentinel``: each new
connection asks a sentinel where the master is now, and a connection to a master that was
demoted fails (``ConnectionError``) instead of writing to a replica.

Imports redis-py and the core only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from wschat.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def data_kwargs(self) -> dict[str, Any]:
        """Return the connection arguments for the master (and its replicas)."""
        return {"db": self.db, "username": self.username, "password": self.password}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Return the connection arguments for the sentinels themselves."""
        return {"password": self.sentinel_password} if self.sentinel_password else {}


def is_sentinel(url: str) -> bool:
    """Return whether ``url`` names Redis behind Sentinel."""
    return url.startswith(SENTINEL_SCHEME)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` URL; raise ``ConfigError`` (without the password) if it
    is not one."""
    form = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]"
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), str(SENTINEL_PORT)
        if not host or not port.isdigit():
            raise ConfigError(f"bad sentinel address {item!r}: use {form}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"the sentinel URL needs the master's name: use {form}")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    query = parse_qs(parts.query)
    return SentinelUrl(
        sentinels,
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        username,
        password,
        query.get("sentinel_password", [None])[0],
    )
