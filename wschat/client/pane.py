"""The message pane: the client's own scrollback, laid out afresh at the pane's width.

Owns the events shown (the newest ``SCROLLBACK_EVENTS``), where the view is scrolled to, and
the conversion of rich ``Text`` rows into prompt_toolkit fragments. Each event is laid out by
``render.layout_rows`` once per width and cached, and a draw lays out only the events it
shows, from the newest up: a resize re-wraps everything on screen, a burst costs the rows it
adds. Imports prompt_toolkit's public layout API and rich, never websockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout.controls import UIContent, UIControl
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from rich.color import Color, ColorType
from rich.console import Console
from rich.style import Style
from rich.text import Text

from wschat.client.render import Colours, event_parts, layout_rows

SCROLLBACK_EVENTS = 5000  # events kept for scrolling back; older ones are forgotten
WHEEL_ROWS = 3  # rows scrolled per mouse-wheel notch

# The 16 colours of rich's standard set, by number, as prompt_toolkit names them.
_ANSI_NAMES = (
    "ansiblack",
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansigray",
    "ansibrightblack",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
    "ansiwhite",
)
_ATTRIBUTES = ("bold", "dim", "italic", "underline", "reverse")


def _colour(color: Color) -> str | None:
    if color.type is ColorType.DEFAULT:
        return None
    if color.number is not None and color.number < 16:
        return _ANSI_NAMES[color.number]
    red, green, blue = color.get_truecolor()
    return f"#{red:02x}{green:02x}{blue:02x}"


def pt_style(style: Style | None) -> str:
    """Return a rich ``Style`` as a prompt_toolkit style string (colours and attributes)."""
    if style is None:
        return ""
    parts = [name for name in _ATTRIBUTES if getattr(style, name)]
    if style.color is not None and (fg := _colour(style.color)):
        parts.append(fg)
    if style.bgcolor is not None and (bg := _colour(style.bgcolor)):
        parts.append(f"bg:{bg}")
    return " ".join(parts)


def fragments(row: Text, console: Console) -> StyleAndTextTuples:
    """Return one laid-out row as prompt_toolkit fragments; its text is already sanitised."""
    return [
        (pt_style(segment.style), segment.text)
        for segment in row.render(console)
        if not segment.control and segment.text
    ]


@dataclass
class Entry:
    """One event in the scrollback and its rows at the last width it was laid out at."""

    event: Mapping[str, Any]
    expanded: bool = False
    width: int = 0
    rows: list[StyleAndTextTuples] = field(default_factory=list)
    folded: int = 0  # rows left out (0: shown whole)


class Scrollback:
    """The events shown, the scroll position, and their rows at the current width."""

    def __init__(self, me: str, colours: Colours) -> None:
        self.me = me
        self.colours = colours
        self.entries: deque[Entry] = deque(maxlen=SCROLLBACK_EVENTS)
        self.offset = 0  # rows scrolled up from the newest; 0 follows new messages
        self.unseen = 0  # events added below the view while scrolled up
        self.height = 1  # the pane's height at the last draw (a page)
        self.width = 80
        self.console = Console(width=1000, color_system="truecolor", force_terminal=True)

    def add(self, event: Mapping[str, Any]) -> None:
        """Append ``event``; while scrolled up, the view stays on what it shows."""
        entry = Entry(event)
        self.entries.append(entry)
        if self.offset:
            self.offset += len(self._rows(entry, self.width))
            self.unseen += 1

    def scroll(self, rows: int) -> None:
        """Scroll up by ``rows`` (down when negative); the top is clamped at the next draw."""
        self.offset = max(0, self.offset + rows)
        if self.offset == 0:
            self.unseen = 0

    def page(self, pages: int) -> None:
        self.scroll(pages * max(1, self.height - 2))

    def expand_last(self) -> bool:
        """Show the newest folded message whole; return ``False`` if none is folded."""
        for entry in reversed(self.entries):
            if entry.folded and not entry.expanded:
                entry.expanded, entry.width = True, 0
                return True
        return False

    def _rows(self, entry: Entry, width: int) -> list[StyleAndTextTuples]:
        if entry.width != width:
            parts = event_parts(entry.event, self.me, colours=self.colours)
            rows: list[Text] = []
            entry.folded = 0
            if parts is not None:
                head, body = parts
                rows, entry.folded = layout_rows(
                    head, body, width, self.console, folded=not entry.expanded
                )
                if entry.folded:
                    more = Text(" " * min(head.cell_len, width // 3))
                    more.append(f"(… {entry.folded} more lines: /expand shows them)", "dim")
                    rows.append(more)
            entry.rows = [fragments(row, self.console) for row in rows]
            entry.width = width
        return entry.rows

    def visible(self, width: int, height: int) -> list[StyleAndTextTuples]:
        """Return the rows to draw in a pane of ``width`` x ``height``, oldest first."""
        self.width, self.height = width, height
        wanted = height + self.offset
        rows: list[StyleAndTextTuples] = []
        for entry in reversed(self.entries):
            rows[:0] = self._rows(entry, width)
            if len(rows) >= wanted:
                break
        if self.offset > max(0, len(rows) - height):
            self.offset = max(0, len(rows) - height)  # scrolled to the top
        end = len(rows) - self.offset
        return rows[max(0, end - height) : end]


class MessagePane(UIControl):
    """The prompt_toolkit control that draws a ``Scrollback``; the mouse wheel scrolls it."""

    def __init__(self, scrollback: Scrollback, on_scroll: Callable[[], None]) -> None:
        self.scrollback = scrollback
        self.on_scroll = on_scroll

    def create_content(self, width: int, height: int) -> UIContent:
        rows = self.scrollback.visible(width, height)
        return UIContent(get_line=lambda i: rows[i], line_count=len(rows))

    def mouse_handler(self, mouse_event: MouseEvent) -> object:  # None or NotImplemented
        if mouse_event.event_type is MouseEventType.SCROLL_UP:
            self.scrollback.scroll(WHEEL_ROWS)
        elif mouse_event.event_type is MouseEventType.SCROLL_DOWN:
            self.scrollback.scroll(-WHEEL_ROWS)
        else:
            return NotImplemented
        self.on_scroll()
        return None
