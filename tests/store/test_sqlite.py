"""The SQLite store's own contract: ordered ids, a deadline per call, a private file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.store.cases import CAPPED_REPLAYS
from wschat.errors import Unavailable
from wschat.store.sqlite import SqliteStore


async def test_concurrent_appends_get_ids_in_call_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.sqlite3", 1000)
    try:
        stored = await asyncio.gather(*(store.append("r", "a", f"m{i}", 0.0) for i in range(200)))
        assert [(m.id, m.text) for m in stored] == [(i + 1, f"m{i}") for i in range(200)]
        replay = await store.replay("r", 150, 50)
        assert [m.id for m in replay.messages] == list(range(151, 201))
        assert store.size() == 200
    finally:
        await store.close()


async def test_a_locked_file_fails_each_call_by_its_own_deadline(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path, 1000, timeout_s=0.3)
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        assert (await store.append("r", "a", "before", 0.0)).id == 1
        locker.execute("BEGIN EXCLUSIVE")
        started = time.perf_counter()
        beats = 0

        async def heartbeat() -> None:  # the loop stays free while the calls wait
            nonlocal beats
            while True:
                await asyncio.sleep(0.01)
                beats += 1

        beat = asyncio.create_task(heartbeat())
        results = await asyncio.gather(
            *(store.append("r", "a", f"during{i}", 0.0) for i in range(3)),
            store.replay("r", 0, 10),  # reads go on while the writer waits (WAL)
            return_exceptions=True,
        )
        took = time.perf_counter() - started
        beat.cancel()
        assert all(isinstance(r, Unavailable) for r in results[:3]), results
        assert [m.text for m in results[3].messages] == ["before"]  # type: ignore[union-attr]
        assert took < 0.3 + 0.5, took  # the queued calls did not wait a deadline each
        assert beats >= 10, beats
        locker.execute("COMMIT")
        after = await store.append("r", "a", "after", 0.0)
        assert after.id == 2  # nothing refused was written
    finally:
        locker.close()
        await store.close()


@pytest.mark.parametrize("umask", [0o000, 0o022])
async def test_the_file_is_created_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "sub" / "h.sqlite3"
    old = os.umask(umask)
    try:
        store = SqliteStore(path, 10)
        await store.append("r", "a", "hi", 0.0)
        modes = [stat.S_IMODE(os.stat(f"{path}{s}").st_mode) for s in ("", "-wal", "-shm")]
        await store.close()
    finally:
        os.umask(old)
    assert modes == [0o600] * 3


async def test_an_existing_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    store = SqliteStore(path, 10)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_store_call_runs_on_the_callers_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "h.sqlite3", 10)
    seen: list[str] = []
    for db in (store._db, store._read_db):
        db.set_trace_callback(lambda _: seen.append(threading.current_thread().name))

    async def use() -> None:
        await store.append("r", "a", "hi", 0.0)
        await store.replay("r", None, 10)
        await store.close()

    asyncio.run(use())
    assert {name.rsplit("_", 1)[0] for name in seen} == {
        "wschat-sqlite-write",
        "wschat-sqlite-read",
    }, seen


@pytest.mark.parametrize(
    ("since", "most", "ids", "gap"),
    CAPPED_REPLAYS,
)
async def test_a_capped_replay_is_the_newest_page_and_says_gap(
    since: int, most: int | None, ids: list[int], gap: bool
) -> None:
    store = SqliteStore(":memory:", 1000)
    try:
        for i in range(30):
            await store.append("r", "a", f"m{i}", 0.0)
        replay = await store.replay("r", since, 50, most=most)
        assert [m.id for m in replay.messages] == ids
        assert (replay.gap, replay.latest) == (gap, 30)
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_off_the_writer_and_stays_bounded(tmp_path: Path) -> None:
    """Commits never checkpoint (SQLite's automatic one made every 1000th page's commit take
    10-15 ms, a round-trip spike for every sender); a thread of the store's own does, so the
    WAL is copied back into the file and does not grow with the history."""
    path = tmp_path / "h.sqlite3"
    store = SqliteStore(path, 100_000)
    try:
        for i in range(4096):  # 16 MB of text
            await store.append("r", "a", f"{i} " + "x" * 4000, 0.0)
        (autocheckpoint,) = store._db.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert autocheckpoint == 4000  # a backstop: the WAL is copied back before that
        deadline = time.monotonic() + 10
        while path.stat().st_size < 12_000_000:  # what the checkpoints copied into the file
            assert time.monotonic() < deadline, (path.stat().st_size, wal_size(path))
            await asyncio.sleep(0.05)
        # A WAL is reused from its start once a checkpoint copied it all: it stays a few MB.
        assert wal_size(path) < 20_000_000, wal_size(path)
    finally:
        await store.close()


def wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size
