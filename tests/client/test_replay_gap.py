"""``wschat join`` and a capped replay (issue 15): a reconnect after more than
``--replay-max`` messages gets the newest page and ``gap``; the client says some messages
were missed, and shows no error. A real server, the real client in pipe mode.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from tests.conftest import start_server
from tests.helpers import default_signals, fill, wait_until


async def test_the_terminal_client_shows_a_capped_replay_as_missed_messages(
    tmp_path: Path,
) -> None:
    """``wschat join`` (pipe mode) reconnects after 20 messages were stored while it was
    away; the server replays the newest 5 and says gap: one notice, no error."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    db = tmp_path / "history.sqlite3"
    env = {"WSCHAT_REPLAY_MAX": "5"}
    args = ("--port", str(port), "--db", str(db))
    servers = [start_server(tmp_path, *args, env=env)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wschat",
        "join",
        "tail",
        "--url",
        servers[0].ws,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=default_signals,  # terminate() signals it
    )
    assert proc.stdout is not None and proc.stderr is not None
    err: list[str] = []

    async def read_err() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            err.append(line.decode())

    reader = asyncio.create_task(read_err())
    try:
        async with asyncio.timeout(40):
            await wait_until(lambda: any("you are tail" in line for line in err), within=10)
            servers[0].stop()
            await wait_until(lambda: any("reconnecting" in line for line in err), within=10)
            fill(db, "lobby", 20, "while away")
            servers.append(start_server(tmp_path, *args, env=env))
            out = [(await proc.stdout.readline()).decode() for _ in range(5)]
    finally:
        proc.terminate()
        await proc.wait()
        await reader
        for server in servers:
            if server.proc.poll() is None:
                server.stop()
            if server.proc.stdout is not None:
                server.proc.stdout.close()
    assert [line.split(": ", 1)[1].strip() for line in out] == [
        f"{i} while away" for i in range(16, 21)
    ], out
    welcomes = [line for line in err if "you are tail" in line]
    assert len(welcomes) == 2, err
    assert "some messages were missed" in welcomes[1], err
    assert not [line for line in err if "server:" in line or "Traceback" in line], err
