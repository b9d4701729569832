"""The wire format: close codes, limits, the plain text format and the ``wschat.v1`` JSON protocol.

This module owns what travels on the wire and how it is validated. It is pure: no I/O, no
event loop, and it imports nothing outside the standard library and ``wschat.names`` (whose
confusables data comes from ``disarm``), so the server, the terminal
client, the browser page's tests and the load tester all share it. ``docs/protocol.md`` is the
human-readable copy of this file; keep them in step.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from wschat.errors import ProtocolError
from wschat.names import refusal

SUBPROTOCOL = "wschat.v1"
DEFAULT_ROOM = "lobby"
MAX_NAME_CHARS = 32
MAX_ROOM_CHARS = 64
MAX_EPOCH_CHARS = 64  # a ``?epoch=`` longer than this is cut (it only has to differ)
MAX_TEXT_CHARS = 4000
MAX_MESSAGE_BYTES = 64 * 1024


class CloseCode(IntEnum):
    """Every close code the server sends (RFC 6455 §7.4.1, plus our 4xxx range)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down; reconnect and resume
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007  # text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # a connection still open when the server stops (after the drain)
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4001  # the connection's outbox overflowed: it did not read fast enough
    INVALID_NAME = 4003  # the name or room fails validation
    NAME_TAKEN = 4009  # another live connection holds the name
    REPLACED = 4010  # the same user reconnected with its resume token; this socket is stale
    TOKEN_EXPIRED = 4011  # the signed token the connection opened with has expired (--secret)


class ErrorCode(StrEnum):
    """Codes of ``error`` events; the connection stays open after each."""

    BAD_JSON = "bad_json"
    BAD_TYPE = "bad_type"
    BAD_FIELD = "bad_field"
    TOO_LONG = "too_long"
    NO_SUCH_USER = "no_such_user"
    BAD_ROOM = "bad_room"
    BINARY_UNSUPPORTED = "binary_unsupported"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"  # Redis down or SQLite locked: the message was not accepted
    NOT_DELIVERED = "not_delivered"  # a DM whose recipient's node did not answer, or box full


# --- the plain text format of the article ---------------------------------------------------


def echo_text(text: str) -> str:
    """Return the reply of the ``/ws`` echo endpoint to ``text``."""
    return f"You said: {text}"


def echo_bytes(data: bytes) -> bytes:
    """Return the reply of the ``/ws`` echo endpoint to a binary frame."""
    return b"You said: " + data


def plain_line(name: str, text: str) -> str:
    """Return how a room message is shown to a plain (non-JSON) client."""
    return f"Client {name}: {text}"


# --- names ------------------------------------------------------------------------------------


def _check_label(raw: object, what: str, max_chars: int) -> str:
    if not isinstance(raw, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{what} must be a string")
    value = unicodedata.normalize("NFKC", raw)
    if not value:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{what} must not be empty")
    if len(value) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LONG, f"{what} is longer than {max_chars} characters")
    for char in value:
        # C*: control, format (zero-width, bidi overrides), surrogate, private, unassigned;
        # Z*: every kind of space. Either makes a name ambiguous on screen.
        category = unicodedata.category(char)
        if category[0] in "CZ":
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{what} contains a forbidden character U+{ord(char):04X}"
            )
    return value


def check_name(raw: object) -> str:
    """Return ``raw`` as a valid user name (NFKC-normalised) or raise ``ProtocolError``.

    Besides the label rules, ``names.refusal`` turns away invisible and blank characters, a
    leading combining mark and mixed writing systems (issue 15).
    """
    value = _check_label(raw, "name", MAX_NAME_CHARS)
    reason = refusal(value)
    if reason is not None:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"name {reason}")
    return value


def check_room(raw: object) -> str:
    """Return ``raw`` as a valid room name (NFKC-normalised) or raise ``ProtocolError``."""
    try:
        return _check_label(raw, "room", MAX_ROOM_CHARS)
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.BAD_ROOM, exc.detail) from None


def check_text(raw: object, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Return ``raw`` as message text or raise ``ProtocolError``; text is kept as sent."""
    if not isinstance(raw, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, "text must be a string")
    if not raw:
        raise ProtocolError(ErrorCode.BAD_FIELD, "text must not be empty")
    if len(raw) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LONG, f"text is longer than {max_chars} characters")
    return raw


# --- wschat.v1: client commands --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    action: bool = False  # an emote: "/me waves" is Say("waves", action=True)
    # The client's own id for this message, echoed back in the ``message`` event (and in
    # replays), so a client that reconnects knows which of its lines got through.
    cid: str | None = None


MAX_CID_CHARS = 64


def check_cid(raw: object) -> str | None:
    """Return a valid client message id (or None when absent); raise ``ProtocolError``."""
    if raw is None:
        return None
    if (
        not isinstance(raw, str)
        or not 1 <= len(raw) <= MAX_CID_CHARS
        or not raw.isascii()
        or not raw.isprintable()
        or " " in raw
    ):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"cid must be 1 to {MAX_CID_CHARS} printable ASCII characters without spaces",
        )
    return raw


@dataclass(frozen=True, slots=True)
class Dm:
    to: str
    text: str


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    # The last message id this client saw in ``room``: what came after it is replayed, as
    # ``?since=`` does for a connection (issue 17: switching rooms lost messages silently).
    since: int | None = None
    # The room's epoch that ``since`` belongs to, as ``?epoch=`` (issue 14): after a reset a
    # ``since`` of the old sequence is answered with ``gap``, never with reused ids.
    epoch: str | None = None


def check_since(raw: object) -> int | None:
    """Return a valid ``since`` (or None when absent); raise ``ProtocolError``."""
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ProtocolError(ErrorCode.BAD_FIELD, "since must be a non-negative integer")
    return raw


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class Rooms:
    """Ask which rooms have members (the busiest ``--rooms-listed``, sorted by room)."""


Command = Say | Dm | Join | Who | Rooms


def decode_command(frame: str, max_text_chars: int = MAX_TEXT_CHARS) -> Command:
    """Parse one client frame into a command or raise ``ProtocolError`` with an error code.

    The caller answers a ``ProtocolError`` with an ``error`` event and keeps the connection.
    """
    try:
        obj = json.loads(frame)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame must be a JSON object")
    kind = obj.get("type")
    if kind == "say":
        action = obj.get("action", False)
        if not isinstance(action, bool):
            raise ProtocolError(ErrorCode.BAD_FIELD, "action must be a boolean")
        return Say(check_text(obj.get("text"), max_text_chars), action, check_cid(obj.get("cid")))
    if kind == "dm":
        return Dm(check_name(obj.get("to")), check_text(obj.get("text"), max_text_chars))
    if kind == "join":
        epoch = obj.get("epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise ProtocolError(ErrorCode.BAD_FIELD, "epoch must be a string")
        room, since = check_room(obj.get("room")), check_since(obj.get("since"))
        return Join(room, since, epoch[:MAX_EPOCH_CHARS] if epoch else None)  # compared only
    if kind == "who":
        return Who()
    if kind == "rooms":
        return Rooms()
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_TYPE, "frame has no string 'type'")
    raise ProtocolError(ErrorCode.BAD_TYPE, f"unknown type {kind!r}")


def encode_command(command: Command) -> str:
    """Serialise a client command (used by the terminal client and the load tester)."""
    match command:
        case Say(text, action, cid):
            obj: dict[str, Any] = {"type": "say", "text": text}
            if action:
                obj["action"] = True
            if cid is not None:
                obj["cid"] = cid
        case Dm(to, text):
            obj = {"type": "dm", "to": to, "text": text}
        case Join(room, since, epoch):
            obj = {"type": "join", "room": room}
            if since is not None:
                obj["since"] = since
            if epoch is not None:
                obj["epoch"] = epoch
        case Who():
            obj = {"type": "who"}
        case Rooms():
            obj = {"type": "rooms"}
    return dumps(obj)


# --- wschat.v1: server events ----------------------------------------------------------------


def dumps(obj: dict[str, Any]) -> str:
    """Serialise one frame compactly, keeping non-ASCII text as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def message_event(
    room: str,
    msg_id: int,
    sender: str,
    text: str,
    ts: float,
    action: bool = False,
    cid: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "room": room,
        "id": msg_id,
        "from": sender,
        "text": text,
        "ts": ts,
    }
    if action:
        event["action"] = True
    if cid is not None:
        event["cid"] = cid
    return event


def dm_event(sender: str, to: str, text: str, ts: float) -> dict[str, Any]:
    return {"type": "dm", "from": sender, "to": to, "text": text, "ts": ts}


def presence_event(kind: str, room: str, name: str) -> dict[str, Any]:
    return {"type": kind, "room": room, "name": name}


def epoch_event(room: str, epoch: str, base: int) -> dict[str, Any]:
    """The room's id sequence was reset (issue 14): its messages from now on are of
    ``epoch``, with ids above ``base``; some before may have been missed."""
    return {"type": "epoch", "room": room, "epoch": epoch, "base": base}


def members_event(room: str, names: list[str]) -> dict[str, Any]:
    return {"type": "members", "room": room, "names": sorted(names)}


def rooms_event(counts: dict[str, int], most: int, unseen: int = 0) -> dict[str, Any]:
    """The answer to ``rooms``: the ``most`` rooms with the most members (ties: by room),
    listed by room; ``more`` counts the rooms left out (``unseen`` of them not counted)."""
    busy = [(room, n) for room, n in counts.items() if n > 0]
    busiest = sorted(busy, key=lambda item: (-item[1], item[0]))[:most]
    listed = [{"room": room, "members": n} for room, n in sorted(busiest)]
    return {"type": "rooms", "rooms": listed, "more": len(busy) - len(listed) + unseen}


def error_event(code: str, detail: str, cid: str | None = None) -> dict[str, Any]:
    """Return an ``error`` event; ``cid`` names the ``say`` it answers when not the last one."""
    event: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if cid is not None:
        event["cid"] = cid
    return event


def decode_event(frame: str) -> dict[str, Any]:
    """Parse one server frame for a client; raise ``ProtocolError`` when it is not an event."""
    try:
        obj = json.loads(frame)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_JSON, "server frame is not valid JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_TYPE, "server frame has no string 'type'")
    return obj
