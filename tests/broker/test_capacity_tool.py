"""benchmarks/redis_capacity.py runs end to end at a tiny size, so the capacity model in
docs/scaling.md stays reproducible. No timed assertion: it only has to finish and report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker.conftest import REDIS_SERVER

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.timeout(90)
def test_redis_capacity_script_finishes_with_its_table() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI has it)")
    args = ["--nodes", "1", "--talkers", "2", "--messages", "30", "--repeat", "1", "--idle", "0.1"]
    args += ["--idle-users", "10"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "redis_capacity.py"), *args],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Command: `python benchmarks/redis_capacity.py --nodes 1" in done.stdout
    assert "| nodes | Redis CPU µs / room message |" in done.stdout
    assert "\n| 1 | " in done.stdout, done.stdout
