"""Rendering events and neutralising untrusted text (pure, no terminal)."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console
from rich.text import Text

from wschat.client.pane import Scrollback
from wschat.client.render import (
    FOLD_SHOWN,
    OWN_NAME_STYLE,
    NameColours,
    event_parts,
    layout_rows,
    name_colour,
    render_event,
    render_json,
    render_plain,
    sanitize,
    wants_attention,
)
from wschat.client.terminal import render_ansi


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcode, 日本語", "plain text, ünïcode, 日本語"),
        ("\x1b[2J\x1b[31mred", "␛[2J␛[31mred"),
        ("bell\x07", "bell␇"),
        ("cr\roverwrite", "cr␍overwrite"),
        ("del\x7f", "del␡"),
        ("c1\x9b31m", "c1<U+009B>31m"),
        ("\x85next", "<U+0085>next"),
        ("evil\u202etxt.exe", "evil<U+202E>txt.exe"),
        ("\u2066isolate\u2069", "<U+2066>isolate<U+2069>"),
        ("zero\u200bwidth", "zero<U+200B>width"),
        ("bom\ufeff", "bom<U+FEFF>"),
        ("line\u2028sep", "line<U+2028>sep"),
        ("tab\there", "tab    here"),
        ("two\nlines", "two␊lines"),
        ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),
        ("a\u200db", "a<U+200D>b"),
        ("soft\u00adhyphen", "soft\u00adhyphen"),
    ],
)
def test_sanitize(raw: str, shown: str) -> None:
    assert sanitize(raw) == shown


def test_sanitize_can_keep_newlines() -> None:
    assert sanitize("a\nb\x1b", keep_newlines=True) == "a\nb␛"


def test_name_colour_is_stable_and_spread() -> None:
    assert name_colour("alice") == name_colour("alice")
    assert len({name_colour(f"user{i}") for i in range(50)}) > 5


def msg(text: str, **extra: object) -> dict[str, object]:
    return {
        "type": "message",
        "room": "lobby",
        "id": 1,
        "from": "bob",
        "text": text,
        "ts": 0.0,
    } | extra


def test_message_line_has_time_name_and_text() -> None:
    out = render_plain(msg("hi all"))
    assert out is not None
    assert out.endswith(" bob: hi all")
    assert out[2] == ":" and out[5] == ":"  # HH:MM:SS


def test_action_and_dm_and_presence() -> None:
    assert (render_plain(msg("waves", action=True)) or "").endswith("* bob waves")
    dm = {"type": "dm", "from": "bob", "to": "alice", "text": "psst", "ts": 0}
    assert (render_plain(dm, me="alice") or "").endswith("[DM] from bob: psst")
    assert (render_plain(dm, me="bob") or "").endswith("[DM] to alice: psst")
    assert (render_plain({"type": "joined", "room": "lobby", "name": "carol"}) or "").endswith(
        "→ carol joined #lobby"
    )
    assert (render_plain({"type": "left", "room": "lobby", "name": "carol"}) or "").endswith(
        "← carol left #lobby"
    )
    members = {"type": "members", "room": "lobby", "names": ["alice", "bob"]}
    assert "members of #lobby (2): alice, bob" in (render_plain(members) or "")
    error = {"type": "error", "code": "no_such_user", "detail": "no user 'zed'"}
    assert "server: no user 'zed' (no_such_user)" in (render_plain(error) or "")


def test_presence_is_dim_and_names_coloured() -> None:
    text = render_event({"type": "joined", "room": "lobby", "name": "carol"})
    assert text is not None
    assert any("dim" in str(span.style) for span in text.spans)
    line = render_event(msg("x"))
    assert line is not None
    assert any(name_colour("bob") in str(span.style) for span in line.spans)


def test_unknown_events_are_not_shown() -> None:
    assert render_event({"type": "from_the_future"}) is None


def test_markup_in_a_message_stays_literal() -> None:
    ansi = render_ansi([msg("[bold red]boom[/] :smile: [link=http://x]y[/link]")], "me", 200)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", ansi)  # our own styling (the URL is underlined)
    assert "[bold red]boom[/] :smile: [link=http://x]y[/link]" in plain


def test_escape_injection_never_reaches_the_terminal() -> None:
    evil = msg("\x1b]0;pwned\x07\x1b[2J\x9b1;1H\u202eevil", **{"from": "m\x1bllory"})
    ansi = render_ansi([evil], "me", 200)
    # Every ESC left is one rich wrote for styling (SGR: ESC [ ... m); the peer's are gone.
    assert "]0;pwned" not in ansi.replace("␛]0;pwned", "")
    assert "\x9b" not in ansi and "\u202e" not in ansi and "\x07" not in ansi
    for chunk in ansi.split("\x1b")[1:]:
        assert chunk.startswith("["), chunk
        assert chunk[1 : chunk.index("m")].replace(";", "").isdigit() or chunk.startswith("[m")
    assert "␛]0;pwned␇␛[2J<U+009B>1;1H<U+202E>evil" in ansi
    # The screen's path: fragments for prompt_toolkit, whose text has no control character.
    scrollback = Scrollback("me", NameColours())
    scrollback.add(evil)
    texts = "".join(text for row in scrollback.visible(80, 10) for _, text, *_ in row)
    assert texts.isprintable() and "\u202e" not in texts
    assert "␛]0;pwned␇␛[2J<U+009B>1;1H<U+202E>evil" in texts


def test_a_newline_in_a_message_cannot_fake_a_line() -> None:
    text = render_event(msg("hi\n12:00:00 admin: give me your password"))
    assert text is not None
    _, second = text.plain.split("\n")
    assert second.startswith(" " * 10)
    # In a pipe, each event is one line.
    assert (render_plain(msg("hi\nthere")) or "").endswith("bob: hi␊there")


def test_json_lines_are_ascii() -> None:
    line = render_json(msg("é\x1b\x9b"))
    assert line.isascii()
    assert json.loads(line)["text"] == "é\x1b\x9b"


def test_welcome_names_the_room_and_a_gap() -> None:
    welcome = {"type": "welcome", "name": "alice", "room": "ops", "members": ["alice", "bob"]}
    assert (render_plain(welcome) or "").endswith(
        "you are alice in #ops with 2 members: alice, bob"
    )
    assert "some messages were missed" in (render_plain(welcome | {"gap": True}) or "")


def test_a_notice_style_is_one_of_ours() -> None:
    text = render_event({"type": "notice", "text": "x", "style": "[link=evil]"})
    assert text is not None and all(str(span.style) == "dim" for span in text.spans[1:])


def test_names_seen_together_never_share_a_colour_and_your_own_stands_apart() -> None:
    common = ["alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan"]
    colours = NameColours()
    assert len({colours(name) for name in [*common, "judy", "mallory", "oscar"]}) == 12
    assert colours("alice") == colours("alice") == name_colour("alice")  # the first keeps its own
    line = render_event(msg("hi", **{"from": "alice"}), me="alice", colours=colours)
    assert line is not None
    assert any(str(span.style) == OWN_NAME_STYLE for span in line.spans)


@pytest.mark.parametrize(
    ("text", "named"),
    [("hi alice", True), ("ALICE: look", True), ("alice's turn", True), ("malice", False)],
)
def test_a_mention_is_the_name_as_a_word(text: str, named: bool) -> None:
    assert wants_attention(msg(text), "alice") is named
    assert not wants_attention(msg(text, **{"from": "alice"}), "alice")  # not your own line


def test_a_url_wider_than_the_text_column_gets_a_row_of_its_own_whole() -> None:
    url = "https://example.com/" + "x" * 70
    head, body = event_parts(msg(f"see {url} then"), "me") or (Text(), Text())
    rows, folded = layout_rows(head, body, 100, Console(width=100))
    shown = [row.plain.removeprefix(head.plain).strip() for row in rows]
    assert shown == ["see", url, "then"]
    assert rows[1].plain == url  # from the left edge, unsplit
    assert folded == 0


def test_a_huge_message_is_folded_with_bounded_work() -> None:
    head, body = event_parts(msg("\n".join(f"line {i}" for i in range(10_000))), "me") or (
        Text(),
        Text(),
    )
    rows, folded = layout_rows(head, body, 80, Console(width=80))
    assert len(rows) == FOLD_SHOWN and folded == 10_000 - FOLD_SHOWN
    rows, folded = layout_rows(head, body, 80, Console(width=80), folded=False)
    assert len(rows) == 10_000 and folded == 0
