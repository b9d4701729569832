"""One node among many: the chat service's link to the shared registry, heartbeats and repair.

``Cluster`` is what ``ChatService`` (``chat.service``) consults when the broker is Redis (it is
None with the in-memory broker, where the local ``Presence`` is the whole truth):

- names: a local claim is confirmed in the shared registry; a resume token presented on
  another node hands the name over (``takeover``: the old node drops it without ``left``);
- members: a mirror of each room this node has members in, kept by the other nodes'
  ``presence`` envelopes and reconciled with the registry on every heartbeat, so the users
  of a node that died leave within the registry's TTL plus one heartbeat;
- messages: room messages are delivered in id order per connection; a gap (a message lost
  while the subscriber was reconnecting, or one that is late) is repaired from the store
  after ``REPAIR_DELAY_S``, and every local room is repaired when the subscriber comes back.

While Redis is away, nothing here closes a socket: claims are accepted locally (and
registered by the next heartbeat), presence and DMs between local users carry on, and
``say`` answers ``unavailable`` (see ``ChatService.say``).

The cluster calls back into the service only through ``ClusterHost``, a protocol defined here
and satisfied by ``ChatService``: this module imports neither the service nor the fan-out,
and nothing of the connection layer or above. It imports the brokers, the store and the
registry (``chat.registry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from wschat.broker import Envelope
from wschat.broker.redis import RedisBroker
from wschat.errors import Unavailable
from wschat.rooms import Holder
from wschat.server.chat.registry import ClaimOutcome, RedisRegistry
from wschat.store import HistoryStore, Replay

log = logging.getLogger("wschat.cluster")

REPAIR_DELAY_S = 0.2  # a missing id usually arrives within this; then no store read is needed
REPAIR_ROUNDS = 5  # bounded: more gaps after this many reads wait for the next trigger
MAX_BACKGROUND_TASKS = 10_000  # fire-and-forget registry writes in flight before we drop some


class ClusterHost(Protocol):
    """What the cluster asks of this node's chat service (``ChatService`` satisfies it)."""

    def holders(self) -> list[Holder]:
        """Return the names held on this node."""
        ...

    def let_go(self, name: str) -> None:
        """Drop ``name`` here, silently: another node took it over with its resume token."""
        ...

    def fan_out_presence(self, kind: str, room: str, name: str) -> None:
        """Tell this node's members of ``room`` that ``name`` ``joined`` or ``left``."""
        ...

    def rooms(self) -> list[str]:
        """Return the rooms with a v1 member on this node (the ones that get repairs)."""
        ...

    def cursor(self, room: str) -> int | None:
        """Return the oldest id that ``room``'s live v1 members here have, or None if none."""
        ...

    def catch_up(self, room: str, replay: Replay) -> None:
        """Deliver what a repair read from the store to ``room``'s v1 members here."""
        ...


class Cluster:
    """The node's view of the shared registry; one per ``ChatService``."""

    def __init__(
        self, registry: RedisRegistry, broker: RedisBroker, store: HistoryStore, ttl_s: float
    ) -> None:
        self.registry = registry
        self.broker = broker
        self.store = store
        self.node = registry.node
        self.heartbeat_s = max(0.05, ttl_s / 3)
        self.repairs = 0
        self.mirror: dict[str, set[str]] = {}  # room -> names on other nodes and this one
        self._touched: dict[tuple[str, str], float] = {}  # (room, name) -> loop time of event
        self._repairing: dict[str, bool] = {}  # room -> another round requested
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        # Presence and takeover envelopes leave in the order they happened, one at a time.
        self._outgoing: asyncio.Queue[Envelope] = asyncio.Queue(MAX_BACKGROUND_TASKS)
        self._host: ClusterHost | None = None
        self._wake = asyncio.Event()

    @property
    def host(self) -> ClusterHost:
        if self._host is None:
            raise RuntimeError("cluster used before start()")
        return self._host

    async def start(self, host: ClusterHost) -> None:
        """Start the heartbeat and the publisher; ``host`` is this node's chat service."""
        self._host = host
        self.broker.on_resubscribed = self._resubscribed
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.create_task(self._beat())
        self._publisher = loop.create_task(self._publish())

    async def close(self) -> None:
        tasks = [t for t in (self._heartbeat, self._publisher, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Free this node's names now rather than after the TTL (best effort, bounded).
        with contextlib.suppress(Unavailable, TimeoutError):
            async with asyncio.timeout(2):
                for holder in self.host.holders():
                    await self.registry.release(holder.name)

    # --- names ------------------------------------------------------------------------------

    async def claim(self, holder: Holder, offered_token: str | None) -> ClaimOutcome:
        """Confirm a local claim in the registry; ``moved`` also tells the old node to let go."""
        try:
            outcome = await self.registry.claim(holder, offered_token)
        except Unavailable as exc:
            log.warning("accepting %r locally: %s", holder.name, exc)
            return ClaimOutcome("new")
        if outcome.result == "moved":
            self._send(
                {
                    "kind": "takeover",
                    "name": holder.name,
                    "node": self.node,
                    "old": outcome.old_node,
                }
            )
        return outcome

    def release(self, name: str) -> None:
        """Free ``name`` in the registry (in the background)."""
        self._spawn(self.registry.release(name))

    def update(self, holder: Holder) -> None:
        """Record ``holder``'s new room in the registry (in the background)."""
        self._spawn(self.registry.refresh([holder]))

    async def holds(self, name: str) -> bool:
        """Return whether any node holds ``name``; raise ``Unavailable`` if Redis is away."""
        return await self.registry.holds(name)

    # --- presence ---------------------------------------------------------------------------

    def announce(self, kind: str, room: str, name: str) -> None:
        """Note a local ``joined``/``left`` and tell the other nodes."""
        self._note(kind, room, name)
        self._send(
            {"kind": "presence", "event": kind, "room": room, "name": name, "node": self.node}
        )

    def members(self, room: str, local: list[str]) -> list[str]:
        """Return ``room``'s members on every node, as far as this node knows."""
        return sorted(self.mirror.get(room, set()).union(local))

    async def refresh_room(self, room: str) -> None:
        """Load ``room``'s members from the registry into the mirror (bounded, may fail).

        Only for a room not mirrored yet: once it is, the other nodes' presence envelopes and
        every heartbeat keep it. Reading the whole member set at every connect made filling a
        room quadratic (issue 19: 15,000 members per room over 4 workers, 0.1 s per connect).
        """
        if room in self.mirror:
            return
        try:
            fetched = await self.registry.members([room])
        except Unavailable:
            self.mirror.setdefault(room, set())
            return
        self.mirror[room] = fetched[room]

    def accept(self, envelope: Envelope) -> bool:
        """Filter an envelope from the broker: return whether to fan it out locally."""
        kind = envelope.get("kind")
        if kind == "presence":
            if envelope.get("node") == self.node:
                return False  # delivered locally when it happened
            room, name = envelope["room"], envelope["name"]
            if room not in self.mirror:
                return False  # nobody here is in that room
            return self._note(envelope["event"], room, name)
        if kind == "takeover":
            if envelope.get("old") == self.node:
                self.host.let_go(envelope["name"])
            return False
        return True

    def _note(self, kind: str, room: str, name: str) -> bool:
        names = self.mirror.get(room)
        self._touched[(room, name)] = asyncio.get_running_loop().time()
        if names is None:
            return True
        if kind == "joined":
            if name in names:
                return False
            names.add(name)
        else:
            if name not in names:
                return False
            names.discard(name)
        return True

    # --- message order and repair -----------------------------------------------------------

    def repair(self, room: str, delay_s: float = REPAIR_DELAY_S) -> None:
        """Fetch what ``room``'s local connections are missing from the store, soon."""
        if room in self._repairing:
            self._repairing[room] = True
            return
        self._repairing[room] = False
        self._spawn(self._repair(room, delay_s), limit=False)

    async def _repair(self, room: str, delay_s: float) -> None:
        host = self.host
        try:
            await asyncio.sleep(delay_s)
            for _ in range(REPAIR_ROUNDS):
                self._repairing[room] = False
                since = host.cursor(room)
                if since is None:
                    return
                replay = await self.store.replay(room, since, 0)
                self.repairs += 1
                host.catch_up(room, replay)
                if not self._repairing[room]:
                    return
        except Unavailable as exc:
            log.info("repair of %r postponed: %s", room, exc)  # resubscribing repairs again
        finally:
            self._repairing.pop(room, None)

    def _resubscribed(self) -> None:
        for room in self.host.rooms():
            self.repair(room, delay_s=0)
        self._wake.set()

    # --- heartbeat --------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            try:
                await self._beat_once()
            except Unavailable as exc:
                log.debug("heartbeat skipped: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await self._wake.wait()

    async def _beat_once(self) -> None:
        host = self.host
        holders = host.holders()
        lost = await self.registry.refresh(holders)
        if lost:
            log.warning("names now held by another node: %s", ", ".join(sorted(lost)))
        rooms = host.rooms()
        for room in list(self.mirror):
            if room not in rooms:
                del self.mirror[room]
        started = asyncio.get_running_loop().time()
        fetched = await self.registry.members(rooms)
        local = {h.name for h in host.holders()}
        for room, names in fetched.items():
            known = self.mirror.setdefault(room, set())
            for name in sorted(known - names):
                if name not in local and self._touched.get((room, name), 0.0) < started:
                    known.discard(name)
                    host.fan_out_presence("left", room, name)
            for name in sorted(names - known):
                if name not in local and self._touched.get((room, name), 0.0) < started:
                    known.add(name)
                    host.fan_out_presence("joined", room, name)
        horizon = started - 10 * self.heartbeat_s
        self._touched = {k: t for k, t in self._touched.items() if t >= horizon}

    # --- background writes ------------------------------------------------------------------

    def _send(self, envelope: Envelope) -> None:
        try:
            self._outgoing.put_nowait(envelope)
        except asyncio.QueueFull:
            pass  # Redis is far behind: the heartbeats reconcile every node's members

    async def _publish(self) -> None:
        while True:
            envelope = await self._outgoing.get()
            try:
                await self.broker.publish(envelope)
            except Unavailable as exc:
                log.debug("presence not published: %s", exc)  # heartbeats reconcile it

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, limit: bool = True) -> None:
        if limit and len(self._tasks) >= MAX_BACKGROUND_TASKS:
            coro.close()  # Redis is far behind: the next heartbeat re-syncs the registry
            return
        task = asyncio.get_running_loop().create_task(self._quietly(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except Unavailable as exc:
            log.debug("background write skipped: %s", exc)
