"""The pure presence state: claims, grace periods, moves (no event loop)."""

from __future__ import annotations

import random

from wschat.rooms import ClaimResult, Presence, Roster


def test_new_claim_then_taken_without_token() -> None:
    p = Presence(grace_s=5)
    first = p.claim("alice", "lobby", "k1", None)
    assert first.result is ClaimResult.NEW
    assert p.claim("alice", "lobby", "k2", None).result is ClaimResult.TAKEN
    assert p.claim("alice", "lobby", "k2", "wrong").result is ClaimResult.TAKEN
    assert p.members("lobby") == ["alice"]


def test_token_resumes_and_names_the_stale_key() -> None:
    p = Presence(grace_s=5)
    token = p.claim("alice", "lobby", "k1", None).holder.token  # type: ignore[union-attr]
    claim = p.claim("alice", "ops", "k2", token)
    assert (claim.result, claim.replaced, claim.previous_room) == (
        ClaimResult.RESUMED,
        "k1",
        "lobby",
    )
    assert p.members("lobby") == [] and p.members("ops") == ["alice"]
    assert p.release("alice", "k1", now=0, grace=True) is None  # the stale key changes nothing
    assert p.holds("alice")


def test_grace_then_expiry() -> None:
    p = Presence(grace_s=5)
    p.claim("alice", "lobby", "k1", None)
    assert p.release("alice", "k1", now=100, grace=True) is None
    assert p.members("lobby") == ["alice"]
    assert p.expire("alice", now=104) is None
    left = p.expire("alice", now=105)
    assert left is not None and left.room == "lobby"
    assert not p.holds("alice")


def test_plain_clients_are_not_reclaimable() -> None:
    p = Presence(grace_s=5)
    holder = p.claim("pete", "lobby", "k1", None, reclaimable=False).holder
    assert holder is not None
    assert p.claim("pete", "lobby", "k2", holder.token).result is ClaimResult.TAKEN
    assert p.release("pete", "k1", now=0, grace=True) is holder  # no grace: left at once


def test_move_returns_the_old_room() -> None:
    p = Presence(grace_s=0)
    p.claim("alice", "lobby", "k1", None)
    assert p.move("alice", "ops") == "lobby"
    assert p.members("ops") == ["alice"]
    assert p.move("nobody", "ops") is None


# --- issue 7: look-alike names and signed-in users with several connections -----------------


def test_a_look_alike_of_a_held_name_is_taken() -> None:
    p = Presence(grace_s=5)
    p.claim("alice", "lobby", "k1", None)
    claim = p.claim("\u0430lice", "lobby", "k2", None)  # Cyrillic a
    assert (claim.result, claim.lookalike) == (ClaimResult.TAKEN, "alice")
    assert p.claim("ALICE", "lobby", "k3", None).result is ClaimResult.TAKEN
    p.release("alice", "k1", now=0, grace=False)
    assert p.claim("\u0430lice", "lobby", "k2", None).result is ClaimResult.NEW


def test_a_signed_in_user_may_hold_several_connections() -> None:
    p = Presence(grace_s=5)
    assert p.claim("alice", "lobby", "k1", None, shared=True).result is ClaimResult.NEW
    assert p.claim("alice", "lobby", "k2", None, shared=True).result is ClaimResult.ADDED
    assert p.claim("alice", "lobby", "k3", None).result is ClaimResult.TAKEN  # not signed in
    assert p.members("lobby") == ["alice"]
    assert p.release("alice", "k1", now=0, grace=True) is None  # k2 carries on, no grace
    assert p.holders["alice"].key == "k2" and p.holders["alice"].grace_until is None
    assert p.release("alice", "k2", now=0, grace=True) is None  # the last one: grace
    assert p.holders["alice"].grace_until == 5
    resumed = p.claim("alice", "lobby", "k4", None, shared=True)  # no resume token needed
    assert (resumed.result, resumed.replaced) == (ClaimResult.RESUMED, None)
    left = p.release("alice", "k4", now=1, grace=False)
    assert left is not None and not p.holds("alice")


def test_a_roster_lists_its_names_in_order_whatever_was_added_and_removed() -> None:
    """Issue 19: ``welcome`` lists a room's members; the roster keeps them sorted instead
    of sorting them at every welcome."""
    rng = random.Random(19)
    roster, names = Roster(["m", "a"]), {"m", "a"}
    for _ in range(2_000):
        name = rng.choice("abcdefghij") + rng.choice("éz0")
        if rng.random() < 0.6:
            roster.add(name)
            names.add(name)
        else:
            roster.discard(name)
            names.discard(name)
        assert roster.sorted() == sorted(names) and len(roster) == len(names)
    assert list(roster) == sorted(names) and all(n in roster for n in names)
    assert roster.covers(names) and not roster.covers(names | {"zz"})
