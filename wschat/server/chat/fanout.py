"""Fan-out: an envelope from the broker becomes one frame per dialect, offered to members.

``Fanout`` turns room messages, presence and direct messages into frames, encoding each once
per dialect (plain text, ``wschat.v1`` JSON), and hands them to the hub, whose one delivery
policy closes slow consumers. A v1 member takes room messages in id order: while it is
entering (``Member.pending``) they wait, and with a cluster a gap is repaired from the store
(``Cluster.repair``) instead of skipped. Room messages carry their epoch (issue 14): a
member whose epoch differs is told (``epoch`` event) and goes on from the new epoch's base;
a message of an epoch already replaced here is dropped (its ids mean nothing any more).

Imports the connection layer (hub, frames), ``chat.member`` and ``chat.cluster``; no socket
type, nothing of the service, the handlers or the app.
"""

from __future__ import annotations

from typing import cast

from wschat.broker import Envelope
from wschat.protocol import dm_event, epoch_event, plain_line, presence_event
from wschat.rooms import Presence
from wschat.server.chat.cluster import Cluster
from wschat.server.chat.member import Member
from wschat.server.conn.hub import Hub
from wschat.server.conn.outgoing import Outgoing, text_frame
from wschat.server.settings import ServerSettings
from wschat.store import Replay, StoredMessage

MAX_TRACKED_ROOMS = 10_000  # rooms whose epochs this node remembers (oldest forgotten first)
MAX_EPOCHS = 8  # replaced epochs remembered per room


class Fanout:
    """Deliver envelopes to this process's members; one per ``ChatService``."""

    def __init__(
        self,
        hub: Hub,
        presence: Presence,
        connections_by_name: dict[str, Member],
        settings: ServerSettings,
        cluster: Cluster | None,
    ) -> None:
        self.hub = hub
        self.presence = presence
        self.connections_by_name = connections_by_name
        self.settings = settings
        self.cluster = cluster
        # Plain ints read by the metrics collector at scrape time (see metrics.py).
        self.messages_out = 0
        self.dms_out = 0
        self.presence_suppressed = 0  # joined/left not sent because the room was too big
        self.epoch_changes = 0  # members told that their room's sequence was reset
        self._epochs: dict[str, list[str]] = {}  # room -> epochs seen here, newest last

    def members(self, room: str) -> set[Member]:
        """Return ``room``'s members here: the chat layer files only ``Member``s in the hub."""
        return cast("set[Member]", self.hub.members(room))

    def deliver(self, envelope: Envelope) -> None:
        """Fan an envelope from the broker out to this process's sockets; never awaits a peer."""
        if self.cluster is not None and not self.cluster.accept(envelope):
            return
        self.fan_out(envelope)

    def fan_out(self, envelope: Envelope) -> None:
        """Fan ``envelope`` out here, without asking the cluster (it happened on this node)."""
        kind = envelope["kind"]
        if kind == "message":
            self._deliver_message(envelope)
        elif kind == "presence":
            self._deliver_presence(envelope)
        elif kind == "dm":
            self._deliver_dm(envelope)

    def fan_out_presence(self, kind: str, room: str, name: str) -> None:
        """Tell this process's members of ``room`` that ``name`` joined or left."""
        self.fan_out({"kind": "presence", "event": kind, "room": room, "name": name})

    def _deliver_presence(self, envelope: Envelope) -> None:
        room, name = envelope["room"], envelope["name"]
        members = self.members(room)
        size = max(len(members), len(self.presence.rooms.get(room, ())))
        if size > self.settings.presence_limit:
            # Past the limit, presence is quadratic (N arrivals x N members): clients of big
            # rooms ask with `who` instead (docs/protocol.md).
            self.presence_suppressed += 1
            return
        # A connection still entering gets the members in its welcome instead.
        receivers = [c for c in members if c.v1 and c.name != name and c.pending is None]
        frame = text_frame(presence_event(envelope["event"], room, name))
        self.hub.deliver(receivers, frame)

    def _deliver_message(self, env: Envelope) -> None:
        msg = StoredMessage(
            env["room"],
            env["id"],
            env["from"],
            env["text"],
            env["ts"],
            env.get("action", False),
            env.get("cid"),
            env.get("epoch", ""),
            env.get("base", 0),
        )
        self.deliver_stored(msg)

    def note_epoch(self, room: str, epoch: str) -> bool:
        """Note that ``room``'s sequence is of ``epoch``; return False if that epoch was
        already replaced by a newer one here (only the newest one is live)."""
        if not epoch:
            return True  # the store has no epochs
        seen = self._epochs.get(room)
        if seen is not None and seen[-1] == epoch:
            return True  # the hot path: the room's current epoch
        seen = self._epochs.pop(room, None)  # re-inserted last: oldest changed first
        if seen is None:
            seen = [epoch]
        elif seen[-1] != epoch:
            if epoch in seen:
                self._epochs[room] = seen
                return False
            seen = [*seen[1 - MAX_EPOCHS :], epoch]
        self._epochs[room] = seen
        if len(self._epochs) > MAX_TRACKED_ROOMS:
            del self._epochs[next(iter(self._epochs))]
        return True

    def adopt_epoch(self, conn: Member, epoch: str, base: int) -> bool:
        """Move ``conn`` to ``epoch`` (its ids are above ``base``) and tell its client with
        an ``epoch`` event; return whether it had another one (a connection that had none
        just takes it)."""
        old, conn.epoch = conn.epoch, epoch
        if not old:
            return False
        awaiting = conn.awaiting or []
        unshown = [m for m in awaiting if m.epoch == old and m.id > conn.last_id]
        conn.awaiting = [m for m in awaiting if m.epoch == epoch] or None  # stored in it
        conn.last_id = base
        self.epoch_changes += 1
        self.hub.send(conn, text_frame(epoch_event(conn.room, epoch, base)))
        if unshown and self.cluster is not None:
            # Its own says of the old epoch that it was never shown: it waits for each
            # one's echo, which no longer comes. Each is answered (echo or error).
            self.cluster.settle_unshown(conn, unshown)
        return True

    def deliver_stored(self, msg: StoredMessage, *, plain: bool = True) -> None:
        """Queue ``msg`` for its room's members here; ``plain=False`` skips plain clients
        (a repair: they had their copy, or cannot resume anyway).

        The hot path of fan-out: one frame per dialect, one pass over the members to pick
        the receivers, then one ``Hub.deliver`` per dialect.
        """
        gap = False
        v1_receivers: list[Member] = []
        plain_receivers: list[Member] = []
        hub = self.hub
        take = v1_receivers.append  # bound once: this loop runs once per member per message
        msg_id = msg.id
        epoch = msg.epoch
        if epoch and not self.note_epoch(msg.room, epoch):
            return  # of a sequence reset since: a repair reads what replaced it
        for conn in self.members(msg.room):
            if not conn.v1:
                if plain:
                    plain_receivers.append(conn)
                continue
            if conn.pending is not None:
                if len(conn.pending) < self.settings.outbox_size:
                    conn.pending.append(msg)
                else:
                    hub.drop_slow(conn, "too many messages during replay")
                continue
            if epoch and conn.epoch != epoch:
                self.adopt_epoch(conn, epoch, msg.base)
            if msg_id > conn.last_id:
                if self.cluster is not None and msg_id > conn.last_id + 1:
                    gap = True  # never skip an id: fetch the missing ones first
                    continue
                conn.last_id = msg_id
                take(conn)
        direct = hub.fresh_pass()
        if v1_receivers:
            frame = text_frame(msg.event())
            self.messages_out += hub.deliver(v1_receivers, frame, direct=direct)
        if plain_receivers:
            text = f"* {msg.sender} {msg.text}" if msg.action else msg.text
            frame = Outgoing(plain_line(msg.sender, text))
            self.messages_out += hub.deliver(plain_receivers, frame, direct=direct)
        if gap and self.cluster is not None:
            self.cluster.repair(msg.room)

    def catch_up(self, room: str, replay: Replay) -> bool:
        """Deliver a repair's ``replay`` to ``room``'s live v1 members (``ClusterHost``);
        return whether some were moved to a new epoch (and need a read from its base)."""
        if replay.epoch and not self.note_epoch(room, replay.epoch):
            return False  # read before a reset that this node has seen since
        moved = False
        for conn in self.members(room):
            if conn.v1 and conn.pending is None and conn.epoch != replay.epoch:
                moved = self.adopt_epoch(conn, replay.epoch, replay.base) or moved
        if moved:
            return True  # what was read follows the old ids: read again from the base
        if replay.gap and replay.messages:
            # Older than the stored history: what is gone is gone; go on from there.
            first = replay.messages[0].id - 1
            for conn in self.members(room):
                if conn.v1 and conn.pending is None:
                    conn.last_id = max(conn.last_id, first)
        for msg in replay.messages:
            self.deliver_stored(msg, plain=False)
        return False

    def cursor(self, room: str) -> int | None:
        """Return the oldest ``last_id`` of ``room``'s live v1 members (``ClusterHost``)."""
        ids = [c.last_id for c in self.members(room) if c.v1 and c.pending is None]
        return min(ids) if ids else None

    def rooms(self) -> list[str]:
        """Return the rooms with a v1 member here (``ClusterHost``)."""
        return [room for room in self.hub.rooms if any(c.v1 for c in self.members(room))]

    def _deliver_dm(self, env: Envelope) -> None:
        self.deliver_dm(env, env["to"], env["from"])

    def deliver_dm(self, env: Envelope, *names: str) -> None:
        """Deliver the DM ``env`` to every connection of ``names`` here."""
        receivers: list[tuple[Member, Outgoing]] = []
        v1_frame = text_frame(dm_event(env["from"], env["to"], env["text"], env["ts"]))
        for name in dict.fromkeys(names):
            for conn in self.connections_of(name):
                if conn.v1:
                    receivers.append((conn, v1_frame))
                else:
                    line = f"DM from {env['from']}: {env['text']}"
                    receivers.append((conn, Outgoing(line)))
        self.dms_out += self.hub.deliver_each(receivers)

    def connections_of(self, name: str) -> list[Member]:
        """Return every live connection of ``name`` here (several for a signed-in user)."""
        conn = self.connections_by_name.get(name)
        found = [conn] if conn is not None else []
        holder = self.presence.holders.get(name)
        if holder is not None:
            found += [c for c in holder.extra if isinstance(c, Member) and c is not conn]
        return found
