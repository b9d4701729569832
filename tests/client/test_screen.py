"""``wschat join`` as a daily chat client (issue 17): the real client in tmux, a real server.

Each test fails on the client before issue 17: a room switch that lost messages silently, a
refused reconnect that dropped a typed line, no bell for a mention, a stale prompt after a
resize, escape sequences under ``TERM=dumb``, huge messages flooding the screen, and history
printed by a pipe that did not want it. One server (with a small replay) is shared by all but
the restart test; each test has its own room.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection

from tests.client.tmux import Pane
from tests.conftest import Server, start_server
from tests.server.v1client import connect, next_of, say

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

REPLAY_COUNT = 5  # a join without since replays this many
REPLAY_MAX = 20  # a join with since replays at most this many


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("screen"),
        "--replay-count",
        str(REPLAY_COUNT),
        "--replay-max",
        str(REPLAY_MAX),
        "--rate-limit",
        "0",
    )
    yield server
    server.stop(signal.SIGKILL)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


def lines_of(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


async def say_all(ws: ClientConnection, texts: list[str]) -> None:
    """Say each text and read its echo (unread echoes would hold up the close handshake)."""
    for text in texts:
        await say(ws, text)
    for _ in texts:
        await next_of(ws, "message")


async def command(pane: Pane, line: str, shows: str) -> str:
    pane.type(line)
    pane.keys("Enter")
    return await pane.wait_for(shows)


async def test_a_room_switch_and_back_shows_every_message_or_how_many_were_missed(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    """Bob's case from issue 17: messages said in #news while ann was in #ops."""
    ben, _ = await connect(shared, "ben", room="news")
    pane = panes("ann", "--url", shared.ws, "--room", "news", height=60)
    await pane.wait_for("you are ann in #news")
    await command(pane, "/join ops", "you are ann in #ops")
    await say_all(ben, [f"first away {i:02d}" for i in range(10)])  # more than 5 replayed
    await command(pane, "/join news", "first away 09")
    shown = [line for line in lines_of(pane.screen()) if "ben: first away" in line]
    assert [line.split("ben: ")[1] for line in shown] == [f"first away {i:02d}" for i in range(10)]

    pane.type("/join ops")
    pane.keys("Enter")
    await pane.wait(lambda text: text.count("you are ann in #ops") == 2)
    # More than --replay-max: the oldest 10 cannot be replayed.
    await say_all(ben, [f"second away {i:02d}" for i in range(30)])
    text = await command(pane, "/join news", "second away 29")
    shown = [line for line in lines_of(text) if "ben: second away" in line]
    assert [line.split("ben: ")[1] for line in shown] == [
        f"second away {i:02d}" for i in range(10, 30)
    ]
    assert "10 messages in #news missed (ids 11 to 20: not replayed)" in text
    await ben.close()


async def test_a_mention_and_a_dm_ring_the_bell_and_a_peers_bel_never_does(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    bo, _ = await connect(shared, "bo", room="bells")
    amy = panes("amy", "--url", shared.ws, "--room", "bells")
    carol = panes("carol", "--url", shared.ws, "--room", "bells", "--no-bell")
    await amy.wait_for("you are amy")
    await carol.wait_for("you are carol")
    await say(bo, "\x07ding")  # a BEL in peer text is shown as ␇, never rung
    await amy.wait_for("bo: ␇ding")
    await carol.wait_for("bo: ␇ding")
    assert b"\x07" not in amy.raw() + carol.raw()
    await say(bo, "ping Amy and carol")
    await amy.wait_for("bo: ping Amy and carol")
    await carol.wait_for("bo: ping Amy and carol")
    await amy.wait(lambda _: amy.raw().count(b"\x07") == 1)
    assert b"\x07" not in carol.raw()  # --no-bell
    await bo.close()


async def test_a_resize_re_wraps_and_leaves_no_stale_prompt(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    bea, _ = await connect(shared, "bea", room="resize")
    pane = panes("ada", "--url", shared.ws, "--room", "resize", width=100, height=20)
    await pane.wait_for("you are ada")
    await say(bea, " ".join(f"word{i:02d}" for i in range(20)))  # 139 characters
    await pane.wait_for("word19")
    pane.type("half a line")
    await pane.wait(lambda _: pane.input_line() == "#resize> half a line")
    pane.resize(40, 20)
    await pane.wait(lambda _: "word19" in pane.screen() and pane.screen().count("\n") < 21)
    narrow = [line for line in lines_of(pane.screen()) if "word" in line]
    assert len(narrow) > 3, narrow  # wrapped, each row indented under the text
    assert all(row.startswith(" " * 13 + "word") for row in narrow[1:]), narrow
    pane.resize(100, 20)
    await pane.wait(lambda _: sum("word" in line for line in lines_of(pane.everything())) == 2)
    everything = lines_of(pane.everything())
    assert everything[0].endswith("you are ada in #resize with 2 members: ada, bea")
    assert [line for line in everything if line.startswith("#")] == ["#resize> half a line"]
    await bea.close()


async def test_term_dumb_gets_plain_lines_and_no_escape_byte(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    bud, _ = await connect(shared, "bud", room="dumb")
    pane = panes("al", "--url", shared.ws, "--room", "dumb", env={"TERM": "dumb"})
    await pane.wait_for("you are al in #dumb")
    await pane.wait(lambda _: pane.input_line() == "#dumb>")  # a visible prompt
    await say(bud, "hi \x1b[31mal")
    await pane.wait_for("bud: hi ␛[31mal")
    pane.type("hello bud")
    pane.keys("Enter")
    while (event := await next_of(bud, "message"))["from"] != "al":
        pass
    assert event["text"] == "hello bud"
    await pane.wait_for("al: hello bud")
    await command(pane, "/quit", "#dumb> /quit")
    assert await pane.exit_status() == 0
    assert b"\x1b" not in pane.raw()
    await bud.close()


async def test_huge_messages_are_folded_expanded_and_scrolled_back(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    bill, _ = await connect(shared, "bill", room="huge")
    for n in range(3):
        await say(bill, "\n".join(f"huge {n} line {i:03d}" for i in range(250)))
    pane = panes("ava", "--url", shared.ws, "--room", "huge", height=100)
    await pane.wait_for("you are ava")
    text = await pane.wait(lambda t: t.count("more lines: /expand shows them") == 3)
    assert len(lines_of(text)) < 40  # 750 lines were said
    assert "huge 2 line 007" in text and "huge 2 line 008" not in text
    await command(pane, "/expand", "huge 2 line 249")
    # PageUp scrolls the client's own scrollback (it recalled input history before).
    pane.keys("PageUp")
    await pane.wait(lambda _: "huge 2 line 150" in pane.screen() and "(PageDown)" in pane.screen())
    assert "huge 2 line 249" not in pane.screen() and pane.input_line() == "#huge>"
    pane.keys("PageDown")
    await pane.wait(lambda _: "huge 2 line 249" in pane.screen())
    await bill.close()


async def test_rooms_lists_the_rooms_and_leave_goes_back_to_the_room_before(
    shared: Server, panes: Callable[..., Pane]
) -> None:
    cy, _ = await connect(shared, "cy", room="garden")
    dee, _ = await connect(shared, "dee", room="garden")
    fay, _ = await connect(shared, "fay", room="porch")
    pane = panes("eve", "--url", shared.ws, "--room", "porch", width=200, height=30)
    await pane.wait_for("you are eve in #porch")
    text = await command(pane, "/rooms", "rooms with members")
    listed = next(line for line in lines_of(text) if "rooms with members" in line)
    assert "#garden (2)" in listed and "#porch (2)" in listed, listed
    await command(pane, "/leave", "#porch is your only room: /quit leaves it")
    await command(pane, "/join garden", "you are eve in #garden")
    await say_all(fay, ["said on the porch while eve was away"])
    pane.type("/leave")
    pane.keys("Enter")
    await pane.wait(lambda text: text.count("you are eve in #porch") == 2)
    await pane.wait_for("fay: said on the porch while eve was away")
    for ws in (cy, dee, fay):
        await ws.close()


def test_a_pipe_with_no_history_prints_only_what_is_said_after_it_joined(shared: Server) -> None:
    said = subprocess.run(
        [sys.executable, "-m", "wschat", "join", "old", "--url", shared.ws, "--room", "quiet"],
        input="said before\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert said.returncode == 0, said.stderr
    ci = ["ci", "--url", shared.ws, "--room", "quiet", "--no-history"]
    out = subprocess.run(
        [sys.executable, "-m", "wschat", "join", *ci],
        input="deploy done\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert "said before" not in out.stdout
    assert out.stdout.strip().endswith("ci: deploy done"), out.stdout


async def test_a_refused_reconnect_prints_the_unsent_line_and_exits_1(
    tmp_path: Path, panes: Callable[..., Pane]
) -> None:
    """The server restarts, someone else takes the name first: the reconnect is refused for
    good (4009), and the line typed while offline is printed, not lost silently."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    args = ("--port", str(port), "--db", str(tmp_path / "history.sqlite3"))
    servers = [start_server(tmp_path, *args)]
    try:
        pane = panes("alice", "--url", servers[0].ws)
        await pane.wait_for("you are alice")
        servers[0].stop()
        await pane.wait_for("reconnecting")
        await command(pane, "typed while offline", "will send after reconnecting")
        # The client is stopped while the name is taken, so it cannot win the race.
        client = pane.client_pid()
        os.kill(client, signal.SIGSTOP)
        try:
            servers.append(start_server(tmp_path, *args))
            impostor, _ = await connect(servers[1], "alice")
        finally:
            os.kill(client, signal.SIGCONT)
        assert await pane.exit_status(within=20) == 1
        text = await pane.wait_for("unsent: typed while offline")
        assert "the name 'alice' is taken" in text
        await impostor.close()
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
            if server.proc.stdout is not None:
                server.proc.stdout.close()
        await asyncio.sleep(0)
