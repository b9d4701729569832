"""The Redis URLs beyond redis-py's own: Sentinel (``redis+sentinel://``) and Cluster
(``redis+cluster://``), parsed into what their redis-py clients take.

``redis+sentinel://[[USER]:PASSWORD@]HOST1:PORT1,HOST2:PORT2,.../MASTER[/DB]`` names the
sentinels to ask (port 26379 when left out), the master's name as configured in them
(``sentinel monitor MASTER ...``) and the database (0). The password is the data nodes'
(``requirepass``/``masterauth``); a sentinel that wants one of its own takes
``?sentinel_password=...``. Clients are redis-py's public ``redis.asyncio.sentinel``: each new
connection asks a sentinel where the master is now, and a connection to a master that was
demoted fails (``ConnectionError``) instead of writing to a replica.

``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]`` names some nodes of a Redis
Cluster (port 6379 when left out); the client (redis-py's ``RedisCluster``) learns the rest
and routes each command to the node that serves its key's slot.

Imports the standard library and the core only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from wschat.errors import ConfigError

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
CLUSTER_SCHEME = "redis+cluster://"
CLUSTER_PORT = 6379


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


def is_cluster(url: str) -> bool:
    """Return whether ``url`` names a Redis Cluster."""
    return url.startswith(CLUSTER_SCHEME)


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """The parts of a ``redis+cluster://`` URL."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` URL; raise ``ConfigError`` (without the password) if it
    is not one."""
    form = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]"
    parts = urlsplit(url)
    username, password, sentinels = _authority(parts.netloc, SENTINEL_PORT, form)
    path = [p for p in parts.path.split("/") if p]
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"the sentinel URL needs the master's name: use {form}")
    query = parse_qs(parts.query)
    return SentinelUrl(
        sentinels,
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        username,
        password,
        query.get("sentinel_password", [None])[0],
    )


def parse_cluster_url(url: str) -> ClusterUrl:
    """Parse a ``redis+cluster://`` URL; raise ``ConfigError`` (without the password) if it
    is not one."""
    form = "redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]"
    parts = urlsplit(url)
    if parts.path.strip("/"):
        raise ConfigError(f"a Redis Cluster has only database 0: use {form}")
    username, password, nodes = _authority(parts.netloc, CLUSTER_PORT, form)
    return ClusterUrl(nodes, username, password)


def _authority(
    netloc: str, default_port: int, form: str
) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """Split ``[USER[:PASSWORD]@]HOST[:PORT],...`` into user, password and addresses."""
    userinfo, _, hostlist = netloc.rpartition("@")
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = item.strip(), str(default_port)
        if not host or not port.isdigit():
            raise ConfigError(f"bad Redis address {item!r}: use {form}")
        hosts.append((host.strip("[]"), int(port)))
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return username, password, hosts
