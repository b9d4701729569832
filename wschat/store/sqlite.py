"""History in SQLite: one table, a WAL journal, each message committed before it is delivered.

The file survives restarts, and ids continue where they stopped: the next id is computed
inside the insert's own transaction (``max(id) + 1`` for the room), so even two processes
sharing a file never reuse one. ``:memory:`` keeps history only for the life of the process.

No SQLite call runs on the event loop (issue 15): a locked file (another process in a write
transaction) makes SQLite wait for the lock, and that wait must not freeze every socket.
Writes run on one dedicated thread, in the order they were asked for, so a room's ids are
strictly increasing in the order of the ``append`` calls; reads run on a second thread with
their own connection (WAL lets them read while a write waits), except for ``:memory:``,
where both share the writer's connection and thread. Every call has a deadline of
``timeout_s`` from the moment it is asked for: SQLite waits for a lock at most until then,
and a call still queued at its deadline is not run. Either way the caller gets
``Unavailable`` and nothing was written, so a ``say`` is acknowledged or refused, never both.

Checkpoints (copying the WAL back into the file) run on a third thread with a connection of
their own, PASSIVE, every ``CHECKPOINT_EVERY`` appends, instead of SQLite's automatic one,
which runs inside the commit that crosses 1000 pages: that commit took 10-15 ms, so under
200 messages of 4 KB a second every sender's round trip had a spike every 1.3 s.

The file (and its ``-wal``/``-shm`` companions, which SQLite creates with the file's mode) is
created readable by its owner only: history is private (docs/security.md).
Imports only the standard library and the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from secrets import token_hex
from typing import TypeVar

from wschat.errors import ConfigError, Unavailable
from wschat.store import Replay, StoredMessage

T = TypeVar("T")

DB_TIMEOUT_S = 2.0  # the default deadline of one store call (``--db-timeout``)
READ_BATCH = 128  # rows fetched at a time by a capped replay (see ``replay``)
CHECKPOINT_EVERY = 256  # appends between two checkpoints (a few pages each: about SQLite's 1000)
WRITER_CHECKPOINT_PAGES = 4000  # the writer's own checkpoint: 4x SQLite's default, rarely due
CHECKPOINT_PASSES = 8  # PASSIVE passes at most per checkpoint, until the WAL is copied to its end
FILE_MODE = 0o600  # the history file and its companions: owner only
_COMPANIONS = ("", "-wal", "-shm")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    ts REAL NOT NULL,
    action INTEGER NOT NULL DEFAULT 0,
    cid TEXT,
    PRIMARY KEY (room, id)
) WITHOUT ROWID
"""

# One row, the history's epoch: made with the file, so ``:memory:`` (whose ids restart with
# the process) has a new one each time, and a file keeps its own (issue 14).
_META = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID
"""

_COLUMNS = "room, id, sender, text, ts, action, cid"


def _private_file(path: str) -> None:
    """Create ``path`` with mode 0600 if missing; take group/other access off existing files."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE))
        for suffix in _COMPANIONS:
            name = path + suffix
            if os.path.exists(name) and os.stat(name).st_mode & 0o077:
                os.chmod(name, FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot create the history database {path}: {exc}") from None


def _connect(path: str, timeout_s: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return db


class SqliteStore:
    """A ``HistoryStore`` in one SQLite file, keeping at most ``cap`` messages per room.

    ``timeout_s`` bounds each call (waiting in the queue and for a lock): past it the call
    raises ``Unavailable`` and has changed nothing.
    """

    publishes = False

    def __init__(self, path: str | Path, cap: int, timeout_s: float = DB_TIMEOUT_S) -> None:
        self.path = str(path)
        self.cap = cap
        self.timeout_s = timeout_s
        memory = self.path == ":memory:"
        if not memory:
            try:
                Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the history directory for {self.path}: {exc}"
                ) from None
            _private_file(self.path)
        try:
            self._db = _connect(self.path, timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL + WAL: a committed message survives a crash of the process (not of the OS).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            if "cid" not in columns:  # a history file from before client message ids
                self._db.execute("ALTER TABLE messages ADD COLUMN cid TEXT")
            self._db.execute(_META)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (token_hex(4),)
            )
            (epoch,) = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            (count,) = self._db.execute("SELECT count(*) FROM messages").fetchone()
            self._read_db = self._db if memory else _connect(self.path, timeout_s)
            self._checkpoint_db = None if memory else _connect(self.path, timeout_s)
            if not memory:
                # See the module docstring: the writer checkpoints only as a backstop, so that
                # a WAL never copied to its end (writes back to back) is still reused.
                self._db.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the history database {self.path}: {exc}") from None
        self.epoch = str(epoch)  # the same for every room: ids restart only with the file
        self._size = int(count)  # kept by the writer thread, read by the metrics
        # One thread each: the writer's queue is the order of the appends (ids follow it).
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wschat-sqlite-write")
        self._reader = (
            self._writer
            if memory
            else ThreadPoolExecutor(1, thread_name_prefix="wschat-sqlite-read")
        )
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="wschat-sqlite-checkpoint")
        self._appends = 0  # written by the writer thread only
        self._checkpoint_queued = False

    async def _call(
        self, executor: ThreadPoolExecutor, db: sqlite3.Connection, job: Callable[[], T]
    ) -> T:
        """Run ``job`` on ``executor``'s thread within the deadline; raise ``Unavailable`` past it."""
        deadline = time.monotonic() + self.timeout_s

        def run() -> T:
            left = deadline - time.monotonic()
            if left <= 0:  # queued behind calls that waited for a lock: do not start late
                raise Unavailable(f"history database busy for {self.timeout_s:g} s")
            db.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
            try:
                return job()
            except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O error
                raise Unavailable(f"history database unavailable: {exc}") from None

        return await asyncio.get_running_loop().run_in_executor(executor, run)

    async def append(
        self,
        room: str,
        sender: str,
        text: str,
        ts: float,
        action: bool = False,
        cid: str | None = None,
    ) -> StoredMessage:
        def insert() -> StoredMessage:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # waits for the write lock (busy_timeout)
            try:
                (msg_id,) = db.execute(
                    "INSERT INTO messages (room, id, sender, text, ts, action, cid) "
                    "SELECT ?, coalesce(max(id), 0) + 1, ?, ?, ?, ?, ? FROM messages "
                    "WHERE room = ? RETURNING id",
                    (room, sender, text, ts, int(action), cid, room),
                ).fetchone()
                deleted = 0
                if msg_id > self.cap:
                    deleted = db.execute(
                        "DELETE FROM messages WHERE room = ? AND id <= ?",
                        (room, msg_id - self.cap),
                    ).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._size += 1 - max(0, deleted)
            self._appends += 1
            if self._appends % CHECKPOINT_EVERY == 0:
                self._checkpoint_soon()
            return StoredMessage(room, msg_id, sender, text, ts, action, cid)

        return await self._call(self._writer, self._db, insert)

    async def replay(
        self,
        room: str,
        since: int | None,
        limit: int,
        *,
        most: int | None = None,
        chars: int | None = None,
    ) -> Replay:
        def read() -> Replay:
            db = self._read_db
            # One read transaction: the bounds and the rows come from the same snapshot.
            db.execute("BEGIN")
            try:
                oldest, latest = db.execute(
                    "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM messages "
                    "WHERE room = ?",
                    (room,),
                ).fetchone()
                if since is None:
                    rows = db.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?",
                        (room, limit),
                    ).fetchall()
                    rows.reverse()
                    gap = False
                elif most is not None:
                    # The newest ``most``, and one more to tell whether any were left out;
                    # read newest first and stopped past ``chars``: ten replays of a thousand
                    # 4 KB rows, of which 128 fit the outbox, held another room's p99.
                    cursor = db.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND id > ? "
                        "ORDER BY id DESC LIMIT ?",
                        (room, since, most + 1),
                    )
                    rows, read = [], 0
                    while batch := cursor.fetchmany(READ_BATCH):
                        rows += batch
                        read += sum(len(row[3]) for row in batch)
                        if chars is not None and read > chars:
                            break  # what was read already passes the budget: gap follows
                    cursor.close()
                    cut = len(rows) > most
                    del rows[most:]
                    rows.reverse()
                    gap = cut or (latest > since and oldest > since + 1)
                else:
                    # Bounded by the per-room cap (--history-size): older ids are deleted.
                    rows = db.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE room = ? AND id > ? ORDER BY id",
                        (room, since),
                    ).fetchall()
                    gap = latest > since and oldest > since + 1
            finally:
                db.execute("COMMIT")
            messages = [StoredMessage(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]
            return Replay(messages, latest, gap, self.epoch)

        return await self._call(self._reader, self._read_db, read)

    def size(self) -> int:
        """Return how many messages are stored, all rooms together (for the metrics).

        A counter kept by the writer, so scraping the metrics never queries the file.
        """
        return self._size

    def _checkpoint_soon(self) -> None:
        """Queue one PASSIVE checkpoint unless one is queued already (called by the writer)."""
        db = self._checkpoint_db
        if db is None or self._checkpoint_queued:
            return
        self._checkpoint_queued = True
        self._checkpointer.submit(self._checkpoint, db)

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        """Copy what the WAL holds into the file without waiting for readers or writers."""
        self._checkpoint_queued = False
        # Frames appended while a pass runs are left for the next pass: a few passes catch up
        # with the writer, and a WAL copied to its end is reused from its start by the next
        # commit (so it does not grow with the history). Busy or locked (another process's
        # checkpoint): the next round copies what this one could not.
        with contextlib.suppress(sqlite3.OperationalError):
            for _ in range(CHECKPOINT_PASSES):
                _busy, log, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if copied >= log:
                    break

    async def close(self) -> None:
        """Finish the queued calls, then close the connections and stop the threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)
        if self._read_db is not self._db:
            self._read_db.close()
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
        self._db.close()  # the last connection to close checkpoints what is left
