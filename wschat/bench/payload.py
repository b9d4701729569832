"""What a load-test message carries: run id, sender, sequence number and intended send time.

The stamp travels inside the message *text*, so it survives any server that relays text —
wschat's ``Client {id}: {text}`` broadcast, the article's ``You said: {text}`` echo, or a
``wschat.v1`` ``message`` event's ``text`` field. Replies are matched by this stamp, never by
"the next frame that arrives". Pure: no I/O, no clock (callers pass the time in), stdlib only.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import NamedTuple

from wschat.protocol import SUBPROTOCOL, Say, encode_command

MARK = "wb|"
V1_MESSAGE_START = '{"type":"message",'  # how wschat serialises a message event (protocol.dumps)
_V1_TEXT_MARK = '"text":"' + MARK
PAD_CHAR = "."


class Dialect(StrEnum):
    """How the target server frames messages."""

    PLAIN = "plain"  # the article's text: "You said: T" on /ws, "Client ID: T" on /ws/{id}
    V1 = SUBPROTOCOL  # JSON events, docs/protocol.md


class Stamp(NamedTuple):
    """The identity and intended send time of one load-test message.

    A named tuple rather than a dataclass: one is built per received message, and a tuple is
    the cheapest immutable record to build.
    """

    run: str
    sender: int
    seq: int
    sent_ns: int  # monotonic clock of the sending process, nanoseconds

    def encode(self, size: int = 0) -> str:
        """Return the message text, padded with dots to ``size`` characters when it is shorter."""
        text = f"{MARK}{self.run}|{self.sender}|{self.seq}|{self.sent_ns}|"
        return text + PAD_CHAR * (size - len(text)) if size > len(text) else text


def find_stamp(text: str) -> Stamp | None:
    """Return the stamp inside ``text`` (anywhere in it), or ``None`` when it carries none."""
    at = text.find(MARK)
    if at < 0:
        return None
    parts = text[at + len(MARK) :].split("|", 4)
    if len(parts) < 5:
        return None
    run, sender, seq, sent_ns = parts[:4]
    try:
        return Stamp(run, int(sender), int(seq), int(sent_ns))
    except ValueError:
        return None


def v1_message_stamp(frame: str) -> Stamp | None:
    """Return the stamp opening the ``text`` of a v1 ``message`` event, read from the raw JSON.

    ``None`` means this fast read cannot tell, not that there is no stamp: the caller then
    parses the frame (``v1_event``). It reads only frames that start like wschat's compact
    serialisation (``{"type":"message",``) and whose ``"text":"`` value starts with the mark.
    That key cannot be faked from inside a string, where every ``"`` is escaped as ``\\"``;
    the event has no nested objects. A stamp with any escaped character (``\\u007c`` for
    ``|``, say, from an encoder that escapes more than JSON requires) is left to the parser:
    a backslash or a quote in the run id, or in a number, makes this return ``None``.
    """
    if not frame.startswith(V1_MESSAGE_START):
        return None
    at = frame.find(_V1_TEXT_MARK)
    if at < 0:
        return None
    parts = frame[at + len(_V1_TEXT_MARK) :].split("|", 4)
    if len(parts) < 5:
        return None
    run = parts[0]
    if '"' in run or "\\" in run:
        return None
    try:  # int() refuses a backslash or a quote, so an escaped or truncated number fails here
        return Stamp(run, int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def v1_event(frame: str) -> tuple[str | None, str | None]:
    """Parse one v1 frame; return its event ``type`` and the ``text`` that may carry a stamp.

    The text is the ``text`` of a ``message`` event, ``None`` for other events; a frame that is
    not JSON gives ``(None, frame)``, as a plain line on a v1 socket still carries its stamp.
    """
    try:
        event = json.loads(frame)
    except ValueError:
        return None, frame
    if not isinstance(event, dict):
        return None, None
    kind = event.get("type")
    if not isinstance(kind, str):
        return None, None
    text = event.get("text") if kind == "message" else None
    return kind, text if isinstance(text, str) else None


def client_frame(dialect: Dialect, text: str) -> str:
    """Return the frame a client sends to say ``text`` in ``dialect``."""
    if dialect is Dialect.V1:
        return encode_command(Say(text))
    return text


def message_text(dialect: Dialect, frame: str | bytes) -> str | None:
    """Return the relayed text in one server frame, or ``None`` for frames that carry none.

    Plain frames are returned whole (the stamp is found anywhere in them); v1 frames give the
    ``text`` of a ``message`` event, and ``None`` for ``welcome``, ``joined``, ``left`` and
    other events. Binary frames are decoded as UTF-8 with replacement.
    """
    if isinstance(frame, bytes):
        frame = frame.decode("utf-8", "replace")
    if dialect is Dialect.PLAIN:
        return frame
    try:
        event = json.loads(frame)
    except ValueError:
        return frame  # a plain line on a v1 socket still carries its stamp
    if isinstance(event, dict) and event.get("type") == "message":
        text = event.get("text")
        return text if isinstance(text, str) else None
    return None


def v1_error_code(frame: str) -> str:
    """Return the ``code`` of a v1 ``error`` event (``?`` when it has none); a rare path."""
    try:
        event = json.loads(frame)
    except ValueError:
        return "?"
    code = event.get("code") if isinstance(event, dict) else None
    return code if isinstance(code, str) else "?"


def event_type(frame: str | bytes) -> str | None:
    """Return the ``type`` of a v1 JSON frame, or ``None`` when the frame is not one."""
    try:
        event = json.loads(frame)
    except ValueError:
        return None
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return str(event["type"])
    return None
