"""Presence: who holds which name, in which room, and the grace period of a dropped client.

Pure state, no I/O and no clock: callers pass ``now`` and schedule the deadlines this module
returns. It must not import anything outside the standard library, ``wschat.protocol`` and
``wschat.names``.

A *holder* owns a name. It is either attached to a live connection (identified by an opaque
``key``) or, after its connection dropped, held in grace until ``grace_until``: still listed
as a member, so a quick reconnect causes no ``left``/``joined`` flicker, and reserved for
whoever presents its resume ``token``.
"""

from __future__ import annotations

import secrets
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from wschat.names import confusable_keys


class Roster:
    """A room's names: a set that also keeps them in order, so listing them sorted costs a
    copy rather than a sort.

    Issue 19: every ``welcome`` lists its room's members; sorting a room of 7,500 names took
    1.2 ms, and filling four rooms of 15,000 sorted 450 million names. Adding or removing a
    name costs a binary search and a move of the list's pointers (microseconds at 15,000).
    """

    __slots__ = ("_names", "_order")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names = set(names)
        self._order = sorted(self._names)

    def add(self, name: str) -> None:
        if name not in self._names:
            self._names.add(name)
            insort(self._order, name)

    def discard(self, name: str) -> None:
        if name in self._names:
            self._names.remove(name)
            del self._order[bisect_left(self._order, name)]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def sorted(self) -> list[str]:
        """Return the names in order (a new list)."""
        return self._order.copy()

    def covers(self, names: Iterable[str]) -> bool:
        """Return whether every name of ``names`` is here."""
        return self._names.issuperset(names)

    def union(self, names: Iterable[str]) -> set[str]:
        return self._names.union(names)


class ClaimResult(Enum):
    NEW = "new"  # the name was free: announce a join
    RESUMED = "resumed"  # the token's holder came back: no announcement in the same room
    TAKEN = "taken"  # somebody else holds the name: refuse
    ADDED = "added"  # one more connection of an authenticated user already here: no announcement


@dataclass(slots=True)
class Holder:
    name: str
    room: str
    token: str
    key: object | None  # the live connection, or None while in grace
    grace_until: float | None = None
    reclaimable: bool = True  # plain clients have no token: their name is freed at once
    shared: bool = False  # held by an authenticated user, who may open several connections
    extra: list[object] = field(default_factory=list)  # its other live connections


@dataclass(frozen=True, slots=True)
class Claim:
    result: ClaimResult
    holder: Holder | None = None
    replaced: object | None = None  # a stale live connection the caller must close (4010)
    previous_room: str | None = None  # the room the holder was in, when it was resumed
    lookalike: str | None = None  # TAKEN because this held name looks the same (issue 7)


@dataclass(slots=True)
class Presence:
    """Names, rooms and grace periods for one chat server."""

    grace_s: float
    holders: dict[str, Holder] = field(default_factory=dict)
    rooms: dict[str, Roster] = field(default_factory=dict)
    lookalikes: dict[str, str] = field(default_factory=dict)  # confusable key -> held name

    def claim(
        self,
        name: str,
        room: str,
        key: object,
        token: str | None,
        *,
        reclaimable: bool = True,
        shared: bool = False,
    ) -> Claim:
        """Try to give ``name`` to the connection ``key`` entering ``room``.

        On ``NEW`` announce ``joined`` to the room; on ``RESUMED`` announce only if
        ``previous_room`` differs from ``room`` (via ``move``, already applied here); close
        ``replaced`` with 4010. On ``TAKEN`` refuse the connection (4009). ``shared`` says the
        caller proved the name is its own (a signed token, issue 7): then a live holder that is
        shared too gets ``key`` as one more connection (``ADDED``, nothing to announce; the
        holder stays listed in its room) and one in grace is resumed without a resume token.
        """
        holder = self.holders.get(name)
        if holder is not None and shared and holder.shared:
            if holder.key is not None:
                holder.extra.append(key)
                return Claim(ClaimResult.ADDED, holder, previous_room=holder.room)
            previous = holder.room
            holder.key = key
            holder.grace_until = None
            self._place(holder, room)
            return Claim(ClaimResult.RESUMED, holder, None, previous)
        if holder is not None:
            if (
                token is None
                or not holder.reclaimable
                or not secrets.compare_digest(token, holder.token)
            ):
                return Claim(ClaimResult.TAKEN)
            replaced = holder.key
            previous = holder.room
            holder.key = key
            holder.grace_until = None
            self._place(holder, room)
            return Claim(ClaimResult.RESUMED, holder, replaced, previous)
        keys = confusable_keys(name)
        for look in keys:
            other = self.lookalikes.get(look)
            if other is not None and other != name:
                return Claim(ClaimResult.TAKEN, lookalike=other)
        holder = Holder(
            name, room, secrets.token_urlsafe(18), key, reclaimable=reclaimable, shared=shared
        )
        self.holders[name] = holder
        for look in keys:
            self.lookalikes[look] = name
        self._roster(room).add(name)
        return Claim(ClaimResult.NEW, holder)

    def move(self, name: str, room: str) -> str | None:
        """Move ``name`` to ``room``; return the room it left (None if it was not held)."""
        holder = self.holders.get(name)
        if holder is None:
            return None
        previous = holder.room
        self._place(holder, room)
        return previous

    def release(self, name: str, key: object, now: float, *, grace: bool) -> Holder | None:
        """Note that connection ``key`` of ``name`` ended.

        Returns the holder when it left for good (announce ``left`` to its room), or None when
        nothing is to be announced: ``key`` was already replaced, or the holder entered grace
        (then schedule ``expire(name, now)`` at its ``grace_until``).
        """
        holder = self.holders.get(name)
        if holder is None:
            return None
        if key in holder.extra:
            holder.extra.remove(key)
            return None
        if holder.key is not key:
            return None
        if holder.extra:  # another connection of the same user carries on
            holder.key = holder.extra.pop(0)
            return None
        if grace and holder.reclaimable and self.grace_s > 0:
            holder.key = None
            holder.grace_until = now + self.grace_s
            return None
        self._drop(holder)
        return holder

    def expire(self, name: str, now: float) -> Holder | None:
        """Drop ``name`` if its grace ran out by ``now``; return it to announce ``left``."""
        holder = self.holders.get(name)
        if holder is None or holder.key is not None or holder.grace_until is None:
            return None
        if holder.grace_until > now:
            return None
        self._drop(holder)
        return holder

    def members(self, room: str) -> list[str]:
        """Return the sorted names in ``room``, those in grace included."""
        roster = self.rooms.get(room)
        return [] if roster is None else roster.sorted()

    def holds(self, name: str) -> bool:
        """Return whether ``name`` is held (live or in grace)."""
        return name in self.holders

    def _place(self, holder: Holder, room: str) -> None:
        if holder.room != room:
            self._unlist(holder)
            holder.room = room
        self._roster(room).add(holder.name)

    def _roster(self, room: str) -> Roster:
        roster = self.rooms.get(room)
        if roster is None:
            roster = self.rooms[room] = Roster()
        return roster

    def _unlist(self, holder: Holder) -> None:
        names = self.rooms.get(holder.room)
        if names is not None:
            names.discard(holder.name)
            if not names:
                del self.rooms[holder.room]

    def _drop(self, holder: Holder) -> None:
        self._unlist(holder)
        del self.holders[holder.name]
        for look in confusable_keys(holder.name):
            if self.lookalikes.get(look) == holder.name:
                del self.lookalikes[look]
