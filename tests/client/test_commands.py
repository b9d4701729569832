"""Parsing typed lines: slash commands, arguments, usage errors (pure, no event loop)."""

from __future__ import annotations

import pytest

from wschat.client.commands import Action, UsageError, parse_line
from wschat.protocol import Dm, Join, Rooms, Say, Who


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello", Say("hello")),
        ("  spaced  ", Say("  spaced  ")),
        ("/me waves", Say("waves", action=True)),
        ("/msg bob hi there", Dm("bob", "hi there")),
        ("/join ops", Join("ops")),
        ("/join #ops", Join("ops")),
        ("/who", Who()),
        ("/WHO", Who()),
        ("/rooms", Rooms()),
        ("/leave", Action.LEAVE),
        ("/help", Action.HELP),
        ("/quit", Action.QUIT),
        ("/exit", Action.QUIT),
        ("//etc/passwd is gone", Say("/etc/passwd is gone")),
        ("[bold]not markup[/bold]", Say("[bold]not markup[/bold]")),
    ],
)
def test_parse(line: str, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_blank_lines_do_nothing(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("/msg", "usage: /msg NAME TEXT"),
        ("/msg bob", "usage: /msg NAME TEXT"),
        ("/join", "usage: /join ROOM"),
        ("/join a b", "usage: /join ROOM"),
        ("/join bad\u202eroom", "invalid room"),
        ("/me", "usage: /me ACTION"),
        ("/frobnicate", "unknown command '/frobnicate'"),
        ("/nick bobby", "there is no /nick: a name is the identity the server"),
        ("x" * 4001, "longer than 4000"),
        ("/me " + "x" * 4001, "longer than 4000"),
    ],
)
def test_usage_errors(line: str, needle: str) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, UsageError)
    assert needle in parsed.message
