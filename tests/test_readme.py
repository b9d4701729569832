"""The console examples in README.md and docs/security.md still hold against the real code.

Every ```console block is parsed into commands (``$ `` lines) and the output shown under each.
The commands that run offline and in a second or two are run for real, in ``bash``, against
one shared ``wschat serve`` (and, for the one example that needs it, one started with
``--secret``); the test checks each one's exit status and the first line of its output
(stdout and stderr together) against what the docs show, after normalising what varies from
run to run: clock times, numbers (ports, pids, counts, sizes, latencies), paths and tokens. A
first line that is a JSON object is compared by its keys (recursively) and the kinds of its
values instead. The exit status expected is the one the docs show with ``echo $?``; without
one, 1 for a one-line ``wschat: ...`` failure (the README's "Failures are one line and exit
status 1") and 0 otherwise.

How the commands are adapted, and why:

- ``127.0.0.1:8000`` becomes the shared server, ``:8769`` the ``--secret`` one (the README
  says so in a comment), ``:8001`` a port nothing listens on; ``wschat join`` without
  ``--url`` reaches the shared server through ``WSCHAT_URL``; stdin is ``/dev/null`` unless
  the command pipes into it.
- ``wschat bench`` runs with ``-n`` at most 5 and ``--duration 0.5`` (the README's runs take
  10 s with 500 connections); a ``--fail-if`` run is expected to exit 3 exactly when it
  prints ``--fail-if failed`` (whether p99 holds under 50 ms depends on the machine).
- ``curl -s URL`` is an HTTP GET from Python (``| grep -v '^#'`` is applied too):
  ``/healthz`` must have the README's keys, ``/metrics`` no metric the README does not show.
- ``wschat serve --port 8000`` is the shared server itself: its first log line and its
  ``listening on`` line.
- ``wschat join bob`` is run while a ``wschat.v1`` connection holds the name ``bob``.

Skipped (``SKIPPED`` below names each): installing (``pip install``) and this test suite;
interactive examples whose input is typed (``python -m websockets``, ``wschat join`` full
screen and ``TERM=dumb``: tests/client drives them in tmux); ``--log-format json`` (one line
picked from a longer log after a client came and went: tests/server checks the JSON log);
``--broker redis:// --workers 4`` (tests/broker); the Autobahn run with kosoku (minutes, an
extra package); blocks with no ``$`` line (screen excerpts). A new command in a console block
that is neither checked nor listed there fails the test, so the list stays honest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.conftest import Server, start_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "security.md"]

SKIPPED = {
    "pip install": "installs the package",
    "python -m websockets": "interactive: the line after '>' is typed",
    "wschat serve --log-format json": "one line picked from a longer log",
    "wschat serve --broker redis://": "needs Redis: tests/broker run it",
    "wschat serve --port 9001": "the Autobahn run: kosoku, minutes",
    "python -c 'import asyncio, kosoku": "the Autobahn run: kosoku, minutes",
    "wschat join alice --room deploys": "full screen: tests/client drive it in tmux",
    "TERM=dumb wschat join": "typed input: tests/client drive it in tmux",
}
BENCH_MAX_N = 5
BENCH_DURATION = "0.5"


@dataclass
class Command:
    line: str  # as shown, without the "$ "
    shown: list[str]  # the output shown under it


@dataclass
class Block:
    where: str  # file:line, for the test id
    commands: list[Command]


def console_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "```console":
            continue
        commands: list[Command] = []
        for body in lines[i + 1 :]:
            if body.startswith("```"):
                break
            if body.startswith("$ "):
                commands.append(Command(body[2:], []))
            elif commands:
                commands[-1].shown.append(body)
        if commands:
            yield Block(f"{path.name}:{i + 1}", commands)


BLOCKS = [block for path in DOCS for block in console_blocks(path)]


def skip_reason(block: Block) -> str | None:
    for prefix, reason in SKIPPED.items():
        if any(c.line.startswith(prefix) for c in block.commands):
            return reason
    return None


CHECKED = [block for block in BLOCKS if skip_reason(block) is None]


# --- comparing ----------------------------------------------------------------------------


def normalise(line: str) -> str:
    line = line.rstrip()
    line = re.sub(r"eyJ[\w-]*\.[\w-]+\.[\w-]*…?", "TOKEN", line)  # a JWT, shown cut with …
    line = re.sub(r"/[\w.-]+(?:/[\w.-]+)+", "PATH", line)
    line = re.sub(r"\d\d:\d\d:\d\d", "HH:MM:SS", line)
    return re.sub(r"\d+(?:[.,]\d+)*", "N", line)


def shape(value: Any) -> Any:
    """Keys (in order) and kinds of a JSON value: what must match, whatever the numbers."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    return type(value).__name__


def assert_first_line(command: Command, output: str) -> None:
    shown = command.shown[0] if command.shown else ""
    got = output.splitlines()[0] if output else ""
    if shown.startswith("{"):
        assert shape(json.loads(got)) == shape(json.loads(shown)), (command.line, got)
    else:
        assert normalise(got) == normalise(shown), (command.line, got, shown)


def expected_status(command: Command, following: Command | None) -> int:
    if command.line.endswith("; echo $?"):
        return 0  # bash's own: the status shown is checked on the last line
    if following is not None and following.line == "echo $?":
        return int(following.shown[0])
    shown = command.shown[0] if command.shown else ""
    return 1 if re.match(r"wschat: (?!\d\d:\d\d:\d\d )", shown) else 0


# --- running ------------------------------------------------------------------------------


@dataclass
class Place:
    server: Server
    secret_server: Server
    closed_port: int
    shim: Path


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    tmp = tmp_path_factory.mktemp("readme")
    shim = tmp / "bin"
    shim.mkdir()
    (shim / "wschat").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m wschat "$@"\n')
    (shim / "wschat").chmod(0o755)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with ThreadPoolExecutor() as pool:  # the two start at once
        secret = pool.submit(start_server, tmp, "--secret", "s3cret-for-the-readme-0123456789")
        server = start_server(tmp)
        secret_server = secret.result()
    yield Place(server, secret_server, closed_port, shim)
    for each in (server, secret_server):
        each.stop(signal.SIGKILL)
        if each.proc.stdout is not None:
            each.proc.stdout.close()


def adapt(line: str, place: Place) -> str:
    line = line.replace("127.0.0.1:8000", f"127.0.0.1:{place.server.port}")
    line = line.replace("127.0.0.1:8769", f"127.0.0.1:{place.secret_server.port}")
    line = line.replace("127.0.0.1:8001", f"127.0.0.1:{place.closed_port}")
    if line.startswith("wschat bench ") and not line.startswith("wschat bench compare"):
        line = re.sub(r"-n (\d+)", lambda m: f"-n {min(int(m[1]), BENCH_MAX_N)}", line)
        line = re.sub(r" --duration \d+", "", line)
        line = line.replace("wschat bench ", f"wschat bench --duration {BENCH_DURATION} ", 1)
        if "--url" not in line:
            line = line.replace("wschat bench ", f"wschat bench --url {place.server.ws} ", 1)
    return line


def run(line: str, place: Place, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{place.shim}{os.pathsep}{os.environ['PATH']}",
        "WSCHAT_URL": place.server.ws,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        ["bash", "-c", adapt(line, place)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )


def check_curl(command: Command, place: Place) -> None:
    url, _, rest = command.line.removeprefix("curl -s ").partition(" ")
    path = "/" + url.split("/", 1)[1]
    with urllib.request.urlopen(place.server.http + path, timeout=10) as resp:
        body = resp.read().decode()
    lines = body.splitlines()
    if "grep -v '^#'" in rest:
        lines = [x for x in lines if not x.startswith("#")]
    assert_first_line(command, "\n".join(lines))
    if path == "/metrics":  # every metric the server reports is shown
        names = {x.split("{")[0].split(" ")[0] for x in lines}
        assert names <= {x.split("{")[0].split(" ")[0] for x in command.shown}


def check_serve(command: Command, place: Place) -> None:
    first_log = place.server.log().splitlines()[0]
    assert normalise(first_log) == normalise(command.shown[0])
    assert normalise(f"wschat listening on {place.server.http}") == normalise(command.shown[-1])


def check_block(block: Block, place: Place, cwd: Path) -> None:
    """Run the block's commands in order (they may build on each other) and compare."""
    previous: tuple[Command, int, str] | None = None
    for i, command in enumerate(block.commands):
        following = block.commands[i + 1] if i + 1 < len(block.commands) else None
        if command.line == "echo $?":
            assert previous is not None
            before, status, output = previous
            if "--fail-if" in before.line:
                assert status == (3 if "--fail-if failed" in output else 0), output
            else:
                assert status == int(command.shown[0])
            continue
        if command.line.startswith("curl -s "):
            check_curl(command, place)
            continue
        if command.line.startswith("wschat serve --port 8000"):
            check_serve(command, place)
            continue
        assert command.line.startswith(("wschat ", "echo ", "du ")), (
            f"{block.where}: {command.line!r} is neither checked nor in SKIPPED"
        )
        if command.line.startswith("wschat join bob"):
            with connect(
                f"{place.server.ws}/ws/bob", subprotocols=[Subprotocol("wschat.v1")]
            ) as bob:
                bob.recv(timeout=10)  # the welcome: the name is held
                out = run(command.line, place, cwd)
        else:
            out = run(command.line, place, cwd)
        if command.shown:
            assert_first_line(command, out.stdout)
        if command.line.endswith("; echo $?"):  # the status the docs show, printed by bash
            assert out.stdout.splitlines()[-1] == command.shown[-1], out.stdout
        if following is None or following.line != "echo $?" or "--fail-if" not in command.line:
            assert out.returncode == expected_status(command, following), out.stdout
        previous = (command, out.returncode, out.stdout)


@pytest.fixture(scope="module")
def checked(place: Place, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exception | None]:
    """Check every block not skipped, four at a time (most of the time is waiting on servers)."""

    def outcome(block: Block) -> Exception | None:
        try:
            check_block(block, place, tmp_path_factory.mktemp("block"))
        except Exception as exc:  # reported by the block's own test below
            return exc
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([b.where for b in CHECKED], pool.map(outcome, CHECKED), strict=True))


def test_the_docs_have_the_console_blocks_this_test_expects() -> None:
    """A parser that found nothing would check nothing: the docs have 20 blocks, 12 run here."""
    assert len(BLOCKS) >= 15
    assert len(CHECKED) >= 10


@pytest.mark.parametrize("block", CHECKED, ids=[block.where for block in CHECKED])
def test_console_block_runs_as_shown(block: Block, checked: dict[str, Exception | None]) -> None:
    failure = checked[block.where]
    if failure is not None:
        raise failure
