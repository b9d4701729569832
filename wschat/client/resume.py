"""The resume state of one chat session, without I/O: what was seen, what is owed, what goes next.

``Resume`` remembers the last message id seen per room (and the room's epoch, issue 14), the
``token`` of the last ``welcome``, the lines typed and not yet sent (the outbox, bounded), the
lines sent and not yet seen back (unconfirmed, by ``cid``) and the rooms joined (for
``/leave``). ``ChatSession`` (``client.session``) feeds it the server's events and asks it what
to send; it owns the socket, the clock and the queues the UI reads.

The rules it keeps:

- A reconnect asks ``?room=R&since=ID&epoch=E&resume=TOKEN`` (``query``); a message with an id
  already seen in its room is not shown again. Going back to a room with ``join`` asks the same
  way (``since``, filled in by ``next_command``).
- The first message after a welcome into a room seen before must follow the last id seen
  there; when it skips some, ``message`` says how many were missed.
- A ``say`` is unconfirmed from the moment it is handed to the connection until the server's
  ``message`` with its ``cid`` comes back; one seen back also settles every line sent before
  it (the server handles a connection's messages in order: those were refused, with an
  ``error``). When the replay after a welcome is read, the lines still unconfirmed did not get
  through: they go back to the front of the outbox, before anything typed since.
- A ``join`` drops the unconfirmed lines: they are not sent again into another room. Any other
  command leaves the outbox only once handed to the connection (``handed``).

Pure: imports the protocol and ``client.commands`` only.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from wschat.client.commands import UsageError
from wschat.protocol import Command, Join, Say

ROOMS_REMEMBERED = 100  # rooms ``/leave`` can go back through, the newest


@dataclass(frozen=True, slots=True)
class Missed:
    """Messages ``first`` to ``last`` of ``room`` came after the last one seen and were not
    replayed."""

    room: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Seen:
    """What one ``message`` event means: whether to show it, and what changed."""

    show: bool
    missed: Missed | None = None
    confirmed: bool = False  # it settled unconfirmed lines: the outbox changed
    caught_up: bool = False  # it ended the replay: unconfirmed lines went back to the outbox


class Resume:
    """The state a session carries from one connection (and one room) to the next."""

    def __init__(self, room: str, outbox_lines: int, history: bool = True) -> None:
        self.outbox_lines = outbox_lines
        # False: the replay of the first welcome (said before this client came) is not shown.
        self.history = history
        self.last_seen: dict[str, int] = {}
        self.epochs: dict[str, str] = {}  # room -> the epoch of last_seen (issue 14)
        self.token = ""
        self.welcomed = False  # a welcome came, on any connection
        self.outbox: deque[Command] = deque()
        # Lines handed to a connection and not seen back yet, by cid, oldest first.
        self.unconfirmed: dict[str, Say] = {}
        # The rooms joined, each once, the current one last: ``/leave`` goes back through them.
        self.trail: list[str] = [room]
        self._replay_left = 0  # replayed messages still to come after the last welcome
        self._hide_replay = False  # the replay being read is history the user asked not to see
        # The last id seen in the room just welcomed into, when this client had been there
        # before: the first message after the welcome must follow it, or some were missed.
        self._expect_after: int | None = None
        self._cids = (f"{uuid.uuid4().hex[:12]}-{n}" for n in itertools.count(1))

    # --- what the user does -----------------------------------------------------------------

    def queue(self, command: Command) -> bool:
        """Queue ``command`` (a ``say`` gets its ``cid``); False when the outbox is full."""
        if len(self.outbox) >= self.outbox_lines:
            return False
        if isinstance(command, Say) and command.cid is None:
            command = replace(command, cid=next(self._cids))
        if isinstance(command, Join):
            self._visit(command.room)
        self.outbox.append(command)
        return True

    def leave(self) -> Join | UsageError:
        """Return the ``join`` back to the room before this one (``/leave``), forgetting this
        one; or, in the only room this session has been in, why there is nowhere to go.

        One room at a time: leaving a room means being in another. Queue the ``join`` as typed
        ones are: it asks with ``since`` when the room was seen before.
        """
        if len(self.trail) < 2:
            return UsageError(f"#{self.trail[-1]} is your only room: /quit leaves it")
        self.trail.pop()
        return Join(self.trail[-1])

    @property
    def queued(self) -> list[Command]:
        """Commands not known to have arrived, oldest first: sent but not seen back, then
        not sent yet."""
        return [*self.unconfirmed.values(), *self.outbox]

    @property
    def owed(self) -> bool:
        """Whether a command is still to be sent, or a line said still to come back."""
        return bool(self.outbox or self.unconfirmed)

    # --- what goes to the server ------------------------------------------------------------

    def query(self, room: str) -> dict[str, str | int]:
        """Return the query of a connection to ``room``: ``since``, ``epoch``, ``resume``."""
        query: dict[str, str | int] = {"room": room}
        if room in self.last_seen:
            query["since"] = self.last_seen[room]
        if self.token:
            query["resume"] = self.token
        if "since" in query and room in self.epochs:
            query["epoch"] = self.epochs[room]
        return query

    def next_command(self) -> Command | None:
        """Return the command to hand to the connection now, or None when none is queued.

        A ``say`` leaves the outbox at once and is unconfirmed from now on: if the connection
        drops before it comes back, the next replay tells whether it got through. Anything
        else stays queued until ``handed``: one cut off by a drop is sent again.
        """
        if not self.outbox:
            return None
        command = self.outbox[0]
        if isinstance(command, Say) and command.cid is not None:
            self.outbox.popleft()
            self.unconfirmed[command.cid] = command
            return command
        if isinstance(command, Join):
            # Lines for the old room are not sent again into the new one.
            self.unconfirmed.clear()
            if command.since is None and command.room in self.last_seen:
                # Back to a room seen before: ask for what came since (issue 17).
                command = replace(
                    command,
                    since=self.last_seen[command.room],
                    epoch=self.epochs.get(command.room),
                )
        return command

    def handed(self, command: Command) -> None:
        """``command`` (from ``next_command``) is handed to the connection."""
        if not (isinstance(command, Say) and command.cid is not None):
            self.outbox.popleft()

    # --- what comes from the server ---------------------------------------------------------

    def welcome(self, event: Mapping[str, Any], room: str) -> str:
        """Take a ``welcome`` (into ``room`` unless it names one); return the room."""
        room = str(event.get("room") or room)
        self.token = str(event.get("token") or self.token)
        self._visit(room)
        self._expect_after = self.last_seen.get(room)
        self._hide_replay = not self.welcomed and not self.history
        latest = event.get("latest")
        epoch = event.get("epoch")
        if isinstance(epoch, str) and epoch:
            if self.epochs.get(room, epoch) != epoch:
                self.last_seen.pop(room, None)  # another sequence: our ids mean nothing there
            self.epochs[room] = epoch
        replay = event.get("replay")
        replayed = replay if isinstance(replay, int) and replay > 0 else 0
        if room not in self.last_seen and isinstance(latest, int):
            # First visit: messages replayed now will be recorded one by one; start at the
            # id just before the replay, so a later reconnect asks for exactly what follows.
            self.last_seen[room] = latest - (replay if isinstance(replay, int) else 0)
        self.welcomed = True
        self._replay_left = replayed
        if self._replay_left == 0:
            self.catch_up()
        return room

    @property
    def caught_up(self) -> bool:
        """Whether the replay after the last welcome is read (unconfirmed lines are settled)."""
        return self._replay_left == 0

    def message(self, event: Mapping[str, Any], me: str) -> Seen:
        """Take a ``message`` event (``me`` is the user's name); say whether to show it."""
        confirmed = event.get("from") == me and self.confirm(event.get("cid"))
        hidden = self._replay_left > 0 and self._hide_replay
        caught_up = False
        if self._replay_left > 0:
            self._replay_left -= 1
            if self._replay_left == 0:
                self.catch_up()
                caught_up = True
        room, msg_id = event.get("room"), event.get("id")
        missed = None
        if isinstance(room, str) and isinstance(msg_id, int):
            if msg_id <= self.last_seen.get(room, -1):
                # Replayed after a reconnect, and shown already.
                return Seen(False, None, confirmed, caught_up)
            missed = self._missed(room, msg_id)
            self.last_seen[room] = msg_id
        return Seen(not hidden, missed, confirmed, caught_up)

    def epoch(self, event: Mapping[str, Any]) -> None:
        """Take an ``epoch`` event: the room's ids were reset (issue 14), the new ones follow
        ``base``."""
        room, epoch, base = event.get("room"), event.get("epoch"), event.get("base")
        if isinstance(room, str) and isinstance(epoch, str) and isinstance(base, int):
            self.epochs[room] = epoch
            self.last_seen[room] = base

    def confirm(self, cid: object) -> bool:
        """Settle ``cid`` and every line sent before it; return whether it was unconfirmed."""
        if not isinstance(cid, str) or cid not in self.unconfirmed:
            return False
        for sent in list(self.unconfirmed):
            del self.unconfirmed[sent]
            if sent == cid:
                break
        return True

    def catch_up(self) -> None:
        """The replay is read: the lines it did not show go out again, first."""
        self.outbox.extendleft(reversed(self.unconfirmed.values()))
        self.unconfirmed.clear()

    # --- helpers ----------------------------------------------------------------------------

    def _missed(self, room: str, msg_id: int) -> Missed | None:
        """Return what was missed when the first message after a welcome skips ids.

        Ids grow by one per room (docs/protocol.md), so coming back to a room (a ``join``
        or a reconnect) with ids last+1 .. first-1 not replayed means those were missed: a
        server older than ``join``'s ``since``, or a replay capped by ``--replay-max``.
        """
        expected, self._expect_after = self._expect_after, None
        if expected is None or msg_id <= expected + 1:
            return None
        return Missed(room, expected + 1, msg_id - 1)

    def _visit(self, room: str) -> None:
        """Note ``room`` as the current one, last of the trail ``leave`` goes back through."""
        if self.trail[-1] == room:
            return
        if room in self.trail:
            self.trail.remove(room)
        self.trail.append(room)
        del self.trail[:-ROOMS_REMEMBERED]
