"""At its descriptor limit the server stops accepting, instead of failing accept() with EMFILE."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

FD_LIMIT = 160  # the server's `ulimit -n`: room for about 60 connections


def bench(url: str, n: int, report: Path) -> dict:  # type: ignore[type-arg]
    subprocess.run(
        [
            sys.executable, "-m", "wschat", "bench", "--url", url, "-n", str(n),
            "--scenario", "connect", "--duration", "0.5", "--connect-timeout", "1.5",
            "--protocol", "plain", "--json", str(report), "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    return json.loads(report.read_text())["summary"]  # type: ignore[no-any-return]


def test_at_its_descriptor_limit_the_server_pauses_accepting_and_resumes(
    server_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        "--max-connections", "0", "--max-connections-per-ip", "0", fd_limit=FD_LIMIT
    )
    said = re.search(
        r"descriptor limit 160 \(hard 160\): this process accepts up to (\d+)", server.log()
    )
    assert said, server.log()  # the start-up says which limit stops it, before anything opens
    capacity = int(said.group(1))

    over = bench(server.ws, FD_LIMIT + 20, tmp_path / "over.json")  # more than it may hold
    log = server.log()
    assert over["connections"]["opened"] == capacity
    # the others waited in the accept queue and gave up: no connection was reset or refused
    assert set(over["errors"]["by_kind"]) == {"timeout"}, over["errors"]
    assert "at this process's descriptor capacity: not accepting" in log
    assert "Too many open files" not in log and "EMFILE" not in log

    after = bench(server.ws, 5, tmp_path / "after.json")  # the first run's sockets closed
    assert after["connections"]["opened"] == 5 and after["errors"]["total"] == 0
    assert "accepting again" in server.log()
