"""The interactive chat: a full-screen prompt_toolkit application, the way weechat looks.

The client owns its screen: a message pane with its own scrollback (``pane.Scrollback``), a
status line, and an input line at the bottom, all drawn by prompt_toolkit from state. The
terminal stays in raw mode from start to end, so a key typed while messages arrive goes to
the input line and never into the output (issue 17: ``print_formatted_text`` through
``run_in_terminal`` left raw mode for a moment, and typed keys were echoed among messages).
Incoming events are added to the scrollback in batches and the screen is redrawn at most
``1 / FRAME_S`` times a second.

Keys: Enter sends, Alt-Enter (Esc Enter) starts a new line, PageUp/PageDown and the mouse
wheel scroll, Alt-M turns the mouse off (to select text with it) and on, Ctrl-C clears the
input line or quits on an empty one, Ctrl-D on an empty line quits. A line naming you and a
DM to you are highlighted and ring the bell (unless ``--no-bell``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import (
    BufferControl,
    Dimension,
    Float,
    FloatContainer,
    FormattedTextControl,
    HSplit,
    Layout,
    Window,
)
from prompt_toolkit.layout.menus import CompletionsMenu
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.styles import Style
from rich.console import Console

from wschat.client.commands import COMMANDS, HELP_TEXT, Action, UsageError, parse_line
from wschat.client.pane import MessagePane, Scrollback
from wschat.client.render import NameColours, render_event, sanitize, wants_attention
from wschat.client.session import ChatSession, State, describe, first_error, notice
from wschat.errors import WschatError

BATCH_EVENTS = 500  # at most this many events per redraw
FRAME_S = 1 / 30  # at most this many redraws per second during a burst
QUIT_DRAIN_S = 2.0
INPUT_ROWS = 5  # the input grows with Alt-Enter up to this many rows, then scrolls
BELL_GAP_S = 2.0  # at most one bell per this many seconds, however many mentions come
BELL_RECENT_S = 30.0  # a replayed mention older than this rings no bell
EXIT_UNSENT = 1  # the exit status when typed lines were never sent (they are printed)
EXIT_INTERRUPTED = 130  # Ctrl-C on an empty line, as for a shell command


def data_dir() -> Path:
    """Return where the client keeps its input history: ``$WSCHAT_HOME`` if set."""
    home = os.environ.get("WSCHAT_HOME")
    if home:
        return Path(home)
    from platformdirs import user_data_dir

    return Path(user_data_dir("wschat", appauthor=False))


def private_history_file() -> Path:
    """Create the input history file, readable by its owner only, and return its path.

    The history keeps every line typed, ``/msg`` DMs included: the file is made 0600 (and
    tightened to 0600 if an older version left it readable by others), and the data
    directory 0700 when this creates it (a directory that exists, such as a ``$WSCHAT_HOME``
    the user chose, is left as it is). Raises ``OSError`` if either cannot be created.
    """
    directory = data_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "history"
    # O_CREAT with 0600 rather than chmod after the fact: never readable by others, even
    # for a moment. prompt_toolkit's FileHistory then appends to the file as it is.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


class ChatCompleter(Completer):
    """Complete slash commands at the start of the line and member names elsewhere."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self.names = names

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        if before.startswith("/") and " " not in before:
            for command in COMMANDS:
                if command.startswith(before.lower()):
                    yield Completion(command + " ", -len(before), display=command)
            return
        word = document.get_word_before_cursor(WORD=True)
        if before.startswith("/join "):
            return
        for name in sorted(self.names()):
            if sanitize(name) != name:
                continue  # not a valid name (a hostile server's): never shown, never offered
            if name.lower().startswith(word.lower()) and name != word:
                yield Completion(name, -len(word))


def render_ansi(events: Sequence[dict[str, Any]], me: str, width: int) -> str:
    """Return ``events`` rendered as ANSI text, one or more lines each, without a final newline."""
    console = Console(
        file=StringIO(),
        force_terminal=True,
        width=max(width, 20),
        color_system="256",
        markup=False,
        emoji=False,
        highlight=False,
    )
    for event in events:
        text = render_event(event, me)
        if text is not None:
            console.print(text)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return str(out).removesuffix("\n")


def print_unsent(session: ChatSession) -> int:
    """Print an ``unsent:`` line for each line that never went out; return how many.

    Called once the screen is gone, so the lines stay in the terminal after the client.
    """
    leftovers = session.unsent_notices()
    if leftovers:
        width = shutil.get_terminal_size().columns
        sys.stdout.write(render_ansi(leftovers, session.name, width) + "\n")
        sys.stdout.flush()
    return len(leftovers)


class ChatScreen:
    """The application: message pane, status line, input line, and what the keys do."""

    def __init__(self, session: ChatSession, history: FileHistory, bell: bool = True) -> None:
        self.session = session
        self.bell = bell
        self.last_bell = 0.0
        self.mouse = True
        self.for_you = 0  # highlights and DMs that came while scrolled up
        self.scrollback = Scrollback(session.name, NameColours())
        self.input = Buffer(
            multiline=True,
            history=history,
            completer=ChatCompleter(lambda: session.status.members),
            complete_while_typing=False,
            accept_handler=self._accept,
        )
        input_window = Window(
            BufferControl(self.input, input_processors=[BeforeInput(self._prompt)]),
            height=Dimension(min=1, max=INPUT_ROWS),
            wrap_lines=True,
            dont_extend_height=True,
        )
        body = HSplit(
            [
                Window(MessagePane(self.scrollback, self.redraw), wrap_lines=False),
                Window(FormattedTextControl(self._status), height=1, style="class:status"),
                input_window,
            ]
        )
        layout = Layout(
            FloatContainer(
                body,
                floats=[Float(xcursor=True, ycursor=True, content=CompletionsMenu(max_height=8))],
            ),
            focused_element=input_window,
        )
        self.app: Application[int] = Application(
            layout=layout,
            key_bindings=self._keys(),
            full_screen=True,
            mouse_support=Condition(lambda: self.mouse),
            style=Style.from_dict({"status": "reverse"}),
            min_redraw_interval=FRAME_S,
            refresh_interval=0.5,  # the reconnect countdown in the status line
        )

    def redraw(self) -> None:
        if self.app.is_running:
            self.app.invalidate()

    def show(self, text: str, style: str = "dim") -> None:
        self.add(notice(text, style))
        self.redraw()

    def add(self, event: dict[str, Any]) -> None:
        self.scrollback.add(event)
        if wants_attention(event, self.session.name):
            if self.scrollback.offset:
                self.for_you += 1
            self._ring(event)

    def _ring(self, event: dict[str, Any]) -> None:
        """Ring the bell for a live line that wants attention; never from peer text.

        The BEL is written by prompt_toolkit's output (``Output.bell``), never taken from a
        message, and at most once per ``BELL_GAP_S``: a flood of mentions rings once.
        """
        now = time.monotonic()
        ts = event.get("ts")
        recent = not isinstance(ts, int | float) or time.time() - ts < BELL_RECENT_S
        if self.bell and recent and now - self.last_bell >= BELL_GAP_S:
            self.last_bell = now
            self.app.output.bell()

    async def pump(self) -> None:
        """Move the session's events into the scrollback, a batch per redraw."""
        events = self.session.events
        while True:
            self.add(await events.get())
            count = 1
            while count < BATCH_EVENTS and not events.empty():
                self.add(events.get_nowait())
                count += 1
            self.redraw()
            await asyncio.sleep(FRAME_S)  # let a burst gather into the next batch

    def _prompt(self) -> StyleAndTextTuples:
        return [("bold", f"#{sanitize(self.session.status.room)}> ")]

    def _status(self) -> StyleAndTextTuples:
        status = self.session.status
        style = "bg:ansiyellow fg:ansiblack" if status.state is State.RECONNECTING else ""
        text = f" {self.session.name} · {sanitize(status.describe())} "  # room: the server's
        parts: StyleAndTextTuples = [(style, text)]
        if self.scrollback.offset:
            below = f"{self.scrollback.unseen} new" if self.scrollback.unseen else "scrolled"
            parts.append(("bold", f"· {below} (PageDown) "))
        if self.for_you:
            parts.append(("bold", f"· {self.for_you} for you "))
        if not self.mouse:
            parts.append(("", "· mouse off (Alt-M) "))
        return parts

    def _accept(self, buffer: Buffer) -> bool:
        self.handle(buffer.text)
        return False  # the server's echo shows the line, with its time

    def handle(self, line: str) -> None:
        """Act on one line typed: a command, a local action or a message."""
        session = self.session
        parsed = parse_line(line)
        if parsed is Action.LEAVE:
            parsed = session.leave()
        if parsed is None:
            return
        if parsed is Action.HELP:
            self.show(HELP_TEXT)
        elif parsed is Action.QUIT:
            self.app.exit(result=0)
        elif parsed is Action.EXPAND:
            if not self.scrollback.expand_last():
                self.show("no folded message to expand")
            self.redraw()
        elif isinstance(parsed, UsageError):
            self.show(parsed.message, "red")
        elif isinstance(parsed, Action):
            return
        elif not session.send(parsed):
            self.show(f"unsent (too many lines queued): {describe(parsed)}", "yellow")
        elif not session.online.is_set():
            self.show(f"offline; will send after reconnecting: {describe(parsed)}")

    def _keys(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("enter")
        def _(event: KeyPressEvent) -> None:
            self.input.validate_and_handle()

        @keys.add("escape", "enter")
        def _(event: KeyPressEvent) -> None:
            self.input.insert_text("\n")

        @keys.add("c-c")
        def _(event: KeyPressEvent) -> None:
            # weechat and irssi never quit on Ctrl-C: it clears a half-typed line.
            if self.input.text:
                self.input.reset()
            else:
                event.app.exit(result=EXIT_INTERRUPTED)

        @keys.add("c-d")
        def _(event: KeyPressEvent) -> None:
            if self.input.text:
                self.input.delete()
            else:
                event.app.exit(result=0)

        @keys.add("pageup")
        def _(event: KeyPressEvent) -> None:
            self.scrollback.page(1)

        @keys.add("pagedown")
        def _(event: KeyPressEvent) -> None:
            self.scrollback.page(-1)
            if not self.scrollback.offset:
                self.for_you = 0

        @keys.add("escape", "m")
        def _(event: KeyPressEvent) -> None:
            self.mouse = not self.mouse

        return keys


async def run_terminal(session: ChatSession, bell: bool = True) -> int:
    """Chat until the user quits; return the exit status.

    0 after ``/quit`` or Ctrl-D, 130 after Ctrl-C on an empty line, 1 when some typed lines
    were never sent (each is printed as ``unsent: ...`` once the screen is gone). Raises the
    session's ``WschatError`` when the connection fails for good, after printing the unsent
    lines; the screen is only shown once the first connection has been welcomed.
    """
    screen = ChatScreen(session, FileHistory(str(private_history_file())), bell)
    session.on_status = screen.redraw
    failed: list[WschatError] = []

    async def connection() -> None:
        # A connection refused for good ends the screen normally (the terminal restored)
        # before the error is raised, so the unsent lines can be printed under it.
        try:
            await session.run()
        except WschatError as exc:
            failed.append(exc)
            if screen.app.is_running:
                screen.app.exit(result=EXIT_UNSENT)

    status = 0
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(connection())
            online = tg.create_task(session.online.wait())
            await asyncio.wait({runner, online}, return_when=asyncio.FIRST_COMPLETED)
            online.cancel()
            if not failed:
                pump = tg.create_task(screen.pump())
                status = await screen.app.run_async()
                await session.finish(QUIT_DRAIN_S if session.online.is_set() else 0.0)
                await runner
                pump.cancel()
    except BaseExceptionGroup as group:
        print_unsent(session)
        raise first_error(group) from None
    unsent = print_unsent(session)
    if failed:
        raise failed[0]
    return EXIT_UNSENT if unsent else status
