"""Measure room-message throughput of wschat nodes: memory broker vs N nodes on one Redis.

    python tools/redis_throughput.py [--nodes 2] [--messages 2000] [--talkers 4] [--memory]

Starts its own redis-server (no persistence, or ``--aof`` for appendfsync everysec) on a free
port and ``wschat serve`` nodes, has the talkers (spread over the nodes) say ``--messages``
each as fast as the server takes them, and reports how long until one reader per node has
received every message: messages/s stored, published and delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.broker.conftest import RedisServer  # noqa: E402
from tests.conftest import start_server  # noqa: E402


async def run(urls: list[str], talkers: int, messages: int) -> float:
    opts = {"subprotocols": ["wschat.v1"], "max_queue": None}
    readers = [await websockets.connect(f"{u}/ws/reader{i}", **opts) for i, u in enumerate(urls)]  # type: ignore[arg-type]
    senders = [
        await websockets.connect(f"{urls[i % len(urls)]}/ws/talker{i}", **opts)  # type: ignore[arg-type]
        for i in range(talkers)
    ]
    total = talkers * messages

    async def read(ws: websockets.ClientConnection) -> None:
        seen = 0
        while seen < total:
            if json.loads(await ws.recv())["type"] == "message":
                seen += 1

    async def drain(ws: websockets.ClientConnection) -> None:
        async for _ in ws:
            pass

    drains = [asyncio.create_task(drain(ws)) for ws in senders]
    start = time.perf_counter()
    reads = [asyncio.create_task(read(ws)) for ws in readers]
    frame = json.dumps({"type": "say", "text": "x" * 64})

    async def talk(ws: websockets.ClientConnection) -> None:
        for _ in range(messages):
            await ws.send(frame)

    await asyncio.gather(*(talk(ws) for ws in senders))
    async with asyncio.timeout(120):
        await asyncio.gather(*reads)
    elapsed = time.perf_counter() - start
    for task in drains:
        task.cancel()
    for ws in readers + senders:
        await ws.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--talkers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--memory", action="store_true", help="one node, in-memory broker")
    parser.add_argument("--aof", action="store_true", help="Redis appendfsync always (AOF)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    redis = None
    common = ["--outbox-size", "100000", "--log-level", "warning", "--history-size", "100000"]
    if args.memory:
        servers = [start_server(tmp, *common, "--db", ":memory:")]
    else:
        if shutil.which("redis-server") is None:
            sys.exit("redis-server is not installed")
        redis = RedisServer(tmp)
        redis.start()
        if not args.aof:
            subprocess.run(
                ["redis-cli", "-p", str(redis.port), "config", "set", "appendonly", "no"],
                check=True,
                capture_output=True,
            )
        servers = [start_server(tmp, *common, "--broker", redis.url) for _ in range(args.nodes)]
    try:
        rate = asyncio.run(run([s.ws for s in servers], args.talkers, args.messages))
        engine = (
            "memory"
            if args.memory
            else f"redis x{args.nodes} nodes" + (" (AOF always)" if args.aof else "")
        )
        print(
            f"{engine}: {args.talkers} talkers x {args.messages} msgs: {rate:,.0f} msg/s delivered to each reader"
        )
    finally:
        for s in servers:
            s.stop()
        if redis is not None:
            redis.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
