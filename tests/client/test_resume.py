"""The resume state of a session (``client.resume``), pure: no socket, no event loop.

Each test plays what a server would send (welcomes, replays, messages, epochs) and checks what
the session would show, ask for and send again.
"""

from __future__ import annotations

from typing import Any

from wschat.client.commands import UsageError
from wschat.client.resume import Missed, Resume
from wschat.protocol import Command, Join, Say, Who


def welcome(room: str, latest: int, replay: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "welcome", "room": room, "latest": latest, "replay": replay, **extra}


def message(room: str, msg_id: int, sender: str = "bob", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "room": room, "id": msg_id, "from": sender, **extra}


def send_all(resume: Resume) -> list[Command]:
    """Hand every queued command to a connection that takes them all."""
    sent = []
    while (command := resume.next_command()) is not None:
        resume.handed(command)
        sent.append(command)
    return sent


def test_a_reconnect_asks_for_what_followed_and_shows_nothing_twice() -> None:
    resume = Resume("lobby", outbox_lines=10)
    assert resume.query("lobby") == {"room": "lobby"}
    resume.welcome(welcome("lobby", 7, replay=2, epoch="e1", token="tok"), "lobby")
    assert resume.last_seen == {"lobby": 5}  # just before the replay
    assert [resume.message(message("lobby", i), "alice").show for i in (6, 7)] == [True, True]
    assert resume.query("lobby") == {"room": "lobby", "since": 7, "resume": "tok", "epoch": "e1"}
    # The next connection replays 7 again (say, a since off by one): it is not shown twice.
    resume.welcome(welcome("lobby", 8, replay=2, epoch="e1"), "lobby")
    assert [resume.message(message("lobby", i), "alice").show for i in (7, 8)] == [False, True]
    assert resume.token == "tok"  # kept when a welcome has none


def test_coming_back_to_a_room_says_how_many_were_missed() -> None:
    resume = Resume("news", outbox_lines=10)
    resume.welcome(welcome("news", 10), "news")
    resume.welcome(welcome("ops", 0), "ops")
    resume.queue(Join("news"))
    # The join back asks with since (and the epoch the id belongs to, when known).
    assert send_all(resume) == [Join("news", since=10)]
    resume.welcome(welcome("news", 40, replay=20), "news")
    seen = resume.message(message("news", 21), "alice")
    assert seen.missed == Missed("news", 11, 20) and seen.missed.count == 10
    assert resume.message(message("news", 22), "alice").missed is None  # only the first is checked


def test_a_new_epoch_forgets_the_old_ids() -> None:
    resume = Resume("lobby", outbox_lines=10)
    resume.welcome(welcome("lobby", 50, epoch="e1"), "lobby")
    resume.welcome(welcome("lobby", 3, replay=3, epoch="e2"), "lobby")
    assert resume.last_seen == {"lobby": 0}
    assert resume.message(message("lobby", 1), "alice").show  # not taken for an id seen in e1
    resume.epoch({"type": "epoch", "room": "lobby", "epoch": "e3", "base": 60})
    assert resume.query("lobby")["since"] == 60 and resume.query("lobby")["epoch"] == "e3"


def test_a_line_seen_in_the_replay_is_not_sent_again_the_others_go_first() -> None:
    resume = Resume("lobby", outbox_lines=10)
    resume.welcome(welcome("lobby", 0), "lobby")
    for text in ("one", "two", "three"):
        resume.queue(Say(text))
    sent = send_all(resume)
    assert [c.text for c in sent if isinstance(c, Say)] == ["one", "two", "three"]
    assert len(resume.unconfirmed) == 3 and resume.owed
    resume.queue(Say("typed offline"))
    # The connection dropped; the replay of the next one shows "one" only.
    resume.welcome(welcome("lobby", 1, replay=1), "lobby")
    assert not resume.caught_up
    first = sent[0]
    assert isinstance(first, Say)
    seen = resume.message(message("lobby", 1, "alice", cid=first.cid), "alice")
    assert seen.confirmed and seen.caught_up and resume.caught_up
    assert [c.text for c in resume.queued if isinstance(c, Say)] == [
        "two",
        "three",
        "typed offline",
    ]


def test_a_line_seen_back_settles_every_line_sent_before_it() -> None:
    resume = Resume("lobby", outbox_lines=10)
    resume.welcome(welcome("lobby", 0), "lobby")
    resume.queue(Say("refused"))
    resume.queue(Say("stored"))
    refused, stored = send_all(resume)
    assert isinstance(stored, Say) and isinstance(refused, Say)
    assert resume.message(message("lobby", 1, "alice", cid=stored.cid), "alice").confirmed
    assert resume.queued == [] and not resume.owed
    assert not resume.confirm(refused.cid)  # already settled


def test_a_join_drops_the_lines_owed_to_the_old_room_and_waits_to_be_handed() -> None:
    resume = Resume("lobby", outbox_lines=10)
    resume.welcome(welcome("lobby", 0), "lobby")
    resume.queue(Say("for the lobby"))
    send_all(resume)
    resume.queue(Join("ops"))
    resume.queue(Who())
    join = resume.next_command()
    assert join == Join("ops") and resume.unconfirmed == {}
    # Not handed (the connection dropped): it is still first in line.
    assert resume.next_command() == Join("ops")
    resume.handed(Join("ops"))
    assert resume.next_command() == Who()


def test_the_first_replay_is_hidden_without_history_later_ones_are_not() -> None:
    resume = Resume("lobby", outbox_lines=10, history=False)
    resume.welcome(welcome("lobby", 2, replay=2), "lobby")
    assert [resume.message(message("lobby", i), "alice").show for i in (1, 2)] == [False, False]
    assert resume.message(message("lobby", 3), "alice").show  # live
    resume.welcome(welcome("lobby", 4, replay=1), "lobby")
    assert resume.message(message("lobby", 4), "alice").show  # missed while away: shown


def test_the_outbox_is_bounded() -> None:
    resume = Resume("lobby", outbox_lines=2)
    assert resume.queue(Say("a")) and resume.queue(Say("b"))
    assert not resume.queue(Say("c"))
    assert [c.text for c in resume.queued if isinstance(c, Say)] == ["a", "b"]


def test_leave_goes_back_through_the_rooms_joined() -> None:
    resume = Resume("lobby", outbox_lines=10)
    assert resume.leave() == UsageError("#lobby is your only room: /quit leaves it")
    for room in ("a", "b", "a", "c"):
        resume.queue(Join(room))
    assert resume.trail == ["lobby", "b", "a", "c"]  # each room once, the newest last
    assert resume.leave() == Join("a")
    resume.queue(Join("a"))  # as the client sends it
    resume.welcome(welcome("a", 0), "a")
    assert resume.leave() == Join("b")
    resume.queue(Join("b"))
    assert resume.leave() == Join("lobby")
    resume.queue(Join("lobby"))
    assert isinstance(resume.leave(), UsageError)
