"""The interactive chat: a prompt_toolkit input line under the messages, rich for colour.

Incoming events are rendered by ``render.render_event`` into rich ``Text``, turned into ANSI
by a ``Console`` writing to a ``StringIO``, and printed above the prompt with
``print_formatted_text(ANSI(...))`` inside ``patch_stdout(raw=True)``: the one output path,
so the line being typed is redrawn intact after every batch. A burst is printed as one
batch. The status line is the prompt's bottom toolbar.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import ANSI, StyleAndTextTuples
from prompt_toolkit.history import FileHistory
from prompt_toolkit.patch_stdout import patch_stdout
from rich.console import Console

from wschat.client.commands import COMMANDS, HELP_TEXT, Action, UsageError, parse_line
from wschat.client.render import render_event
from wschat.client.session import ChatSession, State, describe, first_error, notice

BATCH_EVENTS = 500  # at most this many events per redraw
FRAME_S = 1 / 30  # at most this many redraws per second during a burst
QUIT_DRAIN_S = 2.0


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


def _toolbar(session: ChatSession) -> Callable[[], StyleAndTextTuples]:
    def toolbar() -> StyleAndTextTuples:
        status = session.status
        style = "bg:ansiyellow fg:ansiblack" if status.state is State.RECONNECTING else ""
        return [(style, f" {session.name} · {status.describe()} ")]

    return toolbar


async def _print_events(session: ChatSession, width: Callable[[], int]) -> None:
    while True:
        batch = [await session.events.get()]
        while len(batch) < BATCH_EVENTS and not session.events.empty():
            batch.append(session.events.get_nowait())
        text = render_ansi(batch, session.name, width())
        if text:
            print_formatted_text(ANSI(text))
        await asyncio.sleep(FRAME_S)  # let a burst gather into the next batch


async def _show(session: ChatSession, text: str, style: str = "dim") -> None:
    await session.events.put(notice(text, style))


async def _input_loop(session: ChatSession, prompt: PromptSession[str]) -> int:
    while True:
        try:
            line = await prompt.prompt_async(lambda: f"#{session.status.room}> ")
        except KeyboardInterrupt:
            return 130
        except EOFError:
            return 0
        parsed = parse_line(line)
        if parsed is None:
            continue
        if parsed is Action.HELP:
            await _show(session, HELP_TEXT)
        elif parsed is Action.QUIT:
            return 0
        elif isinstance(parsed, UsageError):
            await _show(session, parsed.message, "red")
        elif isinstance(parsed, Action):
            continue
        elif not session.send(parsed):
            await _show(session, f"unsent (too many lines queued): {describe(parsed)}", "yellow")
        elif not session.online.is_set():
            await _show(session, f"offline; will send after reconnecting: {describe(parsed)}")


async def run_terminal(session: ChatSession) -> int:
    """Chat until the user quits; return the exit status (130 after Ctrl-C).

    Raises the session's ``WschatError`` when the connection fails for good; the prompt is
    only shown once the first connection has been welcomed.
    """
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(private_history_file())),
        completer=ChatCompleter(lambda: session.status.members),
        complete_while_typing=False,
        bottom_toolbar=_toolbar(session),
        refresh_interval=0.5,
        erase_when_done=True,  # the server's echo shows the line, with its time
    )

    def invalidate() -> None:
        if prompt.app.is_running:
            prompt.app.invalidate()

    session.on_status = invalidate
    status = 0
    with patch_stdout(raw=True):
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(session.run())
                await session.online.wait()
                printer = tg.create_task(
                    _print_events(session, lambda: prompt.app.output.get_size().columns)
                )
                status = await _input_loop(session, prompt)
                await session.finish(QUIT_DRAIN_S if session.online.is_set() else 0.0)
                await runner
                printer.cancel()
        except BaseExceptionGroup as group:
            raise first_error(group) from None
    leftovers = session.unsent_notices()
    if leftovers:
        print_formatted_text(ANSI(render_ansi(leftovers, session.name, 80)))
    return status
