"""History in SQLite: one table, a WAL journal, each message committed before it is delivered.

The file survives restarts, and ids continue where they stopped: the next id is computed
inside the insert's own transaction (``max(id) + 1`` for the room), so even two processes
sharing a file never reuse one. ``:memory:`` keeps history only for the life of the process.
Calls are synchronous and short (an indexed insert), so they run on the event loop thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from wschat.errors import ConfigError
from wschat.store import Replay, StoredMessage

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


class SqliteStore:
    """A ``HistoryStore`` in one SQLite file, keeping at most ``cap`` messages per room."""

    publishes = False

    def __init__(self, path: str | Path, cap: int) -> None:
        self.path = str(path)
        self.cap = cap
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the history directory for {self.path}: {exc}"
                ) from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL + WAL: a committed message survives a crash of the process (not of the OS).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
            if "cid" not in columns:  # a history file from before client message ids
                self._db.execute("ALTER TABLE messages ADD COLUMN cid TEXT")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the history database {self.path}: {exc}") from None

    async def append(
        self,
        room: str,
        sender: str,
        text: str,
        ts: float,
        action: bool = False,
        cid: str | None = None,
    ) -> StoredMessage:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (msg_id,) = db.execute(
                "INSERT INTO messages (room, id, sender, text, ts, action, cid) "
                "SELECT ?, coalesce(max(id), 0) + 1, ?, ?, ?, ?, ? FROM messages WHERE room = ? "
                "RETURNING id",
                (room, sender, text, ts, int(action), cid, room),
            ).fetchone()
            if msg_id > self.cap:
                db.execute(
                    "DELETE FROM messages WHERE room = ? AND id <= ?", (room, msg_id - self.cap)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return StoredMessage(room, msg_id, sender, text, ts, action, cid)

    async def replay(self, room: str, since: int | None, limit: int) -> Replay:
        db = self._db
        row = db.execute(
            "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM messages WHERE room = ?",
            (room,),
        ).fetchone()
        oldest, latest = row
        if since is None:
            rows = db.execute(
                "SELECT room, id, sender, text, ts, action, cid FROM messages WHERE room = ? "
                "ORDER BY id DESC LIMIT ?",
                (room, limit),
            ).fetchall()
            rows.reverse()
            gap = False
        else:
            rows = db.execute(
                "SELECT room, id, sender, text, ts, action, cid FROM messages WHERE room = ? AND id > ? "
                "ORDER BY id",
                (room, since),
            ).fetchall()
            gap = latest > since and oldest > since + 1
        messages = [StoredMessage(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]
        return Replay(messages, latest, gap)

    def size(self) -> int:
        """Return how many messages are stored, all rooms together (for the metrics)."""
        (count,) = self._db.execute("SELECT count(*) FROM messages").fetchone()
        return int(count)

    async def close(self) -> None:
        self._db.close()
