"""The Redis broker: envelopes travel as JSON over one Redis pub/sub channel to every node.

Redis pub/sub is at-most-once: a message published while a node's subscriber is reconnecting
is lost *for that node*. The broker therefore never promises delivery; it promises to say
when it came back (``on_resubscribed``), so the chat service can repair gaps from the stored
history (room messages are stored and published atomically by ``wschat.store.redis``). The
subscriber reconnects forever with capped exponential backoff; ``state()`` reports ``ok``,
``connecting`` (never connected yet, or retrying) or ``down`` (the last attempt failed).

Imports redis-py (asyncio) and the core; nothing from the server. Past the plain client it
reads a few redis-py names documented only by its source (``PubSub.connection``,
``Sentinel.sentinels``, ``RedisCluster.initialize``): tests/broker/test_redis_contract.py
lists each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wschat.broker import Deliver, Envelope, redact
from wschat.broker.redisurl import (
    is_cluster,
    is_sentinel,
    parse_cluster_url,
    parse_sentinel_url,
)
from wschat.errors import Unavailable

log = logging.getLogger("wschat.broker")
T = TypeVar("T")

# What ``connect`` returns: one Redis (perhaps found through Sentinel), or a Redis Cluster.
Client = aioredis.Redis | RedisCluster

KEY_PREFIX = "wschat:"
EVENTS_CHANNEL = KEY_PREFIX + "events"
CONNECT_TIMEOUT_S = 2.0  # a refused or unroutable Redis fails a command within this
COMMAND_TIMEOUT_S = 3.0  # a hung Redis fails a command within this
# Redis connections one client opens at most; further commands wait up to POOL_WAIT_S for one.
# redis-py's default pool fails the 101st concurrent command ("Too many connections"): a burst
# of 200 handshakes per worker failed a third of them. 32 also bounds the descriptors the
# broker takes from the connections (transport/accept.py's reserve). The wait is as long as a
# handshake may take (--handshake-timeout's default): 60,000 connections opened 800 at a time
# over 4 workers on 2 cores waited more than 3 s for a connection (33,000 closed 1013).
POOL_CONNECTIONS = 32
POOL_WAIT_S = 10.0
# Commands of one node admitted to its pool at once (``Gate``): fewer than the pool holds, so
# that the few commands that do not pass the gate (health checks, the pool's own) find one.
GATE_SLOTS = POOL_CONNECTIONS - 4
BACKOFF_MIN_S = 0.05
MASTER_CHECK_S = 1.0  # Sentinel: how often the subscriber checks it is on the current master
BACKOFF_MAX_S = 2.0
SLOW_AFTER_S = 1.0  # a command in flight this long makes /healthz say "degraded"
SLOW_HOLD_S = 2.0  # and so does a command that timed out within this
# The errors that mean "Redis is not reachable right now", as opposed to a bug. On a Redis
# Cluster that includes CLUSTERDOWN (every shard refuses commands while a dead master's
# replica is not promoted yet: without it here, a say then failed with a traceback and got
# no answer) and redis-py's "gave up following redirections" and "no node for the slot".
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    redis.exceptions.ClusterError,  # includes ClusterDownError (CLUSTERDOWN, MASTERDOWN)
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    # redis-py's own cluster errors, which are no RedisError: reloading the slot map when no
    # startup node answers, or when the map is not whole (a master failed, not replaced yet).
    redis.exceptions.RedisClusterException,
)


async def command(call: Awaitable[T]) -> T:
    """Await one redis-py command; an error that is not Redis's is a lost connection.

    During a Cluster failover redis-py closes every connection of a client when one fails,
    and a command setting up its connection meanwhile broke with uvloop's RuntimeError
    ("unable to perform operation on <TCPTransport closed=True>") or an AttributeError (its
    writer gone): each ended a say with a traceback and 1011 (issue 14). Nothing of ours runs
    inside ``call``, so such an error is redis-py's connection breaking, and is raised as
    the ``ConnectionError`` it stands for (in ``REDIS_DOWN``).
    """
    try:
        return await call
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
        raise
    except Exception as exc:
        raise redis.exceptions.ConnectionError(f"redis connection broke: {exc!r}") from exc


def room_key(room: str, what: str) -> str:
    """Return the key of ``room``'s ``what``: ``wschat:{ROOM}:what``.

    The braces are a Redis Cluster hash tag: every key of a room hashes to the same slot,
    so one script may use them all. Braces and ``%`` in the room name are %-escaped, so the
    tag is exactly the room and two rooms never share keys.
    """
    tag = room.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{KEY_PREFIX}{{{tag}}}:{what}"


class Latency:
    """Whether Redis is slow now: commands in flight for long, or one that timed out lately.

    Shared by the store (which times its commands with ``timing``) and the broker (whose
    ``state()`` is then ``degraded``).
    """

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self._slow_until = 0.0
        self._next = 0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Time one command; a timeout or a lost connection marks Redis slow for a while."""
        key = self._next = self._next + 1
        self._started[key] = time.monotonic()
        try:
            yield
        except REDIS_DOWN:
            self._slow_until = time.monotonic() + SLOW_HOLD_S
            raise
        finally:
            del self._started[key]

    def slow(self) -> bool:
        """Return whether a command has been in flight for ``SLOW_AFTER_S`` or timed out
        within ``SLOW_HOLD_S``."""
        now = time.monotonic()
        if now < self._slow_until:
            return True
        return any(now - t > SLOW_AFTER_S for t in self._started.values())


class Gate:
    """Admits a node's Redis commands to its client's connection pool first come, first
    served, ``GATE_SLOTS`` at a time; a command that waits ``POOL_WAIT_S`` raises
    ``Unavailable``. The store, the broker and the registry share one (``RedisBroker.gate``).

    redis-py's blocking pool is not fair: a connection given back goes to whichever task asks
    next, and a waiter it woke finds it taken and waits again, unwoken. With more commands in
    flight than connections and a busy event loop, some wait until they time out while the
    others get through in milliseconds (measured: 50 tasks on 32 connections, a loop busy
    2 ms at a time: p50 9 ms, max 8 s; behind an ``asyncio.Semaphore``, which wakes its
    waiters in order: max 80 ms). At 60,000 connections over 4 workers, 5,766 claims of a
    name timed out that way ("No connection available"), each a connection closed 1013
    (issue 19).
    """

    def __init__(self, slots: int = GATE_SLOTS, wait_s: float = POOL_WAIT_S) -> None:
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(slots)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this command's turn (at most ``wait_s``), then run it in the block."""
        try:
            async with asyncio.timeout(self.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable(f"redis busy: no connection within {self.wait_s:g} s") from None
        try:
            yield
        finally:
            self._slots.release()

    async def run(self, call: Awaitable[T], latency: Latency | None = None) -> T:
        """Await one command in its turn, timed by ``latency`` if given, through ``command``
        (the one way this node sends a single command to its client)."""
        try:
            async with self.turn():
                if latency is None:
                    return await command(call)
                with latency.timing():
                    return await command(call)
        except Unavailable:
            if inspect.iscoroutine(call):
                call.close()  # never sent: no turn within the wait
            raise


def connect(url: str, retries: int = 1) -> Client:
    """Return an asyncio client for ``url`` whose commands fail fast while Redis is away.

    One retry on a fresh connection covers a pooled socket that died with a Redis restart;
    beyond that the caller gets the error (see ``REDIS_DOWN``) and decides. A
    ``redis+sentinel://`` URL (``wschat.broker.redisurl``) gives a client of the current
    master, which follows a failover; a ``redis+cluster://`` one a Redis Cluster client.
    Close it with ``close_client``.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": COMMAND_TIMEOUT_S,
        "retry": Retry(NoBackoff(), retries),
        "health_check_interval": 0,
    }
    if is_sentinel(url):
        from redis.asyncio.sentinel import Sentinel

        where = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            where.sentinels,
            sentinel_kwargs={
                "socket_connect_timeout": CONNECT_TIMEOUT_S,
                "socket_timeout": COMMAND_TIMEOUT_S,
                **where.sentinel_kwargs(),
            },
        )
        master: aioredis.Redis = sentinel.master_for(where.master, **options, **where.data_kwargs())
        _sentinels[id(master)] = (sentinel, where.master)
        return master
    if is_cluster(url):
        nodes = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes.nodes],
            username=nodes.username,
            password=nodes.password,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), retries),
            health_check_interval=0,
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_S, **options
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


# Clients made by ``connect`` for a Sentinel URL -> their ``Sentinel`` and master's name.
_sentinels: dict[int, tuple[Any, str]] = {}


async def close_client(client: Client) -> None:
    """Close a client made by ``connect``, and its connections to the sentinels if any."""
    await client.aclose()
    sentinel, _ = _sentinels.pop(id(client), (None, ""))
    for one in sentinel.sentinels if sentinel is not None else []:
        await one.aclose()


async def master_moved(client: Client, pubsub: Any) -> bool:
    """Return whether ``pubsub`` (of ``client``, made by ``connect`` for a Sentinel URL) is
    connected to another server than the master the sentinels name now.

    A subscription is no write: on a master that was demoted, or on an old master that came
    back before the sentinels made it a replica, it gets no error, just no messages.
    """
    sentinel, name = _sentinels.get(id(client), (None, ""))
    conn = pubsub.connection
    if sentinel is None or conn is None:
        return False
    host, port = await sentinel.discover_master(name)
    return (str(conn.host), int(conn.port)) != (str(host), int(port))


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """PING ``url`` once, synchronously; raise ``Unavailable`` naming the URL if it fails."""
    import redis as syncredis
    from redis.sentinel import Sentinel

    timeouts = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    sentinels: list[syncredis.Redis] = []
    try:
        client: syncredis.Redis | syncredis.RedisCluster
        if is_sentinel(url):
            where = parse_sentinel_url(url)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                where.sentinels, sentinel_kwargs={**timeouts, **where.sentinel_kwargs()}
            )
            sentinels = sentinel.sentinels
            client = sentinel.master_for(  # type: ignore[no-untyped-call]
                where.master, **timeouts, **where.data_kwargs()
            )
        elif is_cluster(url):
            from redis.cluster import ClusterNode as SyncNode

            nodes = parse_cluster_url(url)
            client = syncredis.RedisCluster(
                startup_nodes=[
                    SyncNode(host, port)  # type: ignore[no-untyped-call]
                    for host, port in nodes.nodes
                ],
                username=nodes.username,
                password=nodes.password,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
            )
        else:
            client = syncredis.Redis.from_url(url, **timeouts)
        try:
            client.ping()
        finally:
            client.close()
            for one in sentinels:
                one.close()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach the Redis broker at {redact(url)}: {exc}") from None


def node_id() -> str:
    """Return a name for this process that no other node shares (host, pid, random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisBroker:
    """A ``Broker`` over Redis pub/sub; one subscriber connection per process."""

    name = "redis"

    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url
        self.on_resubscribed: Callable[[], None] | None = None
        # Shown every envelope before delivery (the store learns the ids others stored).
        self.on_envelope: Callable[[Envelope], None] | None = None
        self.resubscriptions = 0
        self.latency = Latency()  # the store's commands report here (``state()``)
        self.gate = Gate()  # every command on ``client`` waits its turn here
        self._deliver: Deliver | None = None
        self._state = "connecting"
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # The subscriber must not reconnect behind our back (redis-py's retry would silently
        # resubscribe, and what was published meanwhile would never be repaired).
        self._subscriber = connect(url, retries=0)

    async def start(self, deliver: Deliver) -> None:
        """Start the subscriber; wait (bounded) for the first subscription so that a node
        that just started does not miss what is said right after."""
        self._deliver = deliver
        self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT_S + COMMAND_TIMEOUT_S):
                await self._subscribed.wait()

    async def publish(self, envelope: Envelope) -> None:
        """PUBLISH ``envelope``; raise ``Unavailable`` if Redis cannot take it.

        Every node, this one included, receives it through its subscriber, unless that
        subscriber is reconnecting at the time (pub/sub is at-most-once).
        """
        try:
            await self.gate.run(self.client.publish(EVENTS_CHANNEL, json.dumps(envelope)))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis broker unavailable: {exc}") from None

    def deliver_here(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to this process only, as if it had come from Redis (for a
        message stored but not published: see ``RedisStore``)."""
        if self._deliver is not None:
            self._deliver(envelope)

    def state(self) -> str:
        """``ok``, ``degraded`` (subscribed, but commands are slow or timing out),
        ``connecting`` or ``down``."""
        if self._state == "ok" and self.latency.slow():
            return "degraded"
        return self._state

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._deliver = None
        await close_client(self._subscriber)
        await close_client(self.client)

    async def _listen(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            pubsub: Any = None
            try:
                pubsub = await self._pubsub()
                await pubsub.subscribe(EVENTS_CHANNEL)
                await self._confirmed(pubsub)
                self._state = "ok"
                if self._subscribed.is_set():
                    self.resubscriptions += 1
                    log.warning("resubscribed to %s", redact(self.url))
                    if self.on_resubscribed is not None:
                        self.on_resubscribed()
                self._subscribed.set()
                delay = BACKOFF_MIN_S
                loop = asyncio.get_running_loop()
                check_at = loop.time() + MASTER_CHECK_S
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
                    if loop.time() >= check_at:
                        check_at = loop.time() + MASTER_CHECK_S
                        if await master_moved(self._subscriber, pubsub):
                            await self._drop_commands()
                            raise redis.exceptions.ConnectionError("the master moved (Sentinel)")
            except (*REDIS_DOWN, TimeoutError) as exc:
                if self._state == "ok":
                    log.warning("lost the Redis subscription (%s); reconnecting", exc)
                self._state = "down"
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
                        await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX_S, delay * 2)

    async def _drop_commands(self) -> None:
        """Close every connection of the command client (Sentinel: the master moved).

        Its pool reconnects through the sentinels when a connection is next taken, but
        keeps those it holds: during a failover it may hold some on the old master and some
        on the new one, so that a message stored on one is looked for on the other, and a
        sender waits for an echo no read finds (issue 14). Commands in flight fail, and are
        settled as after any lost connection.
        """
        if isinstance(self.client, aioredis.Redis):
            with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
                await self.client.connection_pool.disconnect()

    async def _pubsub(self) -> Any:
        """Return a new pub/sub of the subscriber client. On a Redis Cluster, (re)learn the
        cluster's nodes first: classic pub/sub reaches every node, whichever one we ask."""
        if isinstance(self._subscriber, RedisCluster):
            # A fresh client each time: RedisCluster.initialize() learns the slots only once,
            # so after a failover the old client kept dialling the dead master of the
            # channel's slot and this node never heard another message (issue 14).
            old, self._subscriber = self._subscriber, connect(self.url, retries=0)
            with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
                await close_client(old)
            await self._subscriber.initialize()
        return self._subscriber.pubsub()

    @staticmethod
    async def _confirmed(pubsub: Any) -> None:
        """Wait for Redis to confirm the subscription: SUBSCRIBE itself only sends, so a
        socket that died with the last Redis would otherwise look subscribed."""
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            while True:
                reply = await pubsub.get_message(timeout=COMMAND_TIMEOUT_S)
                if reply is not None and reply.get("type") == "subscribe":
                    return

    def _dispatch(self, data: Any) -> None:
        try:
            envelope = json.loads(data)
        except (TypeError, ValueError):
            log.warning("ignoring a malformed envelope on %s", EVENTS_CHANNEL)
            return
        if not isinstance(envelope, dict) or self._deliver is None:
            return
        try:
            if self.on_envelope is not None:
                self.on_envelope(envelope)
            self._deliver(envelope)
        except Exception:
            # One bad envelope must not stop the subscriber: log it with its traceback.
            log.exception("error delivering an envelope")
