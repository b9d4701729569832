"""The load generator's receive path: ``BenchConnection.data_received`` on small server frames.

Feeds 10,000 unmasked text frames of 67 bytes (a server's chat messages) to one open
connection, as one buffer and in 64 KiB reads, and prints the best of seven runs per frame. No
socket: the connection is put in the state it is in after the opening handshake.

    PYTHONPATH=. python benchmarks/receive.py
"""

from __future__ import annotations

import asyncio
import timeit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from wschat.bench.connection import BenchConnection

FRAMES = 10_000
PAYLOAD = b'{"type":"message","room":"bench","text":"r1 s0 q%05d t123456789"}'
URI = "ws://127.0.0.1:1/ws"


async def measure() -> None:
    stream = b"".join(
        Frame(Opcode.TEXT, PAYLOAD % i).serialize(mask=False, extensions=[]) for i in range(FRAMES)
    )
    got: list[str] = []

    def opened() -> BenchConnection:
        conn = BenchConnection(URI, None, "bench", lambda text, now: got.append(text))
        conn.ws = ClientProtocol(parse_uri(URI), state=State.OPEN)
        conn._framing = True  # as after the handshake
        return conn

    for label, chunk in (("one buffer", len(stream)), ("64 KiB reads", 65536)):

        def run(chunk: int = chunk) -> None:
            conn = opened()
            for i in range(0, len(stream), chunk):
                conn.data_received(stream[i : i + chunk])

        got.clear()
        run()
        if len(got) != FRAMES:
            raise SystemExit(f"got {len(got)} messages, not {FRAMES}")
        best = min(timeit.repeat(run, number=20, repeat=7)) / 20
        got.clear()
        print(
            f"{label:12s}: {best * 1e3:.2f} ms per {FRAMES:,} frames, {best / FRAMES * 1e9:.0f} ns a frame"
        )


if __name__ == "__main__":
    asyncio.run(measure())
