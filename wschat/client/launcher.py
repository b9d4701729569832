"""Build a chat session from the ``wschat join`` options and run the terminal or pipe client.

Turns flags into a ``SessionConfig`` (TLS context, handshake headers), picks the interactive
client when stdin and stdout are both terminals and the pipe client otherwise, and runs it.
A terminal without cursor control (``TERM=dumb``, unset or ``unknown``) gets the line client
(``lines.py``): no escape sequences, a plain prompt.
Raises ``WschatError`` subclasses; ``cli.py`` turns them into a one-line message.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from wschat.client.session import ChatSession, SessionConfig, normalise_base_url
from wschat.errors import ConfigError


@dataclass(frozen=True)
class JoinOptions:
    """The ``wschat join`` flags, already parsed."""

    name: str
    url: str
    room: str
    json_lines: bool = False
    token: str | None = None
    cafile: str | None = None
    insecure: bool = False
    headers: Sequence[str] = field(default_factory=tuple)
    bell: bool = True
    history: bool = True


def parse_headers(raw: Sequence[str]) -> list[tuple[str, str]]:
    """Return ``-H "Name: value"`` flags as pairs; raise ``ConfigError`` for a malformed one."""
    pairs = []
    for item in raw:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() or ord(c) < 33 for c in name):
            raise ConfigError(f"invalid header {item!r}: expected 'Name: value'")
        if any(ord(c) < 32 and c != "\t" for c in value):
            raise ConfigError(f"invalid header {item!r}: control character in the value")
        pairs.append((name, value.strip()))
    return pairs


def ssl_context(url: str, cafile: str | None, insecure: bool) -> ssl.SSLContext | None:
    """Return the TLS context for ``url`` or ``None`` for ``ws://``; ``ConfigError`` if mixed."""
    secure = normalise_base_url(url).startswith("wss://")
    if not secure:
        if cafile or insecure:
            raise ConfigError("--cafile and --insecure need a wss:// url")
        return None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load --cafile {cafile!r}: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def build_session(options: JoinOptions) -> ChatSession:
    """Return the session the options describe (nothing is connected yet)."""
    headers = parse_headers(options.headers)
    if options.token:
        headers.append(("Authorization", f"Bearer {options.token}"))
    config = SessionConfig(
        url=options.url,
        name=options.name,
        room=options.room,
        headers=tuple(headers),
        ssl_context=ssl_context(options.url, options.cafile, options.insecure),
        history=options.history,
    )
    return ChatSession(config)


DUMB_TERMS = frozenset({"", "dumb", "unknown"})


def has_cursor_control() -> bool:
    """Return whether ``$TERM`` names a terminal that can move the cursor."""
    return os.environ.get("TERM", "") not in DUMB_TERMS


def join(options: JoinOptions) -> int:
    """Run the client until the user quits or stdin ends; return the exit status."""
    session = build_session(options)  # flags are checked before any UI starts
    if sys.stdin.isatty() and sys.stdout.isatty() and not options.json_lines:
        if not has_cursor_control():
            from wschat.client.lines import run_lines

            return asyncio.run(run_lines(session, bell=options.bell))
        from wschat.client.terminal import run_terminal

        return asyncio.run(run_terminal(session, bell=options.bell))

    from wschat.client.pipe import run_pipe

    return asyncio.run(run_pipe(session, as_json=options.json_lines))
