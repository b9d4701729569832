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
from pathlib import Path
from typing import Any

from tests.conftest import Server
from tests.helpers import fill
from tests.server.v1client import connect, next_of, recv, say


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
