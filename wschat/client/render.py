"""Turn server events into rich ``Text`` lines, and untrusted peer text into something safe.

Pure: no I/O. Every string a peer controls (names, rooms, message text, error details) goes
through ``sanitize()`` and into ``rich.text.Text`` as plain text, never as markup, so neither
an escape sequence nor ``[bold]`` in a message can reach the terminal as anything but
visible characters. Imports rich, never prompt_toolkit or websockets.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.style import Style
from rich.text import Text

# Colours that read on dark and light backgrounds alike, from the 256-colour set (prompt_toolkit
# and rich map them down on smaller terminals); a name keeps its colour across runs and machines
# (crc32, not hash()). Your own name has none of them: it is bold in the terminal's own
# foreground, so it stands apart from every other name.
NAME_COLOURS = (
    "indian_red",
    "chartreuse3",
    "dark_orange",
    "dodger_blue1",
    "orchid",
    "dark_cyan",
    "gold3",
    "medium_purple",
    "deep_pink3",
    "spring_green3",
    "steel_blue",
    "light_salmon3",
    "cadet_blue",
    "yellow4",
    "hot_pink3",
    "sea_green3",
    "orange_red1",
    "green3",
    "magenta3",
    "cyan3",
    "red3",
    "blue_violet",
    "dark_khaki",
    "pale_violet_red1",
)
OWN_NAME_STYLE = "bold underline"
HIGHLIGHT_STYLE = "bold reverse"  # the time stamp of a line that mentions you, or a DM to you

# A message taller than FOLD_ROWS rows is shown as its first FOLD_SHOWN rows and a line saying
# how many more there are (issue 17: one 60 KB message printed about 600 lines).
FOLD_ROWS = 12
FOLD_SHOWN = 8
_URL = re.compile(r"https?://[!-~]+")  # printable ASCII only: safe inside an OSC 8 link

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


class NameColours:
    """Colours for the names one client shows: each name its own while the palette lasts.

    A name gets ``name_colour(name)`` unless a name seen earlier has it; then the next free
    colour. So alice and carol never share one, whatever their hashes.
    """

    def __init__(self) -> None:
        self.given: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        colour = self.given.get(name)
        if colour is None:
            start = NAME_COLOURS.index(name_colour(name))
            used = set(self.given.values())
            colour = NAME_COLOURS[start]
            for step in range(len(NAME_COLOURS)):
                candidate = NAME_COLOURS[(start + step) % len(NAME_COLOURS)]
                if candidate not in used:
                    colour = candidate
                    break
            self.given[name] = colour
        return colour


Colours = Callable[[str], str]


def mentions(text: str, me: str) -> bool:
    """Return whether ``text`` names ``me`` as a word of its own (any case)."""
    if not me:
        return False
    return re.search(rf"(?<![\w-]){re.escape(me)}(?![\w-])", text, re.IGNORECASE) is not None


def wants_attention(event: Mapping[str, Any], me: str) -> bool:
    """Return whether ``event`` is for ``me`` in person: a DM to me, or a line naming me."""
    if not me or event.get("from") == me:
        return False
    if event.get("type") == "dm":
        return True
    return event.get("type") == "message" and mentions(str(event.get("text", "")), me)


def _clock(ts: object) -> str:
    seconds = float(ts) if isinstance(ts, int | float) else time.time()
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _name(value: object, me: str = "", colours: Colours = name_colour) -> Text:
    name = sanitize(str(value))
    if me and name == me:
        return Text(name, style=OWN_NAME_STYLE)
    return Text(name, style=f"bold {colours(name)}")


def _body(text: object, one_line: bool) -> Text:
    """Return message text; ``one_line`` shows a newline as ␊, else it starts a new line."""
    body = Text(sanitize(str(text), keep_newlines=not one_line))
    for match in _URL.finditer(body.plain):
        body.stylize(Style(underline=True), match.start(), match.end())
    return body


def _str(event: Mapping[str, Any], key: str) -> str:
    return sanitize(str(event.get(key, "")))


def event_parts(
    event: Mapping[str, Any], me: str = "", one_line: bool = False, colours: Colours = name_colour
) -> tuple[Text, Text] | None:
    """Return the head (time, and who for a message) and the body of one event, or ``None``.

    The body may hold newlines (unless ``one_line``); whoever lays it out indents its
    continuation lines under the body, so no line of a message can pass for a line of its own.
    """
    kind = event.get("type")
    head = Text(_clock(event.get("ts")) + " ", style="dim")
    if wants_attention(event, me):
        head.stylize(HIGHLIGHT_STYLE, 0, len(head) - 1)
    body = Text()
    if kind == "message":
        if event.get("action"):
            head.append("* ", style="bold")
            head.append_text(_name(event.get("from"), me, colours))
            head.append(" ")
            body = _body(event.get("text"), one_line)
            body.stylize("italic")
        else:
            head.append_text(_name(event.get("from"), me, colours))
            head.append(": ")
            body = _body(event.get("text"), one_line)
        return head, body
    if kind == "dm":
        head.append("[DM] ", style="bold reverse magenta")
        sender, to = str(event.get("from", "")), str(event.get("to", ""))
        if me and sender == me:
            head.append("to ", style="magenta")
            head.append_text(_name(to, me, colours))
        else:
            head.append("from ", style="magenta")
            head.append_text(_name(sender, me, colours))
        head.append(": ")
        return head, _body(event.get("text"), one_line)
    if kind in ("joined", "left"):
        arrow, verb = ("→", "joined") if kind == "joined" else ("←", "left")
        body.append(f"{arrow} {_str(event, 'name')} {verb} #{_str(event, 'room')}", style="dim")
        return head, body
    if kind == "members":
        names = [sanitize(str(n)) for n in event.get("names") or []]
        body.append(f"members of #{_str(event, 'room')} ({len(names)}): ", style="dim")
        for i, name in enumerate(names):
            if i:
                body.append(", ", style="dim")
            body.append_text(_name(name, me, colours))
        return head, body
    if kind == "rooms":
        rooms = [r for r in event.get("rooms") or [] if isinstance(r, Mapping)]
        more = event.get("more")
        body.append(f"rooms with members ({len(rooms)}): ", style="dim")
        for i, room in enumerate(rooms):
            body.append(", " if i else "")
            body.append(f"#{sanitize(str(room.get('room', '')))} ")
            body.append(f"({sanitize(str(room.get('members', '')))})", style="dim")
        if isinstance(more, int) and more > 0:
            body.append(f" and {more} more", style="dim")
        return head, body
    if kind == "welcome":
        members = [sanitize(str(n)) for n in event.get("members") or []]
        body.append(
            f"you are {_str(event, 'name')} in #{_str(event, 'room')} "
            f"with {len(members)} member{'s' if len(members) != 1 else ''}: " + ", ".join(members),
            style="dim",
        )
        if event.get("gap"):
            body.append(" " if one_line else "\n")
            body.append(MISSED, "yellow")
        return head, body
    if kind == "epoch":  # the room's ids were reset (issue 14)
        body.append(MISSED, "yellow")
        return head, body
    if kind == "error":
        body.append(f"server: {_str(event, 'detail')} ({_str(event, 'code')})", style="red")
        return head, body
    if kind == "notice":
        style = event.get("style")
        body = Text(sanitize(str(event.get("text", "")), keep_newlines=not one_line))
        body.stylize(style if isinstance(style, str) and style in NOTICE_STYLES else "dim")
        return head, body
    return None


def render_event(
    event: Mapping[str, Any], me: str = "", one_line: bool = False, colours: Colours = name_colour
) -> Text | None:
    """Return the line(s) to show for one server event, or ``None`` for one not shown.

    ``me`` is the user's own name: direct messages say which way they went, and lines naming
    ``me`` are highlighted. ``one_line`` shows a newline in a message as ``␊`` instead of
    starting a line indented under the text.
    """
    parts = event_parts(event, me, one_line, colours)
    if parts is None:
        return None
    head, body = parts
    line = head.copy()
    line.append_text(body)
    if not one_line:
        # Continuation lines start under the text, past the time stamp and the name.
        hang = min(len(head), len(head.plain) if event.get("type") != "notice" else 9)
        pieces = line.split("\n", allow_blank=True)
        line = Text("\n").join(
            [pieces[0], *(Text(" " * hang) + piece for piece in list(pieces)[1:])]
        )
    return line


def layout_rows(
    head: Text, body: Text, width: int, console: Console, folded: bool = True
) -> tuple[list[Text], int]:
    """Lay one event out in rows of at most ``width`` cells; return them and the rows folded.

    Wrapped and continuation rows are indented under the body (weechat's layout); a word is
    broken only when it is wider than the body's column, and a URL wider than that starts
    at the left edge of a row of its own, so it is split only if wider than the pane. With ``folded``, an event taller than ``FOLD_ROWS`` keeps its
    first ``FOLD_SHOWN`` rows, and the second value is about how many rows were left out; the
    work done is bounded by the rows shown, not by the size of the message.
    """
    hang = min(head.cell_len, max(width // 3, 1))
    column = max(width - hang, 8)
    pad = head.cell_len - hang  # a long head pushes the first row of the body further right
    source = body
    hidden = 0
    if folded:
        lines = body.plain.split("\n")
        total = sum(max(1, math.ceil(len(line) / column)) for line in lines)
        if total > FOLD_ROWS:
            keep = FOLD_SHOWN * column
            offset, kept = 0, 0
            for line in lines[:FOLD_SHOWN]:
                offset += min(len(line), keep) + 1
                kept += 1
            source = body[: max(0, offset - 1)]
            hidden = total
    padded = Text(" " * pad) + source if pad else source
    # (indent, row): a URL wider than the body's column gets rows of its own from the left
    # edge, so one that fits the pane's width is never split (issue 17: broken when copied).
    rows: list[tuple[int, Text]] = []
    start = 0
    for match in _URL.finditer(padded.plain):
        if len(match.group()) > column:
            rows += _wrapped(padded[start : match.start()], column, hang, console, start > 0)
            url = padded[match.start() : match.end()]
            rows += [(0, url[i : i + width]) for i in range(0, len(url), width)]
            start = match.end()
    rows += _wrapped(padded[start:], column, hang, console, start > 0)
    if hidden:
        rows = rows[:FOLD_SHOWN]
        hidden = max(hidden - len(rows), 1)
    out: list[Text] = []
    for i, (indent, row) in enumerate(rows):
        row.rstrip()
        if i == 0 and indent:
            first = head.copy()
            first.append_text(row[pad:] if pad else row)
            out.append(first)
            continue
        if i == 0:
            out.append(head.copy())
        out.append(Text(" " * indent) + row)
    if not out:
        out.append(head.copy())
    return out, hidden


def _wrapped(
    text: Text, column: int, hang: int, console: Console, after_url: bool
) -> list[tuple[int, Text]]:
    if after_url:
        plain = text.plain
        text = text[len(plain) - len(plain.lstrip(" ")) :]
    if not text.plain.strip():
        return []
    return [(hang, row) for row in text.wrap(console, column, overflow="fold", no_wrap=False)]


def render_plain(event: Mapping[str, Any], me: str = "") -> str | None:
    """Return one event as one line of plain text for a pipe, or ``None`` if not shown."""
    text = render_event(event, me, one_line=True)
    return None if text is None else text.plain


def render_json(event: Mapping[str, Any]) -> str:
    """Return one event as a JSON line; non-ASCII is escaped, so no control byte is printed."""
    return json.dumps(dict(event), ensure_ascii=True, separators=(",", ":"))
