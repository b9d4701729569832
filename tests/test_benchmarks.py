"""The benchmark script runs end to end (tiny sizes), so it cannot rot. No timed assertion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_benchmark_smoke_run_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    for column in (
        "article's ConnectionManager",
        "websockets broadcast()",
        "Node ws",
        "wschat serve",
    ):
        assert column in table
    assert "connections failed | 0 | 0 | 0 | 0 | 0 |" in table
    assert "- Node reference: ws 8." in table
    # the scale rows: one process at its (lowered) descriptor limit, two workers on Redis
    held = re.findall(r"\| ([\d,]+) of \1 \| 0 \| 0 of [\d,]+ \|", table)
    assert len(held) == 2, table
    assert "Command: `python benchmarks/run.py --smoke" in table
    assert "The kernel's floor" in table and " µs per send" in table
    assert "- Commit: " in table


@pytest.mark.timeout(120)
def test_memory_probe_reports_per_connection_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--n", "20", "--hold", "3"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert "20 connections open; RSS per connection" in done.stdout, done.stderr[-3000:]
