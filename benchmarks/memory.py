"""Where an idle connection's memory goes in ``wschat serve``, measured inside the server.

Runs the server in this process on a free 127.0.0.1 port, opens ``--n`` idle connections
with ``wschat bench --scenario connect`` (a subprocess), and prints the RSS added per
connection. With ``--trace`` it also records Python allocations (tracemalloc; slower, so
use fewer connections) and prints the largest per-connection sources by traceback. The run is
bounded: the bench holds the connections for a fixed time, then the server stops.

    python benchmarks/memory.py --n 5000                # RSS per idle connection
    python benchmarks/memory.py --n 1000 --trace        # and the breakdown
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil

from wschat.server import runner
from wschat.server.settings import ServerSettings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="idle connections to open")
    parser.add_argument("--protocol", choices=["plain", "v1"], default="plain")
    parser.add_argument("--trace", action="store_true", help="tracemalloc breakdown")
    parser.add_argument("--hold", type=float, default=0, help="seconds to hold (default: by n)")
    args = parser.parse_args()
    hold = args.hold or (6 + args.n / 1000 * (4 if args.trace else 1))
    if args.trace:
        tracemalloc.start(12)
    with TemporaryDirectory() as tmp:
        settings = ServerSettings(
            port=0,
            db=str(Path(tmp) / "history.sqlite3"),
            log_level="warning",
            rate_per_s=0,
            max_connections=args.n + 100,
            max_connections_per_ip=args.n + 100,
            presence_limit=0,
        )
        sock = runner.bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        threading.Thread(target=_measure, args=(port, args, hold), daemon=True).start()
        try:
            runner.run(settings, sock, lambda: None)
        except KeyboardInterrupt:  # uvicorn re-raises the SIGINT that stopped it
            pass
    return 0


def _measure(port: int, args: argparse.Namespace, hold: float) -> None:
    me = psutil.Process()
    try:
        time.sleep(1)
        gc.collect()
        before_rss = me.memory_info().rss
        before = tracemalloc.take_snapshot() if args.trace else None
        bench = subprocess.Popen(
            [sys.executable, "-m", "wschat", "bench", "--url", f"ws://127.0.0.1:{port}",
             "-n", str(args.n), "--scenario", "connect", "--duration", str(hold + 5),
             "--protocol", args.protocol, "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(hold)
        gc.collect()
        rss = me.memory_info().rss - before_rss
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            open_now = json.loads(resp.read())["connections"]
        per = max(1, open_now)
        print(f"{open_now} connections open; RSS per connection {rss / per / 1024:.1f} KB")
        if before is not None:
            diff = tracemalloc.take_snapshot().compare_to(before, "traceback")
            total = sum(d.size_diff for d in diff)
            print(f"Python allocations per connection: {total / per:.0f} B; largest sources:")
            for d in diff[:25]:
                frames = list(reversed(d.traceback))[:4]
                where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in frames)
                print(f"{d.size_diff / per:7.0f} B {d.count_diff / per:5.1f} blocks  {where}")
        bench.wait(60)
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # stops the server, like Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
