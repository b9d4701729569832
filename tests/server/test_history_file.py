"""``wschat serve`` says where its history lives, and refuses a ``--db`` it cannot use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Server


def test_startup_logs_the_sqlite_path(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "chat.sqlite3"
    server: Server = server_factory("--db", str(db))
    server.stop()
    lines = [line for line in server.log().splitlines() if "history: " in line]
    assert lines == [f"INFO:     history: SQLite file {db}"]


def test_startup_logs_memory_only_in_json(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--db", ":memory:", "--log-format", "json")
    server.stop()
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    history = [e for e in entries if e.get("event") == "history"]
    assert len(history) == 1
    assert history[0]["db"] == ":memory:"
    assert history[0]["message"].startswith("history: in memory only")


def test_db_in_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    db = missing / "chat.sqlite3"
    result = subprocess.run(
        [sys.executable, "-m", "wschat", "serve", "--port", "0", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"wschat: --db {db}: directory {missing} does not exist"
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # never listened
    assert not (tmp_path / "no").exists()
