"""``wschat join`` end to end: the real client in tmux or a pipe, against a real server.

The interactive tests run the client in a tmux pane and assert on the pane's contents, which
is what a person would see; a second user ("bob") is a bare v1 connection from the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.client.tmux import Pane
from tests.conftest import Server, start_server
from tests.helpers import default_signals
from tests.server.v1client import connect, next_of, say
from wschat.auth import issue_token

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


async def next_from(ws: ClientConnection, sender: str, kind: str = "message") -> dict[str, Any]:
    """Return the next ``kind`` event sent by ``sender``, skipping everything else."""
    while (event := await next_of(ws, kind))["from"] != sender:
        pass
    return event


@pytest.fixture
async def bob(server: Server) -> AsyncIterator[ClientConnection]:
    ws, _ = await connect(server, "bob")
    yield ws
    await ws.close()


async def test_chat_and_every_command(
    server: Server, bob: ClientConnection, panes: Callable[..., Pane]
) -> None:
    pane = panes("alice", "--url", server.ws)
    await pane.wait_for("you are alice in #lobby with 2 members: alice, bob")
    await pane.wait(lambda _: "alice · #lobby · 2 online" in pane.screen())  # the status line

    await say(bob, "hello alice")
    await pane.wait_for("bob: hello alice")

    pane.type("hi bob")
    pane.keys("Enter")
    assert (await next_from(bob, "alice"))["text"] == "hi bob"
    await pane.wait_for("alice: hi bob")

    pane.type("/me waves")
    pane.keys("Enter")
    assert (await next_from(bob, "alice")).get("action") is True
    await pane.wait_for("* alice waves")

    pane.type("/msg bob psst")
    pane.keys("Enter")
    dm = await next_of(bob, "dm")
    assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")
    await pane.wait_for("[DM] to bob: psst")
    await bob.send(json.dumps({"type": "dm", "to": "alice", "text": "back"}))
    await pane.wait_for("[DM] from bob: back")

    pane.type("/who")
    pane.keys("Enter")
    await pane.wait_for("members of #lobby (2): alice, bob")

    pane.type("/help")
    pane.keys("Enter")
    await pane.wait_for("/msg NAME TEXT  send a direct message")

    pane.type("/nope")
    pane.keys("Enter")
    await pane.wait_for("unknown command '/nope'")

    pane.type("/wh")
    pane.keys("Tab")
    await pane.wait(lambda _: "/who" in pane.input_line())
    pane.keys("C-u")
    pane.type("/msg b")
    pane.keys("Tab")
    await pane.wait(lambda _: "/msg bob" in pane.input_line())
    pane.keys("C-u")

    pane.type("/join ops")
    pane.keys("Enter")
    assert (await next_of(bob, "left"))["name"] == "alice"
    await pane.wait_for("you are alice in #ops with 1 member: alice")
    await pane.wait(lambda _: pane.input_line() == "#ops>")

    pane.type("/quit")
    pane.keys("Enter")
    assert await pane.exit_status() == 0
    assert "Traceback" not in pane.everything()


async def test_typing_survives_a_burst(
    server_factory: Callable[..., Server], panes: Callable[..., Pane]
) -> None:
    """Keys typed while 200 messages arrive go to the input line, never among the messages
    (issue 17: 13 of 200 lines had a typed key in front), and the status and input lines are
    on screen in every sample."""
    server = server_factory("--rate-limit", "0")  # bob sends 200 messages at once
    bob, _ = await connect(server, "bob")
    pane = panes("alice", "--url", server.ws, height=220)  # every message stays on screen
    await pane.wait_for("you are alice")
    pane.type("half a thought")
    await pane.wait(lambda _: pane.input_line() == "#lobby> half a thought")

    async def burst() -> None:
        for i in range(200):
            await say(bob, f"burst {i:03d}")
            if i % 10 == 0:
                await asyncio.sleep(0.03)

    sender = asyncio.create_task(burst())
    typing = list(", finished")
    samples: list[str] = []
    async with asyncio.timeout(20):
        while "bob: burst 199" not in (screen := pane.screen()):
            samples.append(screen)
            if typing:
                pane.type(typing.pop(0))  # a key at a time, while the burst scrolls past
            await asyncio.sleep(0.02)
    await sender
    pane.type("".join(typing))
    await pane.wait(lambda _: pane.input_line() == "#lobby> half a thought, finished")
    message = re.compile(r"\d\d:\d\d:\d\d (bob: burst \d{3}|you are alice .*|→ bob joined .*)")
    for screen in [*samples, pane.screen()]:
        lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
        typed = [line for line in lines if line.startswith("#lobby> ")]
        status = [line for line in lines if line.startswith(" alice · #lobby")]
        assert len(typed) == 1 and typed[0].startswith("#lobby> half a thought"), screen
        assert len(status) == 1, screen
        shown = [line for line in lines if line not in typed + status]
        assert all(message.fullmatch(line) for line in shown), screen  # no typed key there
    pane.keys("Enter")
    event = await next_from(bob, "alice")
    assert event["text"] == "half a thought, finished"
    text = await pane.wait_for("alice: half a thought, finished")
    shown = [line.split(" ", 1)[1].rstrip() for line in text.splitlines() if " bob: burst " in line]
    assert shown == [f"bob: burst {i:03d}" for i in range(200)]  # all, in order, once each
    await bob.close()


async def test_escape_injection_is_neutralised(
    server: Server, bob: ClientConnection, panes: Callable[..., Pane]
) -> None:
    pane = panes("alice", "--url", server.ws)
    await pane.wait_for("you are alice")
    await say(bob, "before")
    await say(bob, "\x1b]2;pwned\x07\x1b[2J\x1b[H\x9b31m\u202eevil [bold red]loud[/] :smile:")
    text = await pane.wait_for("bob: ␛]2;pwned␇␛[2J␛[H<U+009B>31m<U+202E>evil [bold red]loud[/]")
    assert "bob: before" in text  # the screen was not cleared
    assert "pwned" not in pane.tmux("display-message", "-p", "-t", "w", "#{pane_title}")


async def test_server_restart_resumes_without_loss_or_duplicates(
    tmp_path: Path, panes: Callable[..., Pane]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    db = str(tmp_path / "history.sqlite3")
    servers = [start_server(tmp_path, "--port", str(port), "--db", db)]
    try:
        pane = panes("alice", "--url", servers[0].ws)
        await pane.wait_for("you are alice")
        ws, _ = await connect(servers[0], "bob")
        for i in range(3):
            await say(ws, f"before {i}")
        await pane.wait_for("bob: before 2")
        servers[0].stop()  # SIGTERM: every client is closed with 1001
        await pane.wait_for("reconnecting")
        pane.type("typed while offline")
        pane.keys("Enter")
        await pane.wait_for("will send after reconnecting: typed while offline")

        servers.append(start_server(tmp_path, "--port", str(port), "--db", db))
        ws, _ = await connect(servers[1], "bob")
        await say(ws, "after restart")
        text = await pane.wait(
            lambda t: "bob: after restart" in t and "alice: typed while offline" in t, within=20
        )
        await ws.close()
        for line in ["bob: before 0", "bob: before 1", "bob: before 2", "bob: after restart"]:
            assert text.count(line) == 1, (line, text)
        assert text.count("alice: typed while offline") == 1, text
        await pane.wait(lambda _: "#lobby · " in pane.screen())  # online again
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
            if server.proc.stdout is not None:
                server.proc.stdout.close()


async def test_lines_still_queued_at_quit_are_marked_unsent(
    server: Server, panes: Callable[..., Pane]
) -> None:
    pane = panes("alice", "--url", server.ws)
    await pane.wait_for("you are alice")
    server.stop()
    await pane.wait_for("reconnecting")
    pane.type("lost line")
    pane.keys("Enter")
    await pane.wait_for("will send after reconnecting: lost line")
    await pane.wait(lambda _: "1 unsent queued" in pane.screen())
    pane.type("/quit")
    pane.keys("Enter")
    assert await pane.exit_status() == 1  # issue 17: a line was lost, so not a success
    await pane.wait_for("unsent: lost line")


async def test_ctrl_c_and_ctrl_d_quit_cleanly(
    server: Server, bob: ClientConnection, panes: Callable[..., Pane]
) -> None:
    first = panes("alice", "--url", server.ws)
    await first.wait_for("you are alice")
    first.type("a line for the history")
    first.keys("Enter")
    await first.wait_for("alice: a line for the history")
    first.type("line one")
    first.keys("Escape", "Enter")  # Alt-Enter: a new line in the same message
    first.type("line two")
    first.keys("Enter")
    assert (await next_from(bob, "alice"))["text"] == "a line for the history"
    assert (await next_from(bob, "alice"))["text"] == "line one\nline two"
    first.type("half typed")
    first.keys("C-c")  # issue 17: clears the line, as in weechat and irssi, and does not quit
    await first.wait(lambda _: first.input_line() == "#lobby>")
    await first.wait_for("alice: line one")
    assert not first.exit_file.exists()
    first.keys("C-c")  # on an empty line: quits
    assert await first.exit_status() == 130
    assert "Traceback" not in first.everything()

    second = panes("alice", "--url", server.ws)
    await second.wait_for("you are alice")
    second.keys("Up")  # history is kept across runs
    await second.wait(lambda _: second.input_line() == "#lobby> line one")
    second.keys("C-c", "C-d")  # clear the recalled line, then quit
    assert await second.exit_status() == 0
    assert "Traceback" not in second.everything()


async def test_history_file_is_private(
    server: Server, panes: Callable[..., Pane], tmp_path: Path
) -> None:
    # The history keeps typed DMs: owner only, whatever the umask, and an older file is
    # tightened. WSCHAT_HOME (tmp_path / "home") does not exist yet: the client makes it.
    old_umask = os.umask(0o022)
    try:
        first = panes("alice", "--url", server.ws)
    finally:
        os.umask(old_umask)
    await first.wait_for("you are alice")
    first.type("/msg alice a secret for myself")
    first.keys("Enter")
    await first.wait_for("a secret for myself")
    first.keys("C-d")
    assert await first.exit_status() == 0
    home = tmp_path / "home"
    history = home / "history"
    assert "a secret for myself" in history.read_text()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(history.stat().st_mode) == 0o600

    history.chmod(0o644)  # as versions before this one left it
    second = panes("alice", "--url", server.ws)
    await second.wait_for("you are alice")
    second.keys("C-d")
    assert await second.exit_status() == 0
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


# --- pipe mode and errors -------------------------------------------------------------------


def run_join(*args: str, stdin: str = "", timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wschat", "join", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_pipe_sends_each_line(server: Server) -> None:
    ws, _ = await connect(server, "watcher", room="ops")
    out = await asyncio.to_thread(
        run_join, "ci", "--url", server.ws, "--room", "ops", stdin="deploy done\n\nsecond\n"
    )
    assert out.returncode == 0, out.stderr
    got = [(await next_of(ws, "message"))["text"] for _ in range(2)]
    assert got == ["deploy done", "second"]
    assert "Traceback" not in out.stderr
    await ws.close()


async def test_pipe_is_paced_under_the_servers_rate_limit(server: Server) -> None:
    ws, _ = await connect(server, "watcher")
    lines = [f"line {i}" for i in range(60)]  # more than the server's burst of 40
    out = await asyncio.to_thread(run_join, "ci", "--url", server.ws, stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    assert "rate_limited" not in out.stdout + out.stderr
    assert [(await next_from(ws, "ci"))["text"] for _ in lines] == lines
    await ws.close()


async def test_pipe_prints_events_as_lines_and_json(server: Server) -> None:
    ws, _ = await connect(server, "bob")
    await say(ws, "hi \x1b[31mthere")  # history, replayed to each reader
    text = await asyncio.to_thread(run_join, "reader", "--url", server.ws, stdin="")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].endswith(" bob: hi ␛[31mthere")
    as_json = await asyncio.to_thread(run_join, "reader", "--url", server.ws, "--json")
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert events[0]["type"] == "welcome"
    assert events[1]["type"] == "message" and events[1]["text"] == "hi \x1b[31mthere"
    assert "\x1b" not in as_json.stdout
    await ws.close()


@pytest.mark.parametrize("source", ["devnull", "file"])
def test_pipe_reads_dev_null_and_regular_files(server: Server, tmp_path: Path, source: str) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("from a file\n")
    with open(os.devnull if source == "devnull" else path) as stdin:
        out = subprocess.run(
            [sys.executable, "-m", "wschat", "join", "ci", "--url", server.ws, "--json"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["type"] == "welcome"
    assert "Traceback" not in out.stderr


def test_token_is_sent_and_a_refusal_is_one_clear_line(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory("--secret", "s3cret-for-tests-only-0123456789")
    refused = run_join("alice", "--url", server.ws)
    assert refused.returncode == 1
    line = refused.stderr.strip()
    assert line.startswith(f"wschat: refused by the server at {server.ws}: HTTP 401"), line
    assert line.endswith("(see --token)") and len(line.splitlines()) == 1
    token = subprocess.run(
        [sys.executable, "-m", "wschat", "token", "alice"],
        env={**os.environ, "WSCHAT_SECRET": "s3cret-for-tests-only-0123456789"},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout.strip()
    ok = run_join("alice", "--url", server.ws, "--token", token, stdin="with a token\n")
    assert ok.returncode == 0, ok.stderr
    other = run_join("bob", "--url", server.ws, "--token", token)
    assert other.returncode == 1
    assert "HTTP 403" in other.stderr


def test_no_server_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    out = run_join("alice", "--url", f"ws://127.0.0.1:{port}")
    assert out.returncode == 1
    assert out.stderr.strip() == f"wschat: no server at ws://127.0.0.1:{port}: connection refused"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a b"], "wschat: invalid name 'a b': name contains a forbidden character U+0020"),
        (["alice", "--room", "a\u202eb"], "wschat: invalid room"),
        (["alice", "--url", "ftp://x"], "wschat: invalid url 'ftp://x'"),
        (["alice", "--cafile", "/nonexistent"], "wschat: --cafile and --insecure need a wss://"),
        (["alice", "-H", "bad header"], "wschat: invalid header 'bad header'"),
    ],
)
def test_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    out = run_join(*args)
    assert out.returncode == 2  # bad usage, as for every command
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


async def test_name_taken_is_one_clear_line(server: Server, bob: ClientConnection) -> None:
    out = await asyncio.to_thread(run_join, "bob", "--url", server.ws)
    assert out.returncode == 1
    assert out.stderr.strip() == "wschat: the name 'bob' is taken: choose another one"


def test_an_expired_token_ends_the_pipe_client_with_one_line(
    server_factory: Callable[..., Server],
) -> None:
    """Closed 4011 at the token's exp, the client stops (no reconnection) and says why."""
    secret = "s3cret-for-tests-only-0123456789"
    server = server_factory("--secret", secret)
    token = issue_token("alice", secret, ttl_s=4)  # exp is a whole second: 3-4 s from now
    issued = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wschat", "join", "alice", "--url", server.ws, "--token", token],
        stdin=subprocess.PIPE,  # kept open: only the server ends this client
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.wait(8) == 1
        assert time.monotonic() - issued < 6
        assert proc.stderr is not None
        lines = proc.stderr.read().splitlines()
        assert "you are alice" in lines[0]
        assert lines[1:] == [
            "wschat: your token expired: get a new one with "
            "'wschat token alice --secret ...' and pass it with --token"
        ]
        assert server.log().count("open alice ") == 1  # no reconnection attempt
        assert server.log().count("refused") == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def test_pipe_mode_reconnects_and_ctrl_c_exits_130(server: Server) -> None:
    """The pipe client keeps reading while stdin is open and reconnects; SIGINT ends it (130)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wschat", "join", "tail", "--url", server.ws],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,  # SIGINT works also when pytest runs with & or nohup
    )
    try:
        assert proc.stderr is not None
        assert "you are tail" in proc.stderr.readline()
        server.stop()
        assert "reconnecting" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
