"""How many connections wschat holds: one process at its descriptor limit, and 60,000 on one machine.

*One process.* ``wschat serve`` (no connection caps) under the descriptor limit it inherits
(``--fd-limit`` lowers it; default: this shell's ``ulimit -Hn``) says at start how many
connections it accepts; one ``wschat bench`` opens exactly that many, then sends ``--messages``
messages to all of them (fan-out, one room). Reports RSS per connection, time to connect all,
server CPU per connect, and what was lost.

*One machine.* ``wschat serve --workers 4 --broker redis://…`` (a ``redis-server`` of its own
on a free port) and ``wschat bench --processes 4 --room-per-process --scenario fanout -n 60000``:
four rooms of 15,000 (one per bench process: a room of 60,000 would make every message 60,000
deliveries), each spread by the kernel over all four workers, ``--messages`` messages each.

    python benchmarks/scale.py --one-process          # about 2 minutes
    python benchmarks/scale.py --machine -n 60000     # about 3 minutes
    python benchmarks/scale.py --one-process --fd-limit 200 --messages 5   # seconds

Everything binds 127.0.0.1; every run is bounded by the bench's own timeouts and ``TIMEOUT_S``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

TIMEOUT_S = 900.0
# the start-up warning of a server without --max-connections
CAPACITY = re.compile(r"descriptors stop this process at (\d+) open connections")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sampler:
    """Sum CPU and RSS of a process tree every 0.1 s, with the time of each sample."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.samples: list[tuple[float, float, int]] = []  # unix t, cpu_s, rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def now(self) -> tuple[float, float, int]:
        cpu, rss = 0.0, 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
        return time.time(), cpu, rss

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(self.now())

    def __enter__(self) -> Sampler:
        self.samples.append(self.now())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(self.now())

    def at(self, unix: float) -> tuple[float, float, int]:
        """Return the last sample taken at or before ``unix``."""
        before = [s for s in self.samples if s[0] <= unix]
        return before[-1] if before else self.samples[0]


def start_server(
    args: list[str], workdir: Path, fd_limit: int | None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``wschat serve`` with ``args``; return the process, its URL and its log file."""
    port = free_port()
    log = workdir / f"serve-{port}.log"

    def limit() -> None:
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    cmd = [
        sys.executable, "-m", "wschat", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--db", str(workdir / f"history-{port}.sqlite3"), "--rate-limit", "0",
        "--presence-limit", "0", "--max-connections", "0", "--max-connections-per-ip", "0",
        "--log-level", "warning", *args,
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "listening on" in log.read_text():
            return proc, f"ws://127.0.0.1:{port}", log
        if proc.poll() is not None:
            raise RuntimeError(f"wschat serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("wschat serve did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def bench(url: str, args: list[str], workdir: Path) -> dict[str, Any]:
    out = workdir / f"bench-{time.monotonic_ns()}.json"
    cmd = [
        sys.executable, "-m", "wschat", "bench", "--url", url,
        "--connect-timeout", "60", "--drain-timeout", "30", "--json", str(out),
        "--no-progress", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def figures(report: dict[str, Any], sampler: Sampler, started: float) -> dict[str, Any]:
    """Return the row: connections, failures, loss, RSS, connect time and CPU per connect."""
    summary = report["summary"]
    conns, messages = summary["connections"], summary["messages"]
    loaded = summary["throughput"]["load_started_unix"]
    _, cpu0, rss0 = sampler.at(started)
    _, cpu1, rss1 = sampler.at(loaded)
    opened = conns["opened"]
    return {
        "processes": report.get("processes", 1),
        "attempted": conns["attempted"],
        "opened": opened,
        "failed": conns["attempted"] - opened,
        "errors": summary["errors"]["by_kind"],
        "connect_s": conns["connect_s"],
        "connects_per_s": round(opened / max(1e-9, conns["connect_s"])),
        "cpu_ms_per_connect": round((cpu1 - cpu0) / max(1, opened) * 1e3, 3),
        "rss_mib": round(rss1 / 2**20),
        "rss_kb_per_conn": round((rss1 - rss0) / max(1, opened) / 1024, 2),
        "sent": messages["sent"],
        "expected": messages["expected"],
        "delivered": messages["delivered"],
        "lost": messages["lost"],
        "delivered_per_s": summary["throughput"]["delivered_per_s"],
    }


def one_process(workdir: Path, fd_limit: int | None, messages: int, rate: float) -> dict[str, Any]:
    """One ``wschat serve`` at its descriptor limit: connect all it accepts, fan out to all."""
    proc, url, log = start_server([], workdir, fd_limit)
    try:
        said = CAPACITY.search(log.read_text())
        if not said:
            raise RuntimeError(f"wschat serve did not say its capacity: {log.read_text()}")
        capacity = int(said.group(1))
        limit = psutil.Process(proc.pid).rlimit(resource.RLIMIT_NOFILE)[0]
        with Sampler(psutil.Process(proc.pid)) as sampler:
            started = time.time()
            report = bench(url, ["-n", str(capacity), "--protocol", "plain",
                                 "--scenario", "fanout", "--senders", "1",
                                 "--rate", str(rate), "--messages", str(messages),
                                 "--duration", str(messages / rate + 1)], workdir)  # fmt: skip
        row = figures(report, sampler, started)
        row.update(fd_limit=limit, capacity=capacity)
        return row
    finally:
        stop(proc)


def machine(
    workdir: Path, n: int, workers: int, processes: int, messages: int, rate: float
) -> dict[str, Any]:
    """``--workers`` servers on one Redis, ``--processes`` bench processes, one room each."""
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            redis_bin,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        broker = f"redis://127.0.0.1:{redis_port}/0"
        proc, url, _ = start_server(["--workers", str(workers), "--broker", broker], workdir, None)
        try:
            with Sampler(psutil.Process(proc.pid)) as sampler:
                started = time.time()
                # v1: across workers the broker is Redis pub/sub, and a wschat.v1 client is the
                # one that gets every message exactly once (missed ids are re-read from the
                # room's stream; plain text gets live messages only: docs/scaling.md).
                report = bench(url, ["-n", str(n), "--processes", str(processes),
                                     "--room-per-process", "--protocol", "v1",
                                     "--scenario", "fanout", "--senders", str(processes),
                                     "--rate", str(rate), "--messages", str(messages),
                                     "--duration", str(messages / rate + 1)], workdir)  # fmt: skip
            row = figures(report, sampler, started)
            row.update(workers=workers)
            return row
        finally:
            stop(proc)
    finally:
        redis.terminate()
        redis.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one-process", action="store_true")
    parser.add_argument("--machine", action="store_true")
    parser.add_argument("--fd-limit", type=int, default=None, help="one process: ulimit -n")
    parser.add_argument("-n", type=int, default=60_000, help="machine: connections")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="messages/s per sender")
    parser.add_argument("--keep", type=Path, help="keep the servers' logs in this directory")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.one_process:
            results["one_process"] = one_process(work, args.fd_limit, args.messages, args.rate)
        if args.machine:
            results["machine"] = machine(
                work, args.n, args.workers, args.processes, args.messages, args.rate
            )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
