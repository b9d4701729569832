"""Choose the engine behind a chat server: SQLite + in-memory broker, or Redis for many nodes.

``--broker memory`` (the default) keeps everything in this process, with history in SQLite.
``--broker redis://HOST:PORT/DB`` puts history, names, members and fan-out in Redis, so any
number of processes behind a load balancer act as one server (issue 6);
``redis+sentinel://...`` follows a Sentinel-managed master and ``redis+cluster://...`` uses
a Redis Cluster (``wschat.broker.redisurl``).

Part of the chat layer: imports the service, the cluster, the brokers and the stores (the
Redis ones only when asked); no socket type.
"""

from __future__ import annotations

from wschat.broker import redact
from wschat.errors import ConfigError
from wschat.server.chat.service import ChatService
from wschat.server.conn.hub import Hub
from wschat.server.settings import ServerSettings

REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")


def is_redis(broker: str) -> bool:
    """Return whether ``broker`` names a Redis URL rather than ``memory``."""
    return broker.startswith(REDIS_SCHEMES)


def check_broker(broker: str) -> None:
    """Raise ``ConfigError`` unless ``broker`` is ``memory`` or a Redis URL."""
    if broker != "memory" and not is_redis(broker):
        raise ConfigError(
            f"unknown broker {redact(broker)!r}: use 'memory' or redis://HOST:PORT/DB"
        )


def build_chat(hub: Hub, settings: ServerSettings) -> ChatService:
    """Return the chat service for ``settings.broker``; nothing connects until ``start()``."""
    check_broker(settings.broker)
    if not is_redis(settings.broker):
        from wschat.broker.memory import MemoryBroker
        from wschat.store.sqlite import SqliteStore

        history = SqliteStore(settings.db, settings.history_size, settings.db_timeout_s)
        return ChatService(hub, history, MemoryBroker(), settings)
    from wschat.broker.redis import RedisBroker, connect, node_id
    from wschat.server.chat.cluster import Cluster
    from wschat.server.chat.registry import RedisRegistry
    from wschat.store.redis import RedisStore

    if settings.redis_wait and settings.broker.startswith("redis+cluster://"):
        raise ConfigError(
            "--redis-wait is not available with redis+cluster:// (see docs/scaling.md)"
        )
    client = connect(settings.broker)
    broker = RedisBroker(client, settings.broker)
    store = RedisStore(
        client,
        settings.history_size,
        broker.latency,
        settings.redis_wait,
        settings.cid_ttl_s,
        broker.gate,
    )
    broker.on_envelope = store.seen
    store.deliver_here = broker.deliver_here
    registry = RedisRegistry(client, node_id(), settings.node_ttl_s, broker.gate)
    cluster = Cluster(registry, broker, store, settings.node_ttl_s)
    return ChatService(hub, store, broker, settings, cluster)
