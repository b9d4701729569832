"""The chat for terminals without cursor control (``TERM=dumb``): plain lines, a plain prompt.

Each event is printed as one plain line (``render.render_plain``: peer text sanitised, no
escape sequence at all), then the prompt ``#room> `` again. The terminal itself echoes and
edits what is typed (cooked mode), so a line that arrives while typing is printed after the
typed part: a terminal that cannot move its cursor allows no better. Slash commands work as
in the full-screen client; Ctrl-C and Ctrl-D quit (130, 0), and lines never sent are named
on stderr with exit status 1, as in the pipe client. Imports no prompt_toolkit.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from wschat.client.commands import HELP_TEXT, Action, UsageError, parse_line
from wschat.client.pipe import print_unsent, stdin_lines
from wschat.client.render import render_plain, sanitize, wants_attention
from wschat.client.session import ChatSession, describe, first_error

QUIT_DRAIN_S = 2.0
BELL_GAP_S = 2.0
BELL_RECENT_S = 30.0


class LinePrinter:
    """Print lines between prompts: a batch of events, then the prompt on a line of its own."""

    def __init__(self, session: ChatSession, bell: bool) -> None:
        self.session = session
        self.bell = bell
        self.last_bell = 0.0
        self.prompt_shown = False

    def prompt(self) -> None:
        sys.stdout.write(f"#{sanitize(self.session.status.room)}> ")
        sys.stdout.flush()
        self.prompt_shown = True

    def lines(self, lines: list[str]) -> None:
        if self.prompt_shown:
            sys.stdout.write("\n")
        sys.stdout.write("".join(line + "\n" for line in lines))
        self.prompt()

    async def pump(self) -> None:
        events = self.session.events
        while True:
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            shown = []
            for event in batch:
                text = render_plain(event, self.session.name)
                if text is not None:
                    shown.append(text)
                if wants_attention(event, self.session.name):
                    self._ring(event.get("ts"))
            if shown:
                self.lines(shown)

    def _ring(self, ts: object) -> None:
        # Our own BEL (peer text never carries one: sanitised), at most once per BELL_GAP_S.
        now = time.monotonic()
        recent = not isinstance(ts, int | float) or time.time() - ts < BELL_RECENT_S
        if self.bell and recent and now - self.last_bell >= BELL_GAP_S:
            self.last_bell = now
            sys.stdout.write("\a")


async def _read(session: ChatSession, out: LinePrinter) -> int:
    """Act on each typed line until ``/quit`` (0) or the end of input (Ctrl-D, 0)."""
    async for line in stdin_lines():
        out.prompt_shown = False  # Enter moved the cursor to a fresh line
        parsed = parse_line(line)
        if parsed is Action.LEAVE:
            parsed = session.leave()
        if parsed is Action.QUIT:
            return 0
        if parsed is None or parsed is Action.EXPAND:
            out.prompt()
        elif parsed is Action.HELP:
            out.lines(HELP_TEXT.splitlines())
        elif isinstance(parsed, UsageError):
            out.lines([parsed.message])
        elif isinstance(parsed, Action):
            out.prompt()
        elif not session.send(parsed):
            out.lines([f"unsent (too many lines queued): {describe(parsed)}"])
        elif not session.online.is_set():
            out.lines([f"offline; will send after reconnecting: {describe(parsed)}"])
        else:
            out.prompt()
    return 0


async def run_lines(session: ChatSession, bell: bool = True) -> int:
    """Chat line by line until the user quits; return the exit status (see the docstring)."""
    out = LinePrinter(session, bell)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    status = 0
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(session.run())
            await session.online.wait()
            printer = tg.create_task(out.pump())
            reader = tg.create_task(_read(session, out))
            waiter = tg.create_task(interrupted.wait())
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            status = reader.result() if reader.done() else 130
            reader.cancel()
            waiter.cancel()
            sys.stdout.write("\n")
            await session.finish(QUIT_DRAIN_S if session.online.is_set() else 0.0)
            await runner
            printer.cancel()
    except BaseExceptionGroup as group:
        print_unsent(session)
        raise first_error(group) from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return 1 if print_unsent(session) else status
