"""The kernel's floor for fan-out: what one ``send()`` per delivery costs on this machine.

A server that delivers a message to N receivers makes at least one ``send()`` system call per
receiver. This script measures that floor with no WebSocket and no server framework: it opens
N loopback TCP connections to a reader process (which drains them with epoll, as a load
generator would), then sends one 66-byte frame to each of them ``rate`` times a second for
``duration`` seconds from a bare Python loop, and reports its own CPU time per send, split into
user and system time. Everything binds 127.0.0.1; the run is bounded in count and time.

    python benchmarks/floor.py --n 1000 --rate 20 --duration 8
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import subprocess
import sys
import time
from typing import Any

FRAME = b"\x81\x40" + b"x" * 64  # an unmasked 64-byte text frame, as a server sends it


def reader(port: int, n: int, seconds: float) -> None:
    """Open ``n`` connections to ``port`` and drain them until the sender closes them all
    (or ``seconds`` have passed); print how many frames arrived."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    poll = select.epoll()
    by_fd = {}
    for conn in conns:
        conn.setblocking(False)
        poll.register(conn.fileno(), select.EPOLLIN)
        by_fd[conn.fileno()] = conn
    received = 0
    deadline = time.monotonic() + seconds
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poll.poll(0.2):
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            received += len(data)
            if not data:  # the sender is done with this one
                poll.unregister(fd)
                by_fd.pop(fd).close()
    print(received // len(FRAME), flush=True)


def measure_floor(n: int, rate: float, duration: float) -> dict[str, Any]:
    """Return the CPU cost per ``send()`` of fanning out to ``n`` loopback sockets."""
    with socket.create_server(("127.0.0.1", 0), backlog=max(n, 128)) as listener:
        port = listener.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, __file__, "--reader", str(port), "--n", str(n),
             "--duration", str(duration + 5)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            listener.settimeout(30)
            socks = [listener.accept()[0] for _ in range(n)]
            for sock in socks:
                sock.setblocking(False)
            time.sleep(0.5)
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            sent = 0
            tick = 0
            while time.monotonic() - started < duration:
                due = started + tick / rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                for sock in socks:
                    sock.send(FRAME)
                sent += n
                tick += 1
            after = resource.getrusage(resource.RUSAGE_SELF)
            for sock in socks:
                sock.close()
            out, _ = child.communicate(timeout=duration + 30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return {
        "n": n,
        "rate": rate,
        "sent": sent,
        "received": int(out.strip() or 0),
        "us_per_send": (user + system) / sent * 1e6,
        "user_us_per_send": user / sent * 1e6,
        "system_us_per_send": system / sent * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--reader", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader is not None:
        reader(args.reader, args.n, args.duration)
        return 0
    print(json.dumps(measure_floor(args.n, args.rate, args.duration)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
