"""Measure what one room message costs Redis and each node, for 1, 2 and 3 nodes on one Redis.

    python benchmarks/redis_capacity.py                         # nodes 1 2 3, 3 runs each
    python benchmarks/redis_capacity.py --nodes 1 --talkers 1 --messages 20 --repeat 1  # smoke

Starts its own ``redis-server`` on a free 127.0.0.1 port (no persistence; ``--aof`` for
``appendfsync always``) and, for each node count, that many ``wschat serve --broker redis://``
nodes (``--rate-limit 0``: the talkers send as fast as the server takes them;
``--presence-limit 0``: no joined/left to the idle users). One reader per
node; the talkers are spread over the nodes and each says ``--messages`` messages of 64
characters in one room without waiting for echoes. Each run reports, from the first send to
the moment every reader has every message:

- Redis CPU per room message (µs): the redis-server's user+system CPU time (``INFO cpu``)
  over the run, minus its idle cost (heartbeats, measured over ``--idle`` seconds before the
  runs), divided by the messages stored;
- node CPU per room message (µs): each node's CPU time (psutil) divided by the messages it
  delivered to its reader (every node receives every message of every room);
- messages/s per node: messages delivered to each node's reader per second;
- Redis CPU per name refresh (µs): with ``--idle-users`` idle clients connected (in another
  room), Redis's idle CPU grows by the heartbeats that refresh their names (each node
  refreshes its names every ``--node-ttl``/3 s); the growth divided by the refreshes.

Medians over ``--repeat`` runs (with their range) are printed as a Markdown table, with the
command and the machine. Every run is bounded in count and time; everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import psutil
import redis
import websockets

RUN_TIMEOUT_S = 120.0  # one run (all messages to every reader) must finish within this


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(directory: Path, aof: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "yes" if aof else "no", "--appendfsync", "always",
        "--dir", str(directory), "--protected-mode", "no", "--loglevel", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def start_node(url: str, ttl: float) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable, "-m", "wschat", "serve", "--host", "127.0.0.1", "--port", "0",
        "--broker", url, "--rate-limit", "0", "--outbox-size", "100000",
        "--history-size", "100000", "--log-level", "warning", "--node-ttl", str(ttl),
        "--max-connections-per-ip", "0", "--presence-limit", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on " in line:
            return proc, "ws" + line.strip().rsplit(" ", 1)[1].removeprefix("http")
        if not line:
            break
    proc.kill()
    raise SystemExit("wschat serve did not start")


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@dataclass
class Run:
    redis_us: float  # Redis CPU per room message, idle cost removed
    node_us: float  # node CPU per delivered room message (mean over nodes)
    per_node: float  # messages/s delivered to each node's reader (mean over nodes)


async def one_run(
    urls: list[str], tag: str, talkers: int, messages: int
) -> tuple[float, list[int]]:
    """Have ``talkers`` each say ``messages``; return the seconds until every reader had all."""
    opts = {"subprotocols": ["wschat.v1"], "max_queue": None}
    readers = [
        await websockets.connect(f"{u}/ws/r{tag}n{i}", **opts)  # type: ignore[arg-type]
        for i, u in enumerate(urls)
    ]
    senders = [
        await websockets.connect(f"{urls[i % len(urls)]}/ws/t{tag}n{i}", **opts)  # type: ignore[arg-type]
        for i in range(talkers)
    ]
    for ws in readers + senders:
        await ws.recv()  # the welcome
    total = talkers * messages
    counts = [0] * len(readers)

    async def read(i: int, ws: websockets.ClientConnection) -> None:
        while counts[i] < total:
            if json.loads(await ws.recv())["type"] == "message":
                counts[i] += 1

    async def drain(ws: websockets.ClientConnection) -> None:
        async for _ in ws:
            pass

    drains = [asyncio.create_task(drain(ws)) for ws in senders]
    frame = json.dumps({"type": "say", "text": "x" * 64})

    async def talk(ws: websockets.ClientConnection) -> None:
        for _ in range(messages):
            await ws.send(frame)

    start = time.perf_counter()
    async with asyncio.timeout(RUN_TIMEOUT_S):
        await asyncio.gather(*(read(i, ws) for i, ws in enumerate(readers)), *map(talk, senders))
    elapsed = time.perf_counter() - start
    for task in drains:
        task.cancel()
    for ws in readers + senders:
        await ws.close()
    return elapsed, counts


async def hold_idle(
    urls: list[str], users: int, seconds: float, measure: Callable[[], float]
) -> float:
    """Hold ``users`` idle v1 clients (room ``idle``) for ``seconds``; return ``measure()``'s
    growth over that time."""
    opts = {"subprotocols": ["wschat.v1"], "max_queue": None}
    clients = [
        await websockets.connect(f"{urls[i % len(urls)]}/ws/idle{i}?room=idle", **opts)  # type: ignore[arg-type]
        for i in range(users)
    ]
    for ws in clients:
        await ws.recv()  # the welcome
    await asyncio.sleep(1.0)  # joined/left of the arrivals are over
    before = measure()
    await asyncio.sleep(seconds)
    grown = measure() - before
    await asyncio.gather(*(ws.close() for ws in clients))
    return grown


def idle_cost(client: redis.Redis, seconds: float) -> float:
    """Return Redis's CPU µs per second over ``seconds`` of no chat."""
    before = redis_cpu_s(client)
    time.sleep(seconds)
    return (redis_cpu_s(client) - before) / seconds * 1e6


def measure(nodes: int, args: argparse.Namespace, tmp: Path) -> tuple[list[Run], float]:
    """Return the runs for ``nodes`` nodes and Redis's CPU per name refresh (µs)."""
    server, port = start_redis(tmp, args.aof)
    client = redis.Redis(port=port)
    procs = [start_node(f"redis://127.0.0.1:{port}/0", args.node_ttl) for _ in range(nodes)]
    watched = [psutil.Process(p.pid) for p, _ in procs]
    urls = [url for _, url in procs]
    try:
        idle_us_s = idle_cost(client, args.idle)
        refresh_us = float("nan")
        if args.idle_users:
            grown = asyncio.run(
                hold_idle(urls, args.idle_users, args.idle, lambda: redis_cpu_s(client))
            )
            extra_us_s = grown / args.idle * 1e6 - idle_us_s
            refresh_us = extra_us_s / (args.idle_users * 3 / args.node_ttl)
        runs = []
        for r in range(args.repeat):
            redis0, nodes0 = redis_cpu_s(client), [cpu_s(p) for p in watched]
            elapsed, counts = asyncio.run(one_run(urls, str(r), args.talkers, args.messages))
            redis_s = redis_cpu_s(client) - redis0 - idle_us_s * elapsed / 1e6
            node_s = [cpu_s(p) - c for p, c in zip(watched, nodes0, strict=True)]
            stored = args.talkers * args.messages
            runs.append(
                Run(
                    redis_us=redis_s / stored * 1e6,
                    node_us=sum(s / n * 1e6 for s, n in zip(node_s, counts, strict=True)) / nodes,
                    per_node=sum(counts) / nodes / elapsed,
                )
            )
        return runs, refresh_us
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(30)
        server.kill()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--talkers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2000, help="per talker, per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per node count")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle measurement")
    parser.add_argument("--idle-users", type=int, default=200, help="0 skips the refresh cost")
    parser.add_argument("--node-ttl", type=float, default=1.5, help="nodes' --node-ttl")
    parser.add_argument("--aof", action="store_true", help="Redis appendfsync always (AOF)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    command = shlex.join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    print(f"Command: `{command}`")
    print(
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, Redis {version.removeprefix('v=')}, "
        f"{args.talkers} talkers x {args.messages} messages per run, medians of {args.repeat}"
    )
    print()
    print("| nodes | Redis CPU µs / room message | node CPU µs / room message "
          "| messages/s per node | Redis CPU µs / name refresh |")  # fmt: skip
    print("|---|---|---|---|---|")
    for nodes in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            runs, refresh = measure(nodes, args, Path(tmp))
        cells = [
            _spread([r.redis_us for r in runs], "{:.1f}"),
            _spread([r.node_us for r in runs], "{:.0f}"),
            _spread([r.per_node for r in runs], "{:,.0f}"),
            f"{refresh:.1f}",
        ]
        print(f"| {nodes} | " + " | ".join(cells) + " |", flush=True)


def _spread(values: list[float], form: str) -> str:
    """Return the median of ``values``, with their range when there are several."""
    mid = form.format(median(values))
    if len(values) < 2:
        return mid
    return f"{mid} ({form.format(min(values))} to {form.format(max(values))})"


if __name__ == "__main__":
    main()
