"""The Redis broker: envelopes travel as JSON over one Redis pub/sub channel to every node.

Redis pub/sub is at-most-once: a message published while a node's subscriber is reconnecting
is lost *for that node*. The broker therefore never promises delivery; it promises to say
when it came back (``on_resubscribed``), so the chat service can repair gaps from the stored
history (room messages are stored and published atomically by ``wschat.store.redis``). The
subscriber reconnects forever with capped exponential backoff; ``state()`` reports ``ok``,
``connecting`` (never connected yet, or retrying) or ``down`` (the last attempt failed).

Imports redis-py (asyncio) and the core; nothing from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wschat.broker import Deliver, Envelope
from wschat.errors import Unavailable

log = logging.getLogger("wschat.broker")

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
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
# The errors that mean "Redis is not reachable right now", as opposed to a bug.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def connect(url: str, retries: int = 1) -> aioredis.Redis:
    """Return an asyncio client for ``url`` whose commands fail fast while Redis is away.

    One retry on a fresh connection covers a pooled socket that died with a Redis restart;
    beyond that the caller gets the error (see ``REDIS_DOWN``) and decides.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=0,
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """PING ``url`` once, synchronously; raise ``Unavailable`` naming the URL if it fails."""
    import redis as syncredis

    try:
        client = syncredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            client.ping()
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach the Redis broker at {url}: {exc}") from None


def node_id() -> str:
    """Return a name for this process that no other node shares (host, pid, random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisBroker:
    """A ``Broker`` over Redis pub/sub; one subscriber connection per process."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, url: str) -> None:
        self.client = client
        self.url = url
        self.on_resubscribed: Callable[[], None] | None = None
        self.resubscriptions = 0
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
            await self.client.publish(EVENTS_CHANNEL, json.dumps(envelope))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis broker unavailable: {exc}") from None

    def state(self) -> str:
        return self._state

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._deliver = None
        await self._subscriber.aclose()
        await self.client.aclose()

    async def _listen(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(EVENTS_CHANNEL)
                await self._confirmed(pubsub)
                self._state = "ok"
                if self._subscribed.is_set():
                    self.resubscriptions += 1
                    log.warning("resubscribed to %s", self.url)
                    if self.on_resubscribed is not None:
                        self.on_resubscribed()
                self._subscribed.set()
                delay = BACKOFF_MIN_S
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except (*REDIS_DOWN, TimeoutError) as exc:
                if self._state == "ok":
                    log.warning("lost the Redis subscription (%s); reconnecting", exc)
                self._state = "down"
            finally:
                with contextlib.suppress(*REDIS_DOWN, redis.exceptions.RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX_S, delay * 2)

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
            self._deliver(envelope)
        except Exception:
            # One bad envelope must not stop the subscriber: log it with its traceback.
            log.exception("error delivering an envelope")
