"""The chat service: names, rooms, history and fan-out for plain and ``wschat.v1`` clients.

``ChatService`` glues the pure presence state (``wschat.rooms``), the history store and the
broker to the hub's sockets. A room message is stored first (which gives it its id), then
published; every process's ``deliver`` fans it out, encoding it once per dialect. A v1 client
entering a room is registered *before* its history is read: live messages arriving meanwhile
wait in ``Member.pending`` and are queued after the replay, skipping ids already replayed
— no gap, no duplicate, whatever the timing.

With the Redis broker a ``Cluster`` (``chat.cluster``) joins this process to the others:
names and members are confirmed in the shared registry, and a v1 connection only takes the
next id of its room — a gap is repaired from the store (issue 6). ``ChatService`` satisfies
the cluster's ``ClusterHost`` protocol; the cluster does not import this module.

Every reply to a member goes through the hub (``Hub.send``), so a full outbox closes it 4001.
Delivery to many is ``chat.fanout``. Imports the connection layer, ``chat.*``, the broker,
the store and the pure core; no socket type, nothing of the handlers or the app.
"""

from __future__ import annotations

import asyncio
import logging
import time

from wschat import __version__
from wschat.broker import Broker, Envelope
from wschat.errors import Unavailable
from wschat.protocol import (
    SUBPROTOCOL,
    CloseCode,
    ErrorCode,
    dm_event,
    epoch_event,
    error_event,
    members_event,
    rooms_event,
)
from wschat.rooms import Claim, ClaimResult, Holder, Presence
from wschat.server.chat.cluster import Cluster
from wschat.server.chat.expiry import Expiries
from wschat.server.chat.fanout import Fanout
from wschat.server.chat.member import Member
from wschat.server.conn.hub import Hub
from wschat.server.conn.outgoing import Outgoing, text_frame
from wschat.server.settings import ServerSettings
from wschat.store import HistoryStore, Replay, StoredMessage

log = logging.getLogger("wschat.server")

# A member's own says kept until shown back (``Member.awaiting``): a say is answered within a
# second or two, and the rate limit bounds how many a client sends meanwhile.
MAX_AWAITING = 64
REPLAY_SLICE = 64  # replayed messages encoded between two yields to the event loop
REPLAY_SLICE_BYTES = 64 * 1024  # or this many bytes of frames, whichever comes first


class ChatService:
    """Everything a chat connection needs beyond its socket; one per server process."""

    def __init__(
        self,
        hub: Hub,
        store: HistoryStore,
        broker: Broker,
        settings: ServerSettings,
        cluster: Cluster | None = None,
    ) -> None:
        self.hub = hub
        self.cluster = cluster
        self.store = store
        self.broker = broker
        self.settings = settings
        self.presence = Presence(settings.presence_grace_s)
        self.connections_by_name: dict[str, Member] = {}
        self.fanout = Fanout(hub, self.presence, self.connections_by_name, settings, cluster)
        # Plain ints read by the metrics collector at scrape time (see metrics.py).
        self.replays = 0
        self.replayed = 0
        self.messages_in = 0
        self.dms_in = 0
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}
        # DMs to a name in its grace, delivered when it resumes (with a cluster: in Redis).
        self._kept: dict[str, list[Envelope]] = {}
        self._resumed: set[str] = set()  # names resumed by ``claim``, not yet ``enter``ed
        self.expiries = Expiries()  # connections opened with a token close 4011 at its exp

    async def start(self) -> None:
        await self.broker.start(self.fanout.deliver)
        if self.cluster is not None:
            await self.cluster.start(self)

    async def close(self) -> None:
        self.expiries.cancel()
        for timer in self._grace_timers.values():
            timer.cancel()
        self._grace_timers.clear()
        if self.cluster is not None:
            await self.cluster.close()
        await self.broker.close()
        await self.store.close()

    # --- entering and leaving ---------------------------------------------------------------

    async def claim(self, conn: Member, token: str | None, *, shared: bool = False) -> Claim:
        """Give ``conn`` its name, or say it is taken; announce arrivals. Call before ``enter``.

        Raises ``Unavailable`` when the name is new here and the shared registry cannot
        confirm it (Redis is away): refuse the connection with 1013, try again later.

        ``shared``: the connection's name is proven by a signed token, so the same user may
        hold several connections at once (issue 7; on one node only, with the Redis broker).
        """
        claim = self.presence.claim(
            conn.name, conn.room, conn, token, reclaimable=conn.v1, shared=shared
        )
        if claim.result in (ClaimResult.TAKEN, ClaimResult.ADDED):
            return claim
        if self.cluster is not None and claim.holder is not None:
            claim = await self._claim_shared(conn, claim, token)
            if claim.result is ClaimResult.TAKEN:
                return claim
        timer = self._grace_timers.pop(conn.name, None)
        if timer is not None:
            timer.cancel()
        old = claim.replaced
        if isinstance(old, Member):
            old.replaced = True
            old.close(CloseCode.REPLACED, "replaced by a newer connection")
        self.connections_by_name[conn.name] = conn
        if claim.result is ClaimResult.RESUMED:
            self._resumed.add(conn.name)
        else:
            self._forget_kept(conn.name)
        if claim.result is ClaimResult.NEW:
            self._announce("joined", conn.room, conn.name)
        elif claim.previous_room != conn.room:
            assert claim.previous_room is not None
            self._announce("left", claim.previous_room, conn.name)
            self._announce("joined", conn.room, conn.name)
        return claim

    async def _claim_shared(self, conn: Member, claim: Claim, token: str | None) -> Claim:
        """Confirm a local claim with the other nodes: taken there, or resumed from there."""
        assert self.cluster is not None and claim.holder is not None
        h = claim.holder
        try:
            outcome = await self.cluster.claim(h, token)
        except Unavailable:
            if claim.result is ClaimResult.NEW:
                self.presence.release(conn.name, conn, 0.0, grace=False)
                raise  # a name nobody can confirm now is not handed out
            return claim  # this node held the name already: resumed here
        if outcome.result == "taken":
            if claim.result is ClaimResult.NEW:
                self.presence.release(conn.name, conn, 0.0, grace=False)
            return Claim(ClaimResult.TAKEN, lookalike=outcome.lookalike)
        if outcome.result == "moved" and claim.result is ClaimResult.NEW:
            return Claim(ClaimResult.RESUMED, h, None, outcome.old_room or conn.room)
        return claim

    def let_go(self, name: str) -> None:
        """Another node took ``name`` over with its resume token: drop it here, silently."""
        self._drop_name(name, CloseCode.REPLACED, "replaced by a newer connection")

    def lose(self, name: str) -> None:
        """The registry gave ``name`` to another node (it lost this node's claim): drop it."""
        self._drop_name(name, CloseCode.NAME_TAKEN, "name now held on another server")

    def _drop_name(self, name: str, code: int, reason: str) -> None:
        """Drop ``name`` here without ``left``: it lives on on another node."""
        timer = self._grace_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        self._kept.pop(name, None)  # the node that took it over reads the kept DMs in Redis
        holder = self.presence.holders.get(name)
        if holder is None:
            return
        if holder.key is None:
            self.presence.expire(name, float("inf"))
            return
        for conn in [holder.key, *holder.extra]:
            if isinstance(conn, Member):
                conn.replaced = True
                conn.close(code, reason)
                if self.connections_by_name.get(name) is conn:
                    del self.connections_by_name[name]
                self.presence.release(name, conn, 0.0, grace=False)

    def members(self, room: str) -> list[str]:
        """Return ``room``'s members (on every node, with the Redis broker)."""
        if self.cluster is None:
            return self.presence.members(room)
        return self.cluster.members(room, self.presence.rooms.get(room))

    async def enter(
        self, conn: Member, since: int | None, token: str, epoch: str | None = None
    ) -> None:
        """Register ``conn`` in its room and queue its welcome, replay and pending messages.

        A replay for ``since`` is the newest ``replay_max`` messages at most, and no more than
        half of ``outbox_bytes`` serialised, so that it fits the outbox with room for live
        messages; past either cap the welcome says ``gap`` (issue 15: an uncapped replay of
        10,000 messages held 43 MB for a peer that never read). If the shared history is
        unavailable the connection is closed with 1013 (try again).

        ``epoch`` is the one the client's ``since`` belongs to: if the room's sequence has
        another one now (it was reset, issue 14), ``since`` means nothing: the replay is the
        whole new epoch (capped as above) and the welcome says ``gap``.
        """
        room = conn.room
        conn.pending = []
        self.hub.join(conn, room)
        if self.cluster is not None:
            await self.cluster.refresh_room(room)
        try:
            budget = self.settings.outbox_bytes // 2  # what a replay may take of the outbox
            replay: Replay = await self.store.replay(
                room, since, self.settings.replay_count, most=self.settings.replay_max, chars=budget
            )
            stale = since is not None and epoch is not None and epoch != replay.epoch
            if stale:
                since = replay.base
                replay = await self.store.replay(
                    room,
                    since,
                    self.settings.replay_count,
                    most=self.settings.replay_max,
                    chars=budget,
                )
        except Unavailable as exc:
            conn.pending = None
            conn.close(CloseCode.TRY_AGAIN_LATER, str(exc)[:100])
            return
        except Exception:
            conn.pending = None
            raise
        # Taken once the welcome can go: DMs kept while it was away follow the replay.
        kept = await self._take_kept(conn.name) if conn.name in self._resumed else []
        if replay.messages:
            conn.last_id = replay.messages[-1].id
        elif since is not None and since <= replay.latest:
            conn.last_id = since
        else:
            conn.last_id = replay.latest
        conn.epoch = replay.epoch
        self.fanout.note_epoch(room, replay.epoch)
        frames = await self._replay_frames(replay.messages, budget)
        if stale or (since is not None and since > replay.latest):
            gap = True  # the client saw ids this store never had: its view is stale
        else:
            # Without ``since`` the replay is "the last few", never a promise of all: no gap.
            gap = replay.gap or (since is not None and len(frames) < len(replay.messages))
        welcome = {
            "type": "welcome",
            "name": conn.name,
            "room": room,
            "members": self.members(room),
            "latest": max(replay.latest, conn.last_id),
            "replay": len(frames),
            "gap": gap,
            "epoch": replay.epoch,
            "token": token,
            "protocol": SUBPROTOCOL,
            "server": __version__,
        }
        batch = [text_frame(welcome), *frames]
        pending, conn.pending = conn.pending, None
        for msg in pending:
            if msg.epoch and msg.epoch != conn.epoch:
                if not self.fanout.note_epoch(room, msg.epoch):
                    continue  # older than the replay's
                conn.epoch, conn.last_id = msg.epoch, msg.base
                batch.append(text_frame(epoch_event(room, msg.epoch, msg.base)))
            if msg.id > conn.last_id:
                if self.cluster is not None and msg.id > conn.last_id + 1:
                    self.cluster.repair(room)  # one went missing: the rest comes with it
                    break
                conn.last_id = msg.id
                batch.append(text_frame(msg.event()))
        batch += [text_frame(dm_event(d["from"], d["to"], d["text"], d["ts"])) for d in kept]
        if frames:
            self.replays += 1
            self.replayed += len(frames)
        if not conn.push(batch):  # the welcome before this one is still unread
            self.hub.drop_slow(conn, "outbox full: welcomes not read")

    @staticmethod
    async def _replay_frames(messages: list[StoredMessage], budget: int) -> list[Outgoing]:
        """Return the frames of the newest ``messages`` that fit in ``budget`` bytes, in order.

        Built newest first, a slice at a time: a replay of thousands takes many ms to encode
        and serialise, so other sockets run between slices (issue 15); live messages wait in
        ``Member.pending`` meanwhile. A slice ends after ``REPLAY_SLICE`` messages or
        ``REPLAY_SLICE_BYTES`` of frames, whichever comes first: 256 messages of 4,000
        characters took about 5 ms of the loop at once (and 256 short ones about 2.5 ms),
        and ten such replays at the same moment doubled another room's p99.
        """
        frames: list[Outgoing] = []
        used = 0
        sliced = 0
        for m in reversed(messages):
            frame = text_frame(m.event()).serialized()
            used += len(frame.wire)
            if used > budget:
                break
            frames.append(frame)
            sliced += len(frame.wire)
            if sliced >= REPLAY_SLICE_BYTES or len(frames) % REPLAY_SLICE == 0:
                sliced = 0
                await asyncio.sleep(0)
        frames.reverse()
        return frames

    def enter_plain(self, conn: Member) -> None:
        """Register a plain ``conn`` in its room: no welcome, no replay, live messages only."""
        self.hub.join(conn, conn.room)

    def leave(self, conn: Member, code: int | None) -> None:
        """Forget ``conn``'s claim; a v1 client that dropped keeps its name for the grace period.

        A connection closed at its token's expiry (4011) leaves at once, like a quit: its
        client does not come back with that token.
        """
        self.expiries.discard(conn)
        if self.connections_by_name.get(conn.name) is conn:
            del self.connections_by_name[conn.name]
        if conn.replaced:
            return
        graceful_quit = code == CloseCode.NORMAL or conn.close_code == CloseCode.TOKEN_EXPIRED
        loop = asyncio.get_running_loop()
        holder = self.presence.release(conn.name, conn, loop.time(), grace=not graceful_quit)
        if holder is not None:
            self._announce("left", holder.room, holder.name)
            if self.cluster is not None:
                self.cluster.release(holder.name)
            return
        held = self.presence.holders.get(conn.name)
        if held is not None and isinstance(held.key, Member):
            self.connections_by_name.setdefault(conn.name, held.key)  # another device carries on
        if held is not None and held.grace_until is not None:
            delay = max(0.0, held.grace_until - loop.time())
            self._grace_timers[conn.name] = loop.call_later(delay, self._expire, conn.name)

    def _expire(self, name: str) -> None:
        self._grace_timers.pop(name, None)
        self._kept.pop(name, None)
        holder = self.presence.expire(name, asyncio.get_running_loop().time())
        if holder is not None:
            self._announce("left", holder.room, holder.name)
            if self.cluster is not None:
                self.cluster.release(holder.name)

    async def move(
        self, conn: Member, room: str, since: int | None = None, epoch: str | None = None
    ) -> None:
        """Move ``conn`` to ``room``: ``left``/``joined`` for the others, a new welcome for it.

        ``since`` (of ``epoch``) replays what came after it, capped as for a connection's
        ``?since=`` (``enter()``); without it the welcome carries the room's last few messages.
        """
        if self.broker.state() not in ("ok", "degraded"):
            # Entering needs the shared history: stay in the room rather than lose the socket.
            error = error_event(ErrorCode.UNAVAILABLE, "cannot change rooms now")
            self.hub.send(conn, text_frame(error))
            return
        old = conn.room
        if old != room:
            self.hub.join(conn, room)
            self.presence.move(conn.name, room)
            self._announce("left", old, conn.name)
            self._announce("joined", room, conn.name)
        holder = self.presence.holders.get(conn.name)
        token = holder.token if holder is not None else ""
        if self.cluster is not None and holder is not None:
            self.cluster.update(holder)
        await self.enter(conn, since, token, epoch)

    # --- what clients say -------------------------------------------------------------------

    async def say(
        self, conn: Member, text: str, action: bool = False, cid: str | None = None
    ) -> None:
        """Store a room message and publish it to every member, the sender included."""
        try:
            stored = await self.store.append(conn.room, conn.name, text, time.time(), action, cid)
        except Unavailable:
            self._unavailable(conn, "message not sent: history unavailable, send it again")
            return
        self.messages_in += 1
        if self.store.publishes:
            # The store published it with its id (see wschat.store.redis); if that publish
            # never comes back, the cluster repairs it (``Cluster.expect``).
            if self.cluster is not None:
                if conn.v1 and stored.epoch:
                    self._await_echo(conn, stored)
                self.cluster.expect(stored.room, stored.id)
            return
        await self.broker.publish(
            {
                "kind": "message",
                "room": stored.room,
                "id": stored.id,
                "from": stored.sender,
                "text": stored.text,
                "ts": stored.ts,
                "action": stored.action,
                "cid": stored.cid,
            }
        )

    async def dm(self, conn: Member, to: str, text: str) -> None:
        """Send a direct message to ``to``; echo it to the sender once delivered or kept.

        A DM to a name in its presence grace is kept (``--dm-keep`` at most) and delivered
        when the name resumes, on any node. Otherwise the sender gets an error event instead
        of the echo: ``no_such_user`` if nobody holds the name, ``not_delivered`` if its node
        does not answer (it died: its names expire within ``--node-ttl``) or the kept DMs are
        full, ``unavailable`` if Redis is away. Never both, never neither.
        """
        envelope = {"kind": "dm", "from": conn.name, "to": to, "text": text, "ts": time.time()}
        holder = self.presence.holders.get(to)
        try:
            if holder is not None and holder.key is not None:
                self.dms_in += 1
                if self.cluster is not None:
                    self.fanout.fan_out(envelope)  # both ends are here: no need for Redis
                else:
                    await self.broker.publish(envelope)
                return
            if holder is not None:
                answer: str | None = await self._keep(holder, envelope)
            elif self.cluster is not None and await self.cluster.holds(to):
                answer = await self.cluster.send_dm(envelope)
            else:
                error = error_event(ErrorCode.NO_SUCH_USER, f"nobody is called {to!r}")
                self.hub.send(conn, text_frame(error))
                return
        except Unavailable:
            self._unavailable(conn, "direct message not sent: broker unavailable")
            return
        if answer != "ok":
            why = "too many kept for them" if answer == "full" else "their server does not answer"
            detail = f"direct message to {to!r} not delivered: {why}"
            self.hub.send(conn, text_frame(error_event(ErrorCode.NOT_DELIVERED, detail)))
            return
        self.dms_in += 1
        self.fanout.deliver_dm(envelope, conn.name)

    async def _keep(self, holder: Holder, envelope: Envelope) -> str:
        """Keep a DM for ``holder`` (here, in its grace) until it resumes: ``ok`` or ``full``.

        Raises ``Unavailable`` if the cluster's Redis cannot take it.
        """
        most = self.settings.dm_keep
        if self.cluster is None:
            kept = self._kept.setdefault(holder.name, [])
            if len(kept) >= most:
                return "full"
            kept.append(envelope)
            return "ok"
        left = (holder.grace_until or 0.0) - asyncio.get_running_loop().time()
        result = await self.cluster.keep_dm(holder.name, envelope, most, max(0.0, left))
        return {1: "ok", -1: "full"}.get(result, "gone")

    async def _take_kept(self, name: str) -> list[Envelope]:
        """Return (and forget) the DMs kept for ``name`` while it was away."""
        self._resumed.discard(name)
        if self.cluster is None:
            return self._kept.pop(name, [])
        try:
            return await self.cluster.take_dms(name)
        except Unavailable as exc:
            log.warning("DMs kept for %r stay in Redis until they expire: %s", name, exc)
            return []

    def _forget_kept(self, name: str) -> None:
        # With a cluster, what was kept for an earlier holder expired with its grace.
        self._resumed.discard(name)
        self._kept.pop(name, None)

    @staticmethod
    def _await_echo(conn: Member, stored: StoredMessage) -> None:
        """Note ``stored`` as said by ``conn`` and not shown back yet; forget those shown."""
        awaiting = [
            m for m in conn.awaiting or () if not (m.epoch == conn.epoch and m.id <= conn.last_id)
        ]
        awaiting.append(stored)
        conn.awaiting = awaiting[-MAX_AWAITING:]

    def answer_unshown(self, conn: Member, said: StoredMessage, stored: bool) -> None:
        """Answer a say of ``conn`` whose echo its room's new epoch cut off (``ClusterHost``):
        its echo, under the id it was stored with, if the history still holds it; else an
        ``unavailable`` error naming its ``cid``, so that its client sends it again."""
        if stored:
            self.hub.send(conn, text_frame(said.event()))
            return
        detail = "message lost in a failover of the shared history before it was shown: send again"
        self.hub.send(conn, text_frame(error_event(ErrorCode.UNAVAILABLE, detail, said.cid)))

    def _unavailable(self, conn: Member, detail: str) -> None:
        if conn.v1:
            self.hub.send(conn, text_frame(error_event(ErrorCode.UNAVAILABLE, detail)))
        else:
            self.hub.send(conn, Outgoing(f"wschat: {detail}"))

    def who(self, conn: Member) -> None:
        """Send ``conn`` the members of its room."""
        self.hub.send(conn, text_frame(members_event(conn.room, self.members(conn.room))))

    async def list_rooms(self, conn: Member) -> None:
        """Send ``conn`` the rooms with members and how many (on every node, with Redis)."""
        counts = {room: len(names) for room, names in self.presence.rooms.items()}
        unseen = 0
        if self.cluster is not None:
            try:
                shared, unseen = await self.cluster.rooms()
            except Unavailable:
                self._unavailable(conn, "cannot list the rooms now: registry unavailable")
                return
            for room, count in shared.items():
                counts[room] = max(count, counts.get(room, 0))
        event = rooms_event(counts, self.settings.rooms_listed, unseen)
        self.hub.send(conn, text_frame(event))

    # --- delivery ---------------------------------------------------------------------------

    def _announce(self, kind: str, room: str, name: str) -> None:
        self.fanout.fan_out_presence(kind, room, name)
        if self.cluster is not None:
            self.cluster.announce(kind, room, name)

    # --- ClusterHost: what the cluster asks of this node ------------------------------------

    def holders(self) -> list[Holder]:
        """Return the names held on this node."""
        return list(self.presence.holders.values())

    def fan_out_presence(self, kind: str, room: str, name: str) -> None:
        """Tell this process's members of ``room`` that ``name`` joined or left."""
        self.fanout.fan_out_presence(kind, room, name)

    def rooms(self) -> list[str]:
        """Return the rooms with a v1 member here."""
        return self.fanout.rooms()

    def cursor(self, room: str) -> int | None:
        """Return the oldest id that ``room``'s live v1 members here have, or None."""
        return self.fanout.cursor(room)

    def catch_up(self, room: str, replay: Replay) -> bool:
        """Deliver what a repair read from the store to ``room``'s v1 members here; return
        whether some were moved to a new epoch."""
        return self.fanout.catch_up(room, replay)

    async def receive_dm(self, envelope: Envelope) -> str | None:
        """Deliver or keep a DM from another node; None if its ``to`` is not held here."""
        holder = self.presence.holders.get(envelope["to"])
        if holder is None:
            return None
        if holder.key is not None:
            self.fanout.deliver_dm(envelope, envelope["to"])
            return "ok"
        answer = await self._keep(holder, envelope)
        return None if answer == "gone" else answer
