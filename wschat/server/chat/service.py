"""The chat service: names, rooms, history and fan-out for plain and ``wschat.v1`` clients.

``ChatService`` glues the pure presence state (``wschat.rooms``), the history store and the
broker to the hub's sockets. A room message is stored first (which gives it its id), then
published; every process's ``deliver`` fans it out, encoding it once per dialect. A v1 client
entering a room is registered *before* its history is read: live messages arriving meanwhile
wait in ``Connection.pending`` and are queued after the replay, skipping ids already replayed
— no gap, no duplicate, whatever the timing.

With the Redis broker a ``Cluster`` (``wschat.server.chat.cluster``) joins this process to the
others: names and members are confirmed in the shared registry, and a v1 connection only
takes the next id of its room — a gap is repaired from the store (issue 6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from wschat import __version__
from wschat.broker import Broker, Envelope
from wschat.errors import Unavailable
from wschat.protocol import (
    SUBPROTOCOL,
    CloseCode,
    ErrorCode,
    dm_event,
    dumps,
    error_event,
    members_event,
    plain_line,
    presence_event,
)
from wschat.rooms import Claim, ClaimResult, Presence
from wschat.server.conn.connection import Connection, Outgoing
from wschat.server.conn.hub import Hub
from wschat.server.settings import ServerSettings
from wschat.store import HistoryStore, Replay, StoredMessage

if TYPE_CHECKING:
    from wschat.server.chat.cluster import Cluster

log = logging.getLogger("wschat.server")


def text_frame(obj: dict[str, Any]) -> Outgoing:
    """Return the frame carrying ``obj`` as one JSON text frame."""
    return Outgoing(dumps(obj))


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
        self.connections_by_name: dict[str, Connection] = {}
        self.replays = 0
        self.presence_suppressed = 0  # joined/left not sent because the room was too big
        # Plain ints read by the metrics collector at scrape time (see metrics.py).
        self.replayed = 0
        self.messages_in = 0
        self.dms_in = 0
        self.messages_out = 0
        self.dms_out = 0
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}

    async def start(self) -> None:
        await self.broker.start(self.deliver)
        if self.cluster is not None:
            await self.cluster.start(self)

    async def close(self) -> None:
        for timer in self._grace_timers.values():
            timer.cancel()
        self._grace_timers.clear()
        if self.cluster is not None:
            await self.cluster.close()
        await self.broker.close()
        await self.store.close()

    # --- entering and leaving ---------------------------------------------------------------

    async def claim(self, conn: Connection, token: str | None, *, shared: bool = False) -> Claim:
        """Give ``conn`` its name, or say it is taken; announce arrivals. Call before ``enter``.

        ``shared``: the connection's name is proven by a signed token, so the same user may
        hold several connections at once (issue 7; on one node only, with the Redis broker).
        """
        assert conn.room is not None
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
        if isinstance(old, Connection):
            old.replaced = True
            old.close(CloseCode.REPLACED, "replaced by a newer connection")
        self.connections_by_name[conn.name] = conn
        if claim.result is ClaimResult.NEW:
            self._announce("joined", conn.room, conn.name)
        elif claim.previous_room != conn.room:
            assert claim.previous_room is not None
            self._announce("left", claim.previous_room, conn.name)
            self._announce("joined", conn.room, conn.name)
        return claim

    async def _claim_shared(self, conn: Connection, claim: Claim, token: str | None) -> Claim:
        """Confirm a local claim with the other nodes: taken there, or resumed from there."""
        assert self.cluster is not None and claim.holder is not None and conn.room is not None
        h = claim.holder
        outcome = await self.cluster.claim(h, token)
        if outcome.result == "taken":
            if claim.result is ClaimResult.NEW:
                self.presence.release(conn.name, conn, 0.0, grace=False)
            return Claim(ClaimResult.TAKEN)
        if outcome.result == "moved" and claim.result is ClaimResult.NEW:
            return Claim(ClaimResult.RESUMED, h, None, outcome.old_room or conn.room)
        return claim

    def let_go(self, name: str) -> None:
        """Another node took ``name`` over with its resume token: drop it here, silently."""
        timer = self._grace_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        holder = self.presence.holders.get(name)
        if holder is None:
            return
        conn = holder.key
        if isinstance(conn, Connection):
            conn.replaced = True
            conn.close(CloseCode.REPLACED, "replaced by a newer connection")
            if self.connections_by_name.get(name) is conn:
                del self.connections_by_name[name]
            self.presence.release(name, conn, 0.0, grace=False)
        else:
            self.presence.expire(name, float("inf"))

    def members(self, room: str) -> list[str]:
        """Return ``room``'s members (on every node, with the Redis broker)."""
        local = self.presence.members(room)
        return local if self.cluster is None else self.cluster.members(room, local)

    async def enter(self, conn: Connection, since: int | None, token: str) -> None:
        """Register ``conn`` in its room and queue its welcome, replay and pending messages.

        If the shared history is unavailable the connection is closed with 1013 (try again).
        """
        assert conn.room is not None
        room = conn.room
        conn.pending = []
        self.hub.add(conn)
        if self.cluster is not None:
            await self.cluster.refresh_room(room)
        try:
            replay: Replay = await self.store.replay(room, since, self.settings.replay_count)
        except Unavailable as exc:
            conn.pending = None
            conn.close(CloseCode.TRY_AGAIN_LATER, str(exc)[:100])
            return
        except Exception:
            conn.pending = None
            raise
        if replay.messages:
            conn.last_id = replay.messages[-1].id
        elif since is not None and since <= replay.latest:
            conn.last_id = since
        else:
            conn.last_id = replay.latest
        if since is not None and since > replay.latest:
            gap = True  # the client saw ids this store never had: its view is stale
        else:
            gap = replay.gap
        welcome = {
            "type": "welcome",
            "name": conn.name,
            "room": room,
            "members": self.members(room),
            "latest": max(replay.latest, conn.last_id),
            "replay": len(replay.messages),
            "gap": gap,
            "token": token,
            "protocol": SUBPROTOCOL,
            "server": __version__,
        }
        batch = [text_frame(welcome)]
        batch += [text_frame(m.event()) for m in replay.messages]
        pending, conn.pending = conn.pending, None
        for msg in pending:
            if msg.id > conn.last_id:
                if self.cluster is not None and msg.id > conn.last_id + 1:
                    self.cluster.repair(room)  # one went missing: the rest comes with it
                    break
                conn.last_id = msg.id
                batch.append(text_frame(msg.event()))
        if replay.messages:
            self.replays += 1
            self.replayed += len(replay.messages)
        conn.push(batch)

    def leave(self, conn: Connection, code: int | None) -> None:
        """Forget ``conn``'s claim; a v1 client that dropped keeps its name for the grace period."""
        if self.connections_by_name.get(conn.name) is conn:
            del self.connections_by_name[conn.name]
        if conn.replaced:
            return
        graceful_quit = code == CloseCode.NORMAL
        loop = asyncio.get_running_loop()
        holder = self.presence.release(conn.name, conn, loop.time(), grace=not graceful_quit)
        if holder is not None:
            self._announce("left", holder.room, holder.name)
            if self.cluster is not None:
                self.cluster.release(holder.name)
            return
        held = self.presence.holders.get(conn.name)
        if held is not None and isinstance(held.key, Connection):
            self.connections_by_name.setdefault(conn.name, held.key)  # another device carries on
        if held is not None and held.grace_until is not None:
            delay = max(0.0, held.grace_until - loop.time())
            self._grace_timers[conn.name] = loop.call_later(delay, self._expire, conn.name)

    def _expire(self, name: str) -> None:
        self._grace_timers.pop(name, None)
        holder = self.presence.expire(name, asyncio.get_running_loop().time())
        if holder is not None:
            self._announce("left", holder.room, holder.name)
            if self.cluster is not None:
                self.cluster.release(holder.name)

    async def move(self, conn: Connection, room: str) -> None:
        """Move ``conn`` to ``room``: ``left``/``joined`` for the others, a new welcome for it."""
        if self.broker.state() != "ok":
            # Entering needs the shared history: stay in the room rather than lose the socket.
            conn.offer(text_frame(error_event(ErrorCode.UNAVAILABLE, "cannot change rooms now")))
            return
        old = conn.room
        if old != room:
            self.hub.leave(conn)
            conn.room = room
            self.presence.move(conn.name, room)
            if old is not None:
                self._announce("left", old, conn.name)
            self._announce("joined", room, conn.name)
        holder = self.presence.holders.get(conn.name)
        token = holder.token if holder is not None else ""
        if self.cluster is not None and holder is not None:
            self.cluster.update(holder)
        await self.enter(conn, None, token)

    # --- what clients say -------------------------------------------------------------------

    async def say(
        self, conn: Connection, text: str, action: bool = False, cid: str | None = None
    ) -> None:
        """Store a room message and publish it to every member, the sender included."""
        assert conn.room is not None
        try:
            stored = await self.store.append(conn.room, conn.name, text, time.time(), action, cid)
        except Unavailable:
            self._unavailable(conn, "message not sent: history unavailable, send it again")
            return
        self.messages_in += 1
        if self.store.publishes:
            return  # the store published it with its id (see wschat.store.redis)
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

    async def dm(self, conn: Connection, to: str, text: str) -> None:
        """Send a direct message to ``to`` and echo it to the sender; error if nobody holds it."""
        envelope = {"kind": "dm", "from": conn.name, "to": to, "text": text, "ts": time.time()}
        if self.cluster is not None and not self.presence.holds(to):
            try:  # held on another node, perhaps
                if await self.cluster.holds(to):
                    await self.broker.publish(envelope)
                    return
            except Unavailable:
                self._unavailable(conn, "direct message not sent: broker unavailable")
                return
        if self.presence.holders.get(to) is None:
            conn.offer(text_frame(error_event(ErrorCode.NO_SUCH_USER, f"nobody is called {to!r}")))
            return
        self.dms_in += 1
        if self.cluster is not None:
            self._fan_out(envelope)  # both ends are here: no need for Redis
            return
        await self.broker.publish(envelope)

    def _unavailable(self, conn: Connection, detail: str) -> None:
        if conn.v1:
            conn.offer(text_frame(error_event(ErrorCode.UNAVAILABLE, detail)))
        else:
            conn.offer(Outgoing(f"wschat: {detail}"))

    def who(self, conn: Connection) -> None:
        assert conn.room is not None
        conn.offer(text_frame(members_event(conn.room, self.members(conn.room))))

    # --- delivery ---------------------------------------------------------------------------

    def _announce(self, kind: str, room: str, name: str) -> None:
        self.fan_out_presence(kind, room, name)
        if self.cluster is not None:
            self.cluster.announce(kind, room, name)

    def fan_out_presence(self, kind: str, room: str, name: str) -> None:
        """Tell this process's members of ``room`` that ``name`` joined or left."""
        self._fan_out({"kind": "presence", "event": kind, "room": room, "name": name})

    def deliver(self, envelope: Envelope) -> None:
        """Fan an envelope from the broker out to this process's sockets; never awaits a peer."""
        if self.cluster is not None and not self.cluster.accept(envelope):
            return
        self._fan_out(envelope)

    def _fan_out(self, envelope: Envelope) -> None:
        kind = envelope["kind"]
        if kind == "message":
            self._deliver_message(envelope)
        elif kind == "presence":
            frame = text_frame(
                presence_event(envelope["event"], envelope["room"], envelope["name"])
            )
            members = self.hub.members(envelope["room"])
            size = max(len(members), len(self.presence.rooms.get(envelope["room"], ())))
            if size > self.settings.presence_limit:
                # Past the limit, presence is quadratic (N arrivals x N members): clients of big
                # rooms ask with `who` instead (docs/protocol.md).
                self.presence_suppressed += 1
                return
            # A connection still entering gets the members in its welcome instead.
            receivers = [
                c for c in members if c.v1 and c.name != envelope["name"] and c.pending is None
            ]
            self.hub.deliver(receivers, frame)
        elif kind == "dm":
            self._deliver_dm(envelope)

    def _deliver_message(self, env: Envelope) -> None:
        msg = StoredMessage(
            env["room"],
            env["id"],
            env["from"],
            env["text"],
            env["ts"],
            env.get("action", False),
            env.get("cid"),
        )
        self.deliver_stored(msg)

    def deliver_stored(self, msg: StoredMessage, *, plain: bool = True) -> None:
        """Queue ``msg`` for its room's members here; ``plain=False`` skips plain clients
        (a repair: they had their copy, or cannot resume anyway).

        The hot path of fan-out: one frame per dialect, offered to each member in one pass.
        """
        gap = False
        v1_frame: Outgoing | None = None
        plain_frame: Outgoing | None = None
        offered = 0
        slow: list[Connection] = []
        direct = self.hub.coalescer.fresh_pass()
        for conn in self.hub.members(msg.room):
            if not conn.v1:
                if not plain:
                    continue
                if plain_frame is None:
                    text = f"* {msg.sender} {msg.text}" if msg.action else msg.text
                    plain_frame = Outgoing(plain_line(msg.sender, text))
                frame = plain_frame
            elif conn.pending is not None:
                if len(conn.pending) < self.settings.outbox_size:
                    conn.pending.append(msg)
                elif conn.close_code is None:
                    self.hub.slow_consumers += 1
                    conn.close(
                        CloseCode.SLOW_CONSUMER, "too many messages during replay", flush=False
                    )
                continue
            elif msg.id > conn.last_id:
                if self.cluster is not None and msg.id > conn.last_id + 1:
                    gap = True  # never skip an id: fetch the missing ones first
                    continue
                conn.last_id = msg.id
                if v1_frame is None:
                    v1_frame = text_frame(msg.event())
                frame = v1_frame
            else:
                continue
            # Neither call can change the room's set while we walk it: they only queue or write,
            # and a failed write is reported by the transport in a later pass.
            if direct and conn.write_now(frame):
                offered += 1
            elif conn.offer(frame):
                offered += 1
            else:
                slow.append(conn)
        for conn in slow:
            self.hub.drop_slow(conn)
        self.hub.deliveries += offered
        self.messages_out += offered
        if gap and self.cluster is not None:
            self.cluster.repair(msg.room)

    def _deliver_dm(self, env: Envelope) -> None:
        receivers: list[tuple[Connection, Outgoing]] = []
        v1_frame = text_frame(dm_event(env["from"], env["to"], env["text"], env["ts"]))
        for name in dict.fromkeys((env["to"], env["from"])):
            for conn in self._connections_of(name):
                if conn.v1:
                    receivers.append((conn, v1_frame))
                else:
                    line = f"DM from {env['from']}: {env['text']}"
                    receivers.append((conn, Outgoing(line)))
        self.dms_out += self.hub.deliver_each(receivers)

    def _connections_of(self, name: str) -> list[Connection]:
        """Return every live connection of ``name`` here (several for a signed-in user)."""
        conn = self.connections_by_name.get(name)
        found = [conn] if conn is not None else []
        holder = self.presence.holders.get(name)
        if holder is not None:
            found += [c for c in holder.extra if isinstance(c, Connection) and c is not conn]
        return found
