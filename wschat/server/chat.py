"""The chat service: names, rooms, history and fan-out for plain and ``wschat.v1`` clients.

``ChatService`` glues the pure presence state (``wschat.rooms``), the history store and the
broker to the hub's sockets. A room message is stored first (which gives it its id), then
published; every process's ``deliver`` fans it out, encoding it once per dialect. A v1 client
entering a room is registered *before* its history is read: live messages arriving meanwhile
wait in ``Connection.pending`` and are queued after the replay, skipping ids already replayed
— no gap, no duplicate, whatever the timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wschat import __version__
from wschat.broker import Broker, Envelope
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
from wschat.server.connection import Connection, Outgoing
from wschat.server.hub import Hub
from wschat.server.settings import ServerSettings
from wschat.store import HistoryStore, StoredMessage

log = logging.getLogger("wschat.server")


def text_frame(obj: dict[str, Any]) -> Outgoing:
    """Return the frame carrying ``obj`` as one JSON text frame."""
    return Outgoing(dumps(obj))


class ChatService:
    """Everything a chat connection needs beyond its socket; one per server process."""

    def __init__(
        self, hub: Hub, store: HistoryStore, broker: Broker, settings: ServerSettings
    ) -> None:
        self.hub = hub
        self.store = store
        self.broker = broker
        self.settings = settings
        self.presence = Presence(settings.presence_grace_s)
        self.connections_by_name: dict[str, Connection] = {}
        self.replays = 0
        # Plain ints read by the metrics collector at scrape time (see metrics.py).
        self.replayed = 0
        self.messages_in = 0
        self.dms_in = 0
        self.messages_out = 0
        self.dms_out = 0
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}

    async def start(self) -> None:
        await self.broker.start(self.deliver)

    async def close(self) -> None:
        for timer in self._grace_timers.values():
            timer.cancel()
        self._grace_timers.clear()
        await self.broker.close()
        await self.store.close()

    # --- entering and leaving ---------------------------------------------------------------

    def claim(self, conn: Connection, token: str | None, *, shared: bool = False) -> Claim:
        """Give ``conn`` its name, or say it is taken; announce arrivals. Call before ``enter``.

        ``shared``: the connection's name is proven by a signed token, so the same user may
        hold several connections at once (issue 7).
        """
        assert conn.room is not None
        claim = self.presence.claim(
            conn.name, conn.room, conn, token, reclaimable=conn.v1, shared=shared
        )
        if claim.result in (ClaimResult.TAKEN, ClaimResult.ADDED):
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

    async def enter(self, conn: Connection, since: int | None, token: str) -> None:
        """Register ``conn`` in its room and queue its welcome, replay and pending messages."""
        assert conn.room is not None
        room = conn.room
        conn.pending = []
        self.hub.add(conn)
        try:
            replay = await self.store.replay(room, since, self.settings.replay_count)
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
            "members": self.presence.members(room),
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

    async def move(self, conn: Connection, room: str) -> None:
        """Move ``conn`` to ``room``: ``left``/``joined`` for the others, a new welcome for it."""
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
        await self.enter(conn, None, token)

    # --- what clients say -------------------------------------------------------------------

    async def say(self, conn: Connection, text: str, action: bool = False) -> None:
        """Store a room message and publish it to every member, the sender included."""
        assert conn.room is not None
        stored = await self.store.append(conn.room, conn.name, text, time.time(), action)
        self.messages_in += 1
        await self.broker.publish(
            {
                "kind": "message",
                "room": stored.room,
                "id": stored.id,
                "from": stored.sender,
                "text": stored.text,
                "ts": stored.ts,
                "action": stored.action,
            }
        )

    async def dm(self, conn: Connection, to: str, text: str) -> None:
        """Send a direct message to ``to`` and echo it to the sender; error if nobody holds it."""
        if self.presence.holders.get(to) is None:
            conn.offer(text_frame(error_event(ErrorCode.NO_SUCH_USER, f"nobody is called {to!r}")))
            return
        self.dms_in += 1
        await self.broker.publish(
            {"kind": "dm", "from": conn.name, "to": to, "text": text, "ts": time.time()}
        )

    def who(self, conn: Connection) -> None:
        assert conn.room is not None
        conn.offer(text_frame(members_event(conn.room, self.presence.members(conn.room))))

    # --- delivery ---------------------------------------------------------------------------

    def _announce(self, kind: str, room: str, name: str) -> None:
        self.deliver({"kind": "presence", "event": kind, "room": room, "name": name})

    def deliver(self, envelope: Envelope) -> None:
        """Fan an envelope out to this process's sockets; never awaits a peer."""
        kind = envelope["kind"]
        if kind == "message":
            self._deliver_message(envelope)
        elif kind == "presence":
            frame = text_frame(
                presence_event(envelope["event"], envelope["room"], envelope["name"])
            )
            receivers = [
                c for c in self.hub.members(envelope["room"]) if c.v1 and c.name != envelope["name"]
            ]
            self.hub.deliver(receivers, frame)
        elif kind == "dm":
            self._deliver_dm(envelope)

    def _deliver_message(self, env: Envelope) -> None:
        msg = StoredMessage(
            env["room"], env["id"], env["from"], env["text"], env["ts"], env.get("action", False)
        )
        v1_frame: Outgoing | None = None
        plain_frame: Outgoing | None = None
        receivers: list[tuple[Connection, Outgoing]] = []
        for conn in self.hub.members(msg.room):
            if not conn.v1:
                if plain_frame is None:
                    text = f"* {msg.sender} {msg.text}" if msg.action else msg.text
                    plain_frame = Outgoing(plain_line(msg.sender, text))
                receivers.append((conn, plain_frame))
            elif conn.pending is not None:
                if len(conn.pending) < self.settings.outbox_size:
                    conn.pending.append(msg)
                elif conn.close_code is None:
                    self.hub.slow_consumers += 1
                    conn.close(
                        CloseCode.SLOW_CONSUMER, "too many messages during replay", flush=False
                    )
            elif msg.id > conn.last_id:
                conn.last_id = msg.id
                if v1_frame is None:
                    v1_frame = text_frame(msg.event())
                receivers.append((conn, v1_frame))
        self.messages_out += self.hub.deliver_each(receivers)

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
