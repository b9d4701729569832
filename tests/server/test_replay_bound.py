"""Issue 15: a replay nobody reads costs a bounded amount, and a ``since`` replay is capped.

Against a default ``wschat serve``, twenty sockets that asked for ``?since=0`` and never read
grew the server by 856 MB: the welcome and its whole replay were one outbox entry, which the
256-entry bound did not see, and the replay for ``since`` had no LIMIT. Now the outbox is
bounded in bytes too (``--outbox-bytes``, 1 MiB) and a ``since`` replay is the newest
``--replay-max`` messages (1000), trimmed to half the byte bound, with ``gap: true`` when
anything was left out. Each test runs a real server.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import Server
from tests.helpers import fill, get_json, wait_until
from tests.server.bystander import BYSTANDER_FLAGS, Bystander
from tests.server.test_command_flood import closed_by
from tests.server.v1client import connect, next_of, recv, say

MB = 1024 * 1024
OUTBOX_BYTES = 1024 * 1024  # the default --outbox-bytes
ATTACKERS = 10
# What one reader that never reads may cost the server: its outbox (at most the byte bound,
# one frame more) and what the transport has taken for the socket (--write-buffer, one
# chunk more): within twice the byte bound. The slack covers the history rows read for the
# replays (a thousand rows of 4 KB each, a few replays at a time) and the allocator.
PER_CONNECTION_BYTES = 2 * OUTBOX_BYTES
SLACK_BYTES = 8 * MB  # measured: 10 MB in all for the ten (before the byte bound: 156 MB)


def slow_consumers(server: Server) -> int:
    """Connections the server has decided to close 4001 (they end once they read, or abort)."""
    return int(get_json(f"{server.http}/healthz")["slow_consumers"])


async def test_unread_since_replays_are_closed_4001_and_cost_a_bounded_amount(
    server_factory: Any, tmp_path: Path
) -> None:
    """Ten sockets ask for ``since=0`` in a room of 4 KB messages and never read.

    Three good writers in the attacker's process say 4 KB messages to that room (150 a
    second) from before the bystander's baseline on, so the unread outboxes keep growing
    until the byte bound closes each one 4001, and the bystander's baseline already carries
    the writers' load: the comparison is with the holders, not with a quiet server. This
    process only polls ``/healthz`` and the server's RSS every 200 ms, so the bystander's
    loop measures the server, not its own neighbours.
    """
    db = tmp_path / "history.sqlite3"
    server: Server = server_factory("--db", str(db), *BYSTANDER_FLAGS)
    fill(db, "big", 3000, "x" * 4000)
    rss = psutil.Process(server.proc.pid)
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.server.attacker",
        "replay-hold",
        "--port",
        str(server.port),
        "--path",
        "/ws/mallory{n}?room=big&since=0",
        "--writer-path",
        "/ws/writer{n}?room=big",
        "--writers",
        "3",
        "--count",
        str(ATTACKERS),
        "--size",
        "4000",
        "--interval",
        "0.02",  # 50 says a second each: under the flags' --rate-limit of 100
        "--seconds",
        "30",
        "--go",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert attacker.stdin is not None and attacker.stdout is not None
    try:
        async with asyncio.timeout(90), Bystander.running(server) as bystander:
            assert await attacker.stdout.readline() == b"ready\n"
            attacker.stdin.write(b"go\n")
            assert json.loads(await attacker.stdout.readline()) == {"writers": 3}
            await bystander.baseline(2.5)
            before = peak = rss.memory_info().rss
            async with bystander.attack():
                attacker.stdin.write(b"hold\n")
                connected = json.loads(await attacker.stdout.readline())
                assert connected == {"connected": ATTACKERS}, connected
                deadline = time.monotonic() + 25
                while (closing := await asyncio.to_thread(slow_consumers, server)) < ATTACKERS:
                    assert time.monotonic() < deadline, (closing, (peak - before) / MB)
                    peak = max(peak, rss.memory_info().rss)
                    await asyncio.sleep(0.2)
                for _ in range(5):  # what the closed sockets left behind, if anything
                    peak = max(peak, rss.memory_info().rss)
                    await asyncio.sleep(0.2)
            attacker.stdin.write(b"read\n")
            result = json.loads(await attacker.stdout.readline())
            await wait_until(lambda: sum(closed_by(server).values()) == ATTACKERS, within=10)
    finally:
        if attacker.returncode is None:
            attacker.kill()
        await attacker.wait()
    assert "error" not in result, result
    assert closed_by(server) == {"4001": ATTACKERS}
    # A 4001 drops what was queued, the close frame comes after what the socket took.
    assert set(result["close_codes"]) <= {4001, None}, result
    growth = peak - before
    bound = ATTACKERS * PER_CONNECTION_BYTES + SLACK_BYTES
    assert growth < bound, f"server RSS grew {growth / MB:.1f} MB (bound {bound / MB:.0f} MB)"
    bystander.check()
    assert "Traceback" not in server.log()


async def test_a_since_replay_is_the_newest_replay_max_with_gap(
    server_factory: Any, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    server: Server = server_factory("--db", str(db))
    fill(db, "busy", 1500, "hello")
    async with asyncio.timeout(30):
        ws, welcome = await connect(server, "alice", room="busy", since=0)
        assert (welcome["latest"], welcome["replay"], welcome["gap"]) == (1500, 1000, True)
        ids = [(await recv(ws))["id"] for _ in range(welcome["replay"])]
        assert ids == list(range(501, 1501))  # the newest page, in order
        await say(ws, "live", cid="c1")  # and live messages follow it
        assert (await next_of(ws, "message"))["id"] == 1501
        await ws.close()

        ws, welcome = await connect(server, "bob", room="busy", since=600)
        assert (welcome["latest"], welcome["replay"], welcome["gap"]) == (1501, 901, False)
        ids = [(await recv(ws))["id"] for _ in range(welcome["replay"])]
        assert ids == list(range(601, 1502))
        await ws.close()


async def test_a_since_replay_fits_in_half_the_outbox_bytes(
    server_factory: Any, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    server: Server = server_factory("--db", str(db), env={"WSCHAT_OUTBOX_BYTES": str(256 * 1024)})
    fill(db, "big", 100, "x" * 4000)  # 400 KB: more than the 128 KiB a replay may take
    async with asyncio.timeout(30):
        ws, welcome = await connect(server, "alice", room="big", since=0)
        replayed = welcome["replay"]
        assert welcome["gap"] is True and 24 <= replayed <= 32, welcome  # 4 KB each
        ids = [(await recv(ws))["id"] for _ in range(replayed)]
        assert ids == list(range(101 - replayed, 101))
        await ws.close()
