"""Turn a line the user typed into a protocol command, a local action or a usage error.

Pure: no I/O, and it imports nothing outside ``wschat.protocol`` and ``wschat.errors``, so the
terminal UI and its tests share it. ``//text`` sends ``/text`` as a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wschat.errors import ProtocolError
from wschat.protocol import (
    Command,
    Dm,
    Join,
    Rooms,
    Say,
    Who,
    check_name,
    check_room,
    check_text,
)


class Action(StrEnum):
    """What a slash command asks of the client itself, with nothing sent."""

    HELP = "help"
    QUIT = "quit"
    EXPAND = "expand"
    LEAVE = "leave"  # back to the room before this one (the client remembers which)


@dataclass(frozen=True, slots=True)
class UsageError:
    """A line that cannot be sent as typed; ``message`` says why and how to fix it."""

    message: str


Parsed = Command | Action | UsageError

COMMANDS: dict[str, str] = {
    "/help": "show this help",
    "/who": "list the members of this room",
    "/join": "ROOM  move to another room",
    "/leave": "go back to the room you were in before (one room at a time)",
    "/rooms": "list the rooms with members (the 100 busiest)",
    "/msg": "NAME TEXT  send a direct message",
    "/me": "ACTION  send an emote (/me waves)",
    "/expand": "show the newest folded message whole",
    "/nick": "there is none: your name is who you are here; /quit and join as another",
    "/quit": "leave (Ctrl-D, or Ctrl-C on an empty line, works too)",
}

NO_NICK = (
    "there is no /nick: a name is the identity the server (and a --token) vouches for, so it "
    "cannot change during a session; /quit, then 'wschat join NEWNAME'"
)

HELP_TEXT = "\n".join(
    ["commands:"]
    + [f"  {cmd} {desc}" for cmd, desc in COMMANDS.items()]
    + [
        "  //text  send a line that starts with /",
        "Tab completes commands and names; Alt-Enter starts a new line in the message;",
        "PageUp/PageDown (or the mouse wheel) scroll; Ctrl-C clears the line.",
    ]
)


def parse_text(raw: str) -> Say | UsageError:
    """Return ``raw`` as a message to say, or a ``UsageError`` when it cannot be sent."""
    try:
        return Say(check_text(raw))
    except ProtocolError as exc:
        return UsageError(exc.detail)


def parse_line(line: str) -> Parsed | None:
    """Return what ``line`` asks for, or ``None`` for a blank line (nothing to do).

    Arguments are validated here with the protocol's own checks, so a ``UsageError`` is shown
    to the user at once instead of a round trip ending in an ``error`` event.
    """
    if not line.strip():
        return None
    if line.startswith("//"):
        return parse_text(line[1:])
    if not line.startswith("/"):
        return parse_text(line)
    head, _, rest = line.partition(" ")
    cmd = head.lower()
    rest = rest.strip()
    if cmd in ("/help", "/?"):
        return Action.HELP
    if cmd in ("/quit", "/exit", "/q"):
        return Action.QUIT
    if cmd == "/expand":
        return Action.EXPAND
    if cmd == "/who":
        return Who()
    if cmd == "/rooms":
        return Rooms()
    if cmd == "/leave":
        return Action.LEAVE
    if cmd == "/nick":
        return UsageError(NO_NICK)
    if cmd == "/join":
        if not rest or " " in rest:
            return UsageError("usage: /join ROOM")
        try:
            return Join(check_room(rest.removeprefix("#")))
        except ProtocolError as exc:
            return UsageError(f"invalid room {rest!r}: {exc.detail}")
    if cmd == "/msg":
        to, _, text = rest.partition(" ")
        text = text.strip()
        if not to or not text:
            return UsageError("usage: /msg NAME TEXT")
        try:
            to = check_name(to)
            return Dm(to, check_text(text))
        except ProtocolError as exc:
            return UsageError(exc.detail)
    if cmd == "/me":
        if not rest:
            return UsageError("usage: /me ACTION")
        said = parse_text(rest)
        return Say(said.text, action=True) if isinstance(said, Say) else said
    return UsageError(f"unknown command {head!r}: try /help (//text sends a line starting with /)")
