"""One node among many: the chat service's link to the shared registry, heartbeats and repair.

``Cluster`` is what ``ChatService`` (``chat.service``) consults when the broker is Redis (it is
None with the in-memory broker, where the local ``Presence`` is the whole truth):

- names: a local claim is confirmed in the shared registry; a resume token presented on
  another node hands the name over (``takeover``: the old node drops it without ``left``);
- members: a mirror of each room this node has members in, kept by the other nodes'
  ``presence`` envelopes and reconciled with the registry on every heartbeat (re-read only
  when the room's version or member count says it changed), so the users of a node that
  died leave within the registry's TTL plus one heartbeat;
- messages: room messages are delivered in id order per connection; a gap (a message lost
  while the subscriber was reconnecting, or one that is late) is repaired from the store
  after ``REPAIR_DELAY_S``, and every local room is repaired when the subscriber comes back.
  A repair whose read fails while subscribed is tried again until it succeeds, and a
  message this node stored that its members have not been shown within ``EXPECT_WITHIN_S``
  (its publish was lost) is repaired too: a sender never waits for an echo forever.

While Redis is away, nothing here closes a socket: presence and DMs between local users
carry on, and ``say`` answers ``unavailable`` (see ``ChatService.say``). A new name cannot be
confirmed then, so it is refused (``claim`` raises ``Unavailable``; the connection is closed
1013); a name this node already held may be resumed. If Redis comes back without the
registry and another node registered one of this node's names first, the heartbeat finds it
lost and this node closes its holder 4009 (``ClusterHost.lose``).

The cluster calls back into the service only through ``ClusterHost``, a protocol defined here
and satisfied by ``ChatService``: this module imports neither the service nor the fan-out,
and nothing of the connection layer or above. It imports the brokers, the store and the
registry (``chat.registry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from wschat.broker import Envelope
from wschat.broker.redis import RedisBroker
from wschat.errors import Unavailable
from wschat.rooms import Holder, Roster
from wschat.server.chat.registry import ClaimOutcome, RedisRegistry
from wschat.store import HistoryStore, Replay, StoredMessage

log = logging.getLogger("wschat.cluster")

REPAIR_DELAY_S = 0.2  # a missing id usually arrives within this; then no store read is needed
REPAIR_ROUNDS = 5  # bounded: more gaps after this many reads wait for the next trigger
# A repair whose read fails while the subscriber is up is tried again, waiting twice as long
# each time up to this: nothing else may come to trigger it (issue 14, see ``_repair``).
REPAIR_RETRY_MAX_S = 2.0
# A message this node stored must come back through the broker within this; if its room's
# members here have not been shown it by then, its publish was lost (``expect``).
EXPECT_WITHIN_S = 1.0
# ... and is looked for again every REPAIR_RETRY_MAX_S until shown, this many times at most:
# a read may go to a server that does not have it yet (a failover settling), and the
# sender waits for its echo. Past that (2 min) it is logged and left to the next message.
EXPECT_CHECKS = 60
MAX_BACKGROUND_TASKS = 10_000  # fire-and-forget registry writes in flight before we drop some
# Background registry writes running at once: a mass disconnect queues its releases instead of
# taking every pooled Redis connection (redis-py's pool holds 100) from claims and replays.
BACKGROUND_WRITERS = 16
DM_ANSWER_S = 2.0  # a DM to a name held on another node waits this long for that node's answer
# ... and is delivered there only this long after it was sent (node clocks, NTP-close): a DM
# that arrives later (a stalled node, a slow Redis) would reach its reader after its sender
# was told ``not_delivered``, both an error and a delivery.
DM_DELIVER_S = DM_ANSWER_S / 2
# The registry's room counts are read at most once per this long per node and shared by every
# ``rooms`` asked meanwhile: one script counts up to ``ROOMS_COUNTED`` rooms.
ROOMS_FRESH_S = 2.0
# Scripts a heartbeat runs at most to delete dead nodes' names (``RedisRegistry.sweep``, 500
# names each); the next heartbeat goes on. A dead node's members count for nothing meanwhile.
SWEEPS_PER_BEAT = 4


class ClusterHost(Protocol):
    """What the cluster asks of this node's chat service (``ChatService`` satisfies it)."""

    def holders(self) -> list[Holder]:
        """Return the names held on this node."""
        ...

    def let_go(self, name: str) -> None:
        """Drop ``name`` here, silently: another node took it over with its resume token."""
        ...

    def lose(self, name: str) -> None:
        """Drop ``name`` here: the registry gave it to another node. Its connections close 4009."""
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

    def catch_up(self, room: str, replay: Replay) -> bool:
        """Deliver what a repair read from the store to ``room``'s v1 members here; return
        whether the room's epoch changed under them (read again, from its base)."""
        ...

    def answer_unshown(self, conn: Any, said: StoredMessage, stored: bool) -> None:
        """Answer a say of ``conn`` (a member here) that its room's new epoch cut off: its
        echo if ``stored`` (the history still holds it), else an error naming its cid."""
        ...

    async def receive_dm(self, envelope: Envelope) -> str | None:
        """Deliver or keep a DM from another node: ``ok``, ``full`` (not kept), or None when
        its ``to`` is not held here (then nothing is answered)."""
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
        self.mirror: dict[str, Roster] = {}  # room -> names on other nodes and this one
        self._touched: dict[tuple[str, str], float] = {}  # (room, name) -> loop time of event
        self._repairing: dict[str, bool] = {}  # room -> another round requested
        # room -> [the id being checked, the newest id stored here since, checks made]
        self._expected: dict[str, list[int]] = {}
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        # Presence and takeover envelopes leave in the order they happened, one at a time.
        self._outgoing: asyncio.Queue[Envelope] = asyncio.Queue(MAX_BACKGROUND_TASKS)
        self._host: ClusterHost | None = None
        self._wake = asyncio.Event()
        self._answers: dict[str, asyncio.Future[str]] = {}  # DM request id -> its answer
        self._keeping: dict[str, set[asyncio.Task[int]]] = {}  # name -> DM writes in flight
        self._writers = asyncio.Semaphore(BACKGROUND_WRITERS)
        self._rooms_lock = asyncio.Lock()
        self._rooms_read: tuple[float, tuple[dict[str, int], int]] | None = None
        # Whether the registry has all this node's names; false at start, after the registry
        # lost this node's key, and after the broker reconnected (a failover may have lost
        # writes): the next heartbeat registers every name again.
        self._registered = False
        self._versions: dict[str, int] = {}  # room -> its version at the last members read

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
        self._closed = True  # checks of expected ids still timed do nothing
        tasks = [t for t in (self._heartbeat, self._publisher, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Free this node's names now rather than after the TTL (best effort, bounded): all at
        # once (the other nodes sweep them), then one by one.
        with contextlib.suppress(Unavailable, TimeoutError):
            async with asyncio.timeout(2):
                if self._heartbeat is not None:  # started: its key is in the registry
                    await self.registry.retire()
                for holder in self.host.holders():
                    await self.registry.release(holder.name)

    # --- names ------------------------------------------------------------------------------

    async def claim(self, holder: Holder, offered_token: str | None) -> ClaimOutcome:
        """Confirm a local claim in the registry; ``moved`` also tells the old node to let go.

        Raises ``Unavailable`` if Redis is away: a name nobody can confirm is not handed out.
        """
        outcome = await self.registry.claim(holder, offered_token)
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

    def members(self, room: str, local: Roster | None) -> list[str]:
        """Return ``room``'s members on every node (sorted), as far as this node knows;
        ``local``: its members here."""
        mirror = self.mirror.get(room)
        if mirror is None:
            return [] if local is None else local.sorted()
        if local is None or mirror.covers(local):  # the mirror has this node's names too
            return mirror.sorted()
        return sorted(mirror.union(local))

    async def rooms(self) -> tuple[dict[str, int], int]:
        """Return each room's member count on every node, and how many rooms were not
        counted (bounded, see ``RedisRegistry.rooms``; at most ``ROOMS_FRESH_S`` old); raise
        ``Unavailable`` if Redis is away."""
        loop = asyncio.get_running_loop()
        async with self._rooms_lock:  # callers meanwhile share the one read
            read = self._rooms_read
            if read is None or loop.time() - read[0] > ROOMS_FRESH_S:
                read = self._rooms_read = (loop.time(), await self.registry.rooms())
            return read[1]

    async def refresh_room(self, room: str) -> None:
        """Load ``room``'s members from the registry into the mirror (bounded, may fail).

        Only for a room not mirrored yet: once it is, the other nodes' presence envelopes and
        every heartbeat keep it. Reading the whole member set at every connect made filling a
        room quadratic (issue 19: 15,000 members per room over 4 workers, 0.1 s per connect).
        If another connect mirrored the room meanwhile, members already here are told the
        difference (``joined``/``left``), as on a heartbeat: replacing the mirror silently
        would leave their event streams behind ``who`` (issue 14).
        """
        if room in self.mirror:
            return
        started = asyncio.get_running_loop().time()
        try:
            fetched = await self.registry.members([room])
        except Unavailable:
            self.mirror.setdefault(room, Roster())
            return
        version, names = fetched[room]
        self._versions[room] = version
        known = self.mirror.get(room)
        if known is None:
            self.mirror[room] = Roster(names)  # nobody here was told anything of this room
            return
        self._reconcile(room, known, names, started)

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
        if kind == "dm" and "req" in envelope:
            if envelope.get("node") != self.node:
                self._spawn(self._receive_dm(envelope), limit=False)
            return False
        if kind == "dm-answer":
            if envelope.get("node") == self.node:
                future = self._answers.get(envelope["req"])
                if future is not None and not future.done():
                    future.set_result(envelope["answer"])
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

    # --- direct messages --------------------------------------------------------------------

    async def send_dm(self, envelope: Envelope) -> str | None:
        """Send a DM to a name held on another node and return that node's answer: ``ok``
        (delivered, or kept for its resume) or ``full``; None if no node answered within
        ``DM_ANSWER_S`` (a node that died, or one that let the name go meanwhile).

        Raises ``Unavailable`` if Redis is away (nothing was sent).
        """
        req = secrets.token_hex(8)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[req] = future
        until = time.time() + DM_DELIVER_S
        try:
            await self.broker.publish({**envelope, "req": req, "node": self.node, "until": until})
            async with asyncio.timeout(DM_ANSWER_S):
                return await future
        except TimeoutError:
            return None
        finally:
            del self._answers[req]

    async def _receive_dm(self, envelope: Envelope) -> None:
        if time.time() > envelope.get("until", math.inf):
            return  # too late: its sender was told not_delivered, or will be before an answer
        answer = await self.host.receive_dm(envelope)
        if answer is not None:
            self._send(
                {
                    "kind": "dm-answer",
                    "req": envelope["req"],
                    "node": envelope["node"],
                    "answer": answer,
                }
            )

    async def keep_dm(self, name: str, envelope: Envelope, most: int, ttl_s: float) -> int:
        """Keep a DM for ``name`` (held here, in its grace) until it resumes on any node; return
        1 kept, 0 no longer held here, -1 ``most`` already kept. Raises ``Unavailable``."""
        dm = json.dumps({k: envelope[k] for k in ("from", "to", "text", "ts")})
        task = asyncio.get_running_loop().create_task(self.registry.keep_dm(name, dm, most, ttl_s))
        writes = self._keeping.setdefault(name, set())
        writes.add(task)
        try:
            return await task
        finally:
            writes.discard(task)
            if not writes:
                self._keeping.pop(name, None)

    async def take_dms(self, name: str) -> list[Envelope]:
        """Return the DMs kept for ``name`` (once its writes here have landed) and forget them."""
        writes = self._keeping.get(name)
        if writes:
            await asyncio.wait(set(writes))
        return [{"kind": "dm", **json.loads(dm)} for dm in await self.registry.take_dms(name)]

    # --- message order and repair -----------------------------------------------------------

    def repair(self, room: str, delay_s: float = REPAIR_DELAY_S) -> None:
        """Fetch what ``room``'s local connections are missing from the store, soon."""
        if room in self._repairing:
            self._repairing[room] = True
            return
        self._repairing[room] = False
        self._spawn(self._repair(room, delay_s), limit=False)

    async def _repair(self, room: str, delay_s: float) -> None:
        """Read what ``room``'s members here miss and deliver it, in bounded rounds.

        A read that fails is tried again while the subscriber is up, with backoff: once a
        gap holds a room's messages back, nothing else may come to trigger a repair (in a
        failover, the senders of the room each waited for an echo held behind the gap, and
        the subscriber, on another server, never dropped; issue 14). While the subscriber is
        down its resubscription repairs every room, so the task ends.
        """
        host = self.host
        backoff = REPAIR_DELAY_S
        rounds = 0
        try:
            await asyncio.sleep(delay_s)
            while rounds < REPAIR_ROUNDS:
                self._repairing[room] = False
                since = host.cursor(room)
                if since is None:
                    return
                try:
                    replay = await self.store.replay(room, since, 0)
                except Exception as exc:
                    if not isinstance(exc, Unavailable):
                        log.exception("repair of %r failed", room)  # a bug: say it loudly
                    elif self.broker.state() not in ("ok", "degraded"):
                        log.info("repair of %r postponed to the resubscription: %s", room, exc)
                        return
                    log.info("repair of %r failed (%s); again in %.1f s", room, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(REPAIR_RETRY_MAX_S, backoff * 2)
                    continue
                rounds += 1
                self.repairs += 1
                if host.catch_up(room, replay):
                    self._repairing[room] = True  # a new epoch: read it from its base
                if not self._repairing[room]:
                    return
        finally:
            again = self._repairing.pop(room, False)
            if again and not self._closed:  # asked for during the last of the rounds
                self.repair(room, delay_s=REPAIR_RETRY_MAX_S)

    def expect(self, room: str, msg_id: int) -> None:
        """Note that this node stored ``msg_id`` in ``room`` (its sender waits for the echo).

        If the room's members here have not been shown it within ``EXPECT_WITHIN_S``, its
        publish was lost (the master died between the store and the publish reaching the
        other servers, or this node's subscriber was reconnecting): repair. With no later
        message in the room there would be no gap to trigger it, and the sender would get
        neither its echo nor an error. One check per room at a time.
        """
        pending = self._expected.get(room)
        if pending is not None:
            pending[1] = max(pending[1], msg_id)
            return
        self._expected[room] = [msg_id, msg_id, 0]
        asyncio.get_running_loop().call_later(EXPECT_WITHIN_S, self._check_expected, room)

    def _check_expected(self, room: str) -> None:
        """Repair ``room`` if its members here were not shown the id being checked; check
        it again later until they are (or ``EXPECT_CHECKS`` ran out), then the newest."""
        pending = self._expected.get(room)
        if pending is None or self._host is None or self._closed:
            return
        checked, newest, checks = pending
        cursor = self._host.cursor(room)
        loop = asyncio.get_running_loop()
        if cursor is not None and cursor < checked:
            if checks < EXPECT_CHECKS:
                log.info("message %d of %r not shown here yet: repairing", checked, room)
                self.repair(room, delay_s=0)
                pending[2] = checks + 1
                loop.call_later(REPAIR_RETRY_MAX_S, self._check_expected, room)
                return
            log.warning("message %d of %r never came back from Redis", checked, room)
        if newest > checked:  # stored after the check began: checked in turn
            self._expected[room] = [newest, newest, 0]
            loop.call_later(EXPECT_WITHIN_S, self._check_expected, room)
        else:
            del self._expected[room]

    def settle_unshown(self, conn: Any, said: list[StoredMessage]) -> None:
        """Answer each of ``said``, says of ``conn`` stored in an epoch of their room that
        was replaced before they were shown back (``Fanout.adopt_epoch``).

        Its client waits for each one's echo, which will not come now. Those the history
        still holds (the promoted replica had them) are echoed under the ids they were
        stored with; the others were lost with the old master and get an ``unavailable``
        error with their ``cid``: never neither (issue 14).
        """
        self._spawn(self._settle_unshown(conn, said), limit=False)

    async def _settle_unshown(self, conn: Any, said: list[StoredMessage]) -> None:
        """One read from the oldest of ``said`` on (they are of one member, one room), tried
        again while the history is unavailable; then each is answered."""
        backoff = REPAIR_DELAY_S
        held: dict[int, StoredMessage] = {}
        for _ in range(EXPECT_CHECKS):
            try:
                read = await self.store.replay(said[0].room, min(m.id for m in said) - 1, 0)
            except Unavailable:
                await asyncio.sleep(backoff)
                backoff = min(REPAIR_RETRY_MAX_S, backoff * 2)
                continue
            held = {m.id: m for m in read.messages}
            break  # after minutes unavailable, none is known held: each is sent again
        for msg in said:
            found = held.get(msg.id)
            same = found is not None and (found.sender, found.cid, found.text) == (
                msg.sender,
                msg.cid,
                msg.text,
            )
            self.host.answer_unshown(conn, msg, same)

    def _resubscribed(self) -> None:
        for room in self.host.rooms():
            self.repair(room, delay_s=0)
        # The connection to Redis was lost: a failover to a replica may have lost registry
        # writes that left this node's key alive, so register every name again.
        self._registered = False
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
        """Keep this node live (one short script), register every name only when the
        registry lost them, start sweeping dead nodes, and re-read the rooms that changed.

        Issue 19: refreshing every name and reading every member set on each heartbeat cost
        4 workers holding 60,000 names 4.9 ms of CPU per connect and kept their Redis
        connections busy past the pool's wait (connections closed 1013).
        """
        host = self.host
        beat = await self.registry.beat()
        if not beat.registered:
            self._registered = False
        if not self._registered:
            lost = await self.registry.refresh(host.holders())
            self._registered = True
            self._versions.clear()  # the registry's versions may have started again
            if lost:
                # Only after Redis lost the registry (a restart without persistence, a
                # failover) or this node stalled for its TTL: another node registered the
                # name first. It keeps it; this node lets go.
                log.warning("names now held by another node: %s", ", ".join(sorted(lost)))
                for name in lost:
                    host.lose(name)
        sweeps = SWEEPS_PER_BEAT
        for node in beat.dead:
            while sweeps > 0:
                sweeps -= 1
                if not await self.registry.sweep(node):
                    break
        rooms = host.rooms()
        for room in list(self.mirror):
            if room not in rooms:
                del self.mirror[room]
                self._versions.pop(room, None)
        started = asyncio.get_running_loop().time()
        changes = await self.registry.changes({room: self._versions.get(room) for room in rooms})
        unsure = []
        for room, change in changes.items():
            known = self.mirror.setdefault(room, Roster())
            if change.names is not None:
                self._reconcile(room, known, change.names, started)
            elif change.log:
                self._follow(room, known, change.log, started)
            elif len(known) != change.count:
                unsure.append(room)  # quiet, yet not what the registry says: read it whole
            self._versions[room] = change.version
        for room, (version, names) in (await self.registry.members(unsure)).items():
            self._versions[room] = version
            self._reconcile(room, self.mirror.setdefault(room, Roster()), names, started)
        horizon = started - 10 * self.heartbeat_s
        self._touched = {k: t for k, t in self._touched.items() if t >= horizon}

    def _follow(self, room: str, known: Roster, log: list[str], started: float) -> None:
        """Bring ``known`` (the mirror of ``room``) up to the registry's ``log`` of changes
        ('+NAME', '-NAME', oldest first), as ``_reconcile`` does for a whole member list."""
        last: dict[str, bool] = {}  # name -> in the room after the log
        for change in log:
            last[change[1:]] = change[0] == "+"
        changed = {name for name, present in last.items() if present != (name in known)}
        if changed:
            self._tell(room, known, changed, started)

    def _reconcile(self, room: str, known: Roster, names: set[str], started: float) -> None:
        """Bring ``known`` (the mirror of ``room``) to ``names``, read from the registry since
        ``started``, telling this node's members each difference.

        This node's own names are its presence's to announce, and a name whose envelope came
        after ``started`` is newer than the read: both are left alone.
        """
        changed = names.symmetric_difference(known)
        if changed:
            self._tell(room, known, changed, started)

    def _tell(self, room: str, known: Roster, changed: set[str], started: float) -> None:
        """Flip each name of ``changed`` in ``known``, telling this node's members, except
        this node's own names and those with an envelope newer than ``started``."""
        host = self.host
        local = {h.name for h in host.holders()}
        for name in sorted(changed):
            if name in local or self._touched.get((room, name), 0.0) >= started:
                continue
            if name in known:
                known.discard(name)
                host.fan_out_presence("left", room, name)
            else:
                known.add(name)
                host.fan_out_presence("joined", room, name)

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
        """Run ``coro`` in the background; ``limit``: a registry write, bounded in number
        (``MAX_BACKGROUND_TASKS``) and in concurrency (``BACKGROUND_WRITERS``)."""
        if limit and len(self._tasks) >= MAX_BACKGROUND_TASKS:
            coro.close()  # Redis is far behind: the next heartbeat re-syncs the registry
            return
        slots = self._writers if limit else None
        task = asyncio.get_running_loop().create_task(self._quietly(coro, slots))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, Any], slots: asyncio.Semaphore | None) -> None:
        try:
            if slots is None:
                await coro
            else:
                async with slots:
                    await coro
        except Unavailable as exc:
            log.debug("background write skipped: %s", exc)
