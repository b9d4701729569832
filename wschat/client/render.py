"""Turn server events into rich ``Text`` lines, and untrusted peer text into something safe.

Pure: no I/O. Every string a peer controls (names, rooms, message text, error details) goes
through ``sanitize()`` and into ``rich.text.Text`` as plain text, never as markup, so neither
an escape sequence nor ``[bold]`` in a message can reach the terminal as anything but
visible characters. Imports rich, never prompt_toolkit or websockets.
"""

from __future__ import annotations

import json
import time
import unicodedata
import zlib
from collections.abc import Mapping
from typing import Any

from rich.text import Text

# Colours that read on dark and light backgrounds alike, in the 16-colour set every
# terminal has; a name keeps its colour across runs and machines (crc32, not hash()).
NAME_COLOURS = (
    "red",
    "green",
    "yellow",
    "blue",
    "magenta",
    "cyan",
    "bright_red",
    "bright_green",
    "bright_blue",
    "bright_magenta",
    "bright_cyan",
    "dark_orange",
)

NOTICE_STYLES = frozenset({"dim", "yellow", "red", "green", "bold"})

# Bidi embeddings, overrides and isolates (Trojan Source, CVE-2021-42574), marks, and
# zero-width characters: invisible, yet they reorder or hide what is shown around them.
_INVISIBLE = frozenset(
    [
        *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
        *range(0x2066, 0x206A),  # LRI RLI FSI PDI
        *(0x200E, 0x200F, 0x061C),  # LRM RLM ALM
        *(0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF),  # ZWSP ZWNJ ZWJ WJ BOM
        *(0x2028, 0x2029),  # line and paragraph separators
    ]
)
_ZWJ = "\u200d"


MISSED = "some messages were missed (no longer stored, or too many to replay)"


def _stand_in(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟: ESC shows as ␛
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def _is_emoji_part(char: str) -> bool:
    return unicodedata.category(char) == "So" or char in "\ufe0f\ufe0e"


def sanitize(text: str, *, keep_newlines: bool = False) -> str:
    """Return ``text`` with every control, bidi and zero-width character made visible.

    C0 controls and DEL become control pictures (ESC is ``␛``), C1 controls (U+0080 to U+009F),
    bidi and zero-width characters become ``<U+XXXX>``. A zero-width joiner between two
    emoji is kept, so family and flag sequences still render. ``keep_newlines`` keeps ``\\n``
    (the caller indents the continuation lines so they cannot pass for another message).
    """
    if text.isprintable() and not any(ord(c) in _INVISIBLE for c in text):
        return text  # the common case, fast
    out: list[str] = []
    for i, char in enumerate(text):
        code = ord(char)
        if char == "\n" and keep_newlines:
            out.append(char)
        elif char == "\t":
            out.append("    ")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(_stand_in(char))
        elif code in _INVISIBLE or unicodedata.category(char) == "Cf":
            if (
                char == _ZWJ
                and 0 < i < len(text) - 1
                and _is_emoji_part(text[i - 1])
                and _is_emoji_part(text[i + 1])
            ):
                out.append(char)
            elif code == 0xAD:  # soft hyphen: harmless and often pasted
                out.append(char)
            else:
                out.append(_stand_in(char))
        else:
            out.append(char)
    return "".join(out)


def name_colour(name: str) -> str:
    """Return the rich colour of ``name``: the same name always gets the same colour."""
    return NAME_COLOURS[zlib.crc32(name.encode("utf-8", "surrogatepass")) % len(NAME_COLOURS)]


def _clock(ts: object) -> str:
    seconds = float(ts) if isinstance(ts, int | float) else time.time()
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _name(value: object) -> Text:
    name = sanitize(str(value))
    return Text(name, style=f"bold {name_colour(name)}")


def _body(text: object, indent: int | None) -> Text:
    """Return message text; ``indent`` ``None`` keeps it on one line (a newline shows as ␊)."""
    body = sanitize(str(text), keep_newlines=indent is not None)
    if indent is None:
        return Text(body)
    # A continuation line is indented under the message, so "\n[12:00:00] admin: …" inside a
    # message cannot pass for a line of its own.
    return Text(body.replace("\n", "\n" + " " * indent))


def _str(event: Mapping[str, Any], key: str) -> str:
    return sanitize(str(event.get(key, "")))


def render_event(event: Mapping[str, Any], me: str = "", one_line: bool = False) -> Text | None:
    """Return the line(s) to show for one server event, or ``None`` for one not shown.

    ``me`` is the user's own name: direct messages say which way they went. ``one_line``
    shows a newline in a message as ``␊`` instead of starting an indented line.
    """
    kind = event.get("type")
    stamp = Text(_clock(event.get("ts")) + " ", style="dim")
    line = Text()
    line.append_text(stamp)
    indent = len(stamp)
    hang = None if one_line else indent + 2  # where continuation lines of a message start
    if kind == "message":
        if event.get("action"):
            line.append("* ", style="bold")
            line.append_text(_name(event.get("from")))
            line.append(" ")
            line.append_text(_body(event.get("text"), hang))
            line.stylize("italic", indent)
        else:
            line.append_text(_name(event.get("from")))
            line.append(": ")
            line.append_text(_body(event.get("text"), hang))
        return line
    if kind == "dm":
        line.append("[DM] ", style="bold reverse magenta")
        sender, to = str(event.get("from", "")), str(event.get("to", ""))
        if me and sender == me:
            line.append("to ", style="magenta")
            line.append_text(_name(to))
        else:
            line.append("from ", style="magenta")
            line.append_text(_name(sender))
        line.append(": ")
        line.append_text(_body(event.get("text"), hang))
        return line
    if kind in ("joined", "left"):
        arrow, verb = ("→", "joined") if kind == "joined" else ("←", "left")
        line.append(f"{arrow} {_str(event, 'name')} {verb} #{_str(event, 'room')}", style="dim")
        return line
    if kind == "members":
        names = [sanitize(str(n)) for n in event.get("names") or []]
        line.append(f"members of #{_str(event, 'room')} ({len(names)}): ", style="dim")
        for i, name in enumerate(names):
            if i:
                line.append(", ", style="dim")
            line.append_text(_name(name))
        return line
    if kind == "welcome":
        members = [sanitize(str(n)) for n in event.get("members") or []]
        line.append(
            f"you are {_str(event, 'name')} in #{_str(event, 'room')} "
            f"with {len(members)} member{'s' if len(members) != 1 else ''}: " + ", ".join(members),
            style="dim",
        )
        if event.get("gap"):
            line.append(" " if one_line else "\n" + " " * indent)
            line.append(MISSED, "yellow")
        return line
    if kind == "epoch":  # the room's ids were reset (issue 14)
        line.append(MISSED, "yellow")
        return line
    if kind == "error":
        line.append(f"server: {_str(event, 'detail')} ({_str(event, 'code')})", style="red")
        return line
    if kind == "notice":
        style = event.get("style")
        body = _body(event.get("text", ""), None if one_line else indent)
        body.stylize(style if isinstance(style, str) and style in NOTICE_STYLES else "dim")
        line.append_text(body)
        return line
    return None


def render_plain(event: Mapping[str, Any], me: str = "") -> str | None:
    """Return one event as one line of plain text for a pipe, or ``None`` if not shown."""
    text = render_event(event, me, one_line=True)
    return None if text is None else text.plain


def render_json(event: Mapping[str, Any]) -> str:
    """Return one event as a JSON line; non-ASCII is escaped, so no control byte is printed."""
    return json.dumps(dict(event), ensure_ascii=True, separators=(",", ":"))
