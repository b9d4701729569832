"""Every redis-py name past the plain client that ``wschat.broker.redis`` relies on.

The broker follows a Sentinel failover and a Redis Cluster through redis-py's public classes,
but a few of the names it reads are documented only by the source (``PubSub.connection``, a
``Sentinel``'s ``sentinels``, ``RedisCluster.initialize``). A release that renames, removes or
re-signs one of them fails here, by name, instead of in a failover test or in production.
No server is needed: the objects are built, never connected.
"""

from __future__ import annotations

import inspect

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from wschat.broker.redis import REDIS_DOWN, command


def parameters(callable_: object) -> set[str]:
    return set(inspect.signature(callable_).parameters)  # type: ignore[arg-type]


def test_the_sentinel_names_the_broker_reads() -> None:
    sentinel = Sentinel([("127.0.0.1", 1)], sentinel_kwargs={"socket_timeout": 1.0})
    assert len(sentinel.sentinels) == 1  # checked one by one in ``master_moved``/closed
    assert inspect.iscoroutinefunction(sentinel.discover_master)
    assert {"service_name"} <= parameters(sentinel.discover_master)
    assert {"service_name"} <= parameters(sentinel.master_for)
    # ``_drop_commands``: a master client's pool closes every connection, in use or not.
    master = sentinel.master_for("mymaster")
    assert inspect.iscoroutinefunction(master.connection_pool.disconnect)
    assert {"inuse_connections"} <= parameters(master.connection_pool.disconnect)


def test_a_pubsub_names_its_connection_and_a_connection_its_address() -> None:
    pubsub = aioredis.Redis().pubsub()
    assert pubsub.connection is None  # set once subscribed: ``master_moved`` compares it
    conn = aioredis.Connection(host="127.0.0.1", port=6390)
    assert (conn.host, conn.port) == ("127.0.0.1", 6390)


def test_the_pool_and_cluster_constructors_take_what_the_broker_passes() -> None:
    options = {"socket_connect_timeout", "socket_timeout", "retry", "health_check_interval"}
    assert {"startup_nodes", "username", "password", "decode_responses"} | options <= (
        parameters(RedisCluster)
    )
    assert inspect.iscoroutinefunction(RedisCluster.initialize)  # relearn slots: a fresh client
    assert ClusterNode("127.0.0.1", 7000).port == 7000
    pool = aioredis.BlockingConnectionPool.from_url(
        "redis://127.0.0.1:1/0", max_connections=2, timeout=1.0, decode_responses=True
    )
    assert isinstance(aioredis.Redis.from_pool(pool), aioredis.Redis)


def test_the_errors_that_mean_redis_is_away() -> None:
    # CLUSTERDOWN and MASTERDOWN come as ClusterDownError, caught as a ClusterError.
    assert issubclass(redis.exceptions.ClusterDownError, redis.exceptions.ClusterError)
    for error in (
        redis.exceptions.ClusterError,
        redis.exceptions.TryAgainError,
        redis.exceptions.SlotNotCoveredError,  # a RedisClusterException, not a RedisError
        redis.exceptions.RedisClusterException,  # the slot map cannot be (re)loaded
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ):
        assert error in REDIS_DOWN, error


async def test_a_client_breaking_mid_command_is_a_lost_connection() -> None:
    # Seen in Cluster failovers: redis-py's connection broke while a command set it up.
    async def broken(exc: Exception) -> None:
        raise exc

    for exc in (
        AttributeError("'NoneType' object has no attribute 'writelines'"),
        RuntimeError("unable to perform operation on <TCPTransport closed=True>"),
    ):
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            await command(broken(exc))
        assert isinstance(caught.value, REDIS_DOWN) and caught.value.__cause__ is exc
    refused = redis.exceptions.ResponseError("NOSCRIPT No matching script")
    with pytest.raises(redis.exceptions.ResponseError) as caught:
        await command(broken(refused))
    assert caught.value is refused  # Redis's own answers pass through as they are
