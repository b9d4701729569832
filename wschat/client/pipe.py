"""The client for scripts: each stdin line is sent, each event printed on a line of its own.

Used when stdin or stdout is not a terminal (``echo "deploy done" | wschat join ci``). Lines
are sent as typed, with no slash commands, so a script never has a line reinterpreted. Chat
lines go to stdout (``--json``: every server event as one JSON line); connection states and
unsent lines go to stderr. At the end of stdin the queued lines are sent, the connection
closes normally and the exit status says whether every line went out. Imports no
prompt_toolkit.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

from wschat.client.commands import UsageError, parse_text
from wschat.client.render import render_json, render_plain
from wschat.client.session import ChatSession, State, describe, first_error

EOF_DRAIN_S = 30.0  # after the end of stdin, how long to wait for a reconnect to send the rest


async def stdin_lines() -> AsyncIterator[str]:
    """Yield stdin's lines without blocking the loop.

    Pipes, sockets and terminals are read as lines arrive; anything else (a regular file,
    ``/dev/null``) cannot be polled, so it is read in one go.
    """
    mode = os.fstat(sys.stdin.fileno()).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or sys.stdin.isatty()):
        for line in sys.stdin.read().splitlines():
            yield line
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while raw := await reader.readline():
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    finally:
        transport.close()


def _emit(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def _print_event(event: dict[str, Any], me: str, as_json: bool) -> None:
    if event.get("type") == "notice":
        _emit(sys.stderr, f"wschat: {render_plain(event)}")
    elif as_json:
        _emit(sys.stdout, render_json(event))
    elif event.get("type") == "welcome":
        _emit(sys.stderr, f"wschat: {render_plain(event, me)}")
    else:
        text = render_plain(event, me)
        if text is not None:
            _emit(sys.stdout, text)


async def _print_events(session: ChatSession, as_json: bool) -> None:
    while True:
        _print_event(await session.events.get(), session.name, as_json)


async def run_pipe(session: ChatSession, as_json: bool = False) -> int:
    """Send stdin's lines and print events until stdin ends; return the exit status.

    Returns 1 when some lines could not be sent (each is named on stderr), else 0. Raises
    the session's ``WschatError`` when the connection fails for good.
    """
    last_state = session.status.state

    def on_status() -> None:
        nonlocal last_state
        if session.status.state is not last_state:
            last_state = session.status.state
            if last_state is State.RECONNECTING:
                _emit(sys.stderr, f"wschat: {session.status.describe()}")

    session.on_status = on_status
    failed = 0
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(session.run())
            await session.online.wait()
            printer = tg.create_task(_print_events(session, as_json))
            number = 0
            async for line in stdin_lines():
                number += 1
                if not line.strip():
                    continue
                said = parse_text(line)
                if isinstance(said, UsageError):
                    _emit(sys.stderr, f"wschat: line {number} not sent: {said.message}")
                    failed += 1
                else:
                    await session.send_when_room(said)
            await session.finish(EOF_DRAIN_S)
            await runner
            printer.cancel()
    except BaseExceptionGroup as group:
        print_unsent(session)
        raise first_error(group) from None
    while not session.events.empty():  # what arrived before the close
        _print_event(session.events.get_nowait(), session.name, as_json)
    failed += print_unsent(session)
    return 1 if failed else 0


def print_unsent(session: ChatSession) -> int:
    """Name each line that never went out on stderr (``wschat: unsent: ...``); return how many."""
    for command in session.queued:
        _emit(sys.stderr, f"wschat: unsent: {describe(command)}")
    return len(session.queued)
