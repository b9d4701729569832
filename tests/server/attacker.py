"""Abusive peers for ``test_attacks.py``, each run as its own process with raw sockets.

``python -m tests.server.attacker MODE --port P [options]`` connects to 127.0.0.1:P, misbehaves
in one way, bounded in count and in time (every mode stops by itself within ``--seconds``
plus a few seconds of reading), and prints one JSON line of what it saw: close codes, when the
server closed, what it sent. The standard library and ``tests.helpers`` only (its frame
builder), so it starts fast and imports nothing of the server it attacks.

Modes (times are seconds on this process's monotonic clock):

- ``frag-flood``: a TEXT frame with FIN=0, then empty continuation frames as fast as possible.
- ``fragments``: one message in ``--count`` fragments of ``--size`` bytes, then a clean close.
- ``slow-fragment``: a 1-byte TEXT FIN=0, then one 1-byte continuation per ``--interval``,
  answering pings with pongs.
- ``ping-flood``: pings as fast as possible with a small SO_RCVBUF, never reading.
- ``ping-burst``: ``--count`` pings at once, then reads.
- ``ping-steady``: one ping per ``--interval`` for ``--seconds``, reading.
- ``handshake``: one request head per ``--case`` (``long-line:N``, ``headers:N``,
  ``header-bytes:N``), each on its own socket, ``--repeat`` times over.
- ``trickle-body``: ``--count`` plain HTTP requests with ``Content-Length: --length``, then one
  body byte per ``--interval`` to each.
- ``trickle-head``: one plain HTTP request head sent one byte per ``--interval``.
- ``replay-hold``: ``--count`` wschat.v1 sockets on ``--path`` (``{n}`` is each one's number;
  ask ``?since=0``) with a small SO_RCVBUF; prints ``{"connected": N}``, reads nothing until a
  line comes on stdin (or ``--seconds`` pass), then reads each until the server ends it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.helpers import masked_frame, read_upgrade

HOST = "127.0.0.1"
CLOSE_READ_S = 3.0  # after the attack, how long to read for the server's close and EOF


# --- frames -------------------------------------------------------------------------------------


class Frames:
    """Parses the server's (unmasked) frames from the bytes fed to it."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> Iterator[tuple[bool, int, bytes]]:
        self.buf += data
        while len(self.buf) >= 2:
            size = self.buf[1] & 0x7F
            at = 2
            if size == 126:
                if len(self.buf) < 4:
                    return
                size, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif size == 127:
                if len(self.buf) < 10:
                    return
                size, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            if len(self.buf) < at + size:
                return
            fin, opcode = bool(self.buf[0] & 0x80), self.buf[0] & 0x0F
            payload, self.buf = self.buf[at : at + size], self.buf[at + size :]
            yield fin, opcode, payload


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


# --- connections --------------------------------------------------------------------------------


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((HOST, port))
    return sock


def upgrade_head(port: int, path: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def handshake(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    """Open a WebSocket on ``path``; the socket is left blocking with a 5 s timeout."""
    sock = connect(port, rcvbuf)
    sock.sendall(upgrade_head(port, path))
    read_upgrade(sock)
    return sock


class Peer:
    """A WebSocket peer's reading side: what it received and when the server closed."""

    def __init__(self, sock: socket.socket, start: float) -> None:
        self.sock = sock
        self.start = start
        self.frames = Frames()
        self.close_code: int | None = None
        self.close_at: float | None = None  # when the server's close frame arrived
        self.eof_at: float | None = None  # when the TCP connection ended (FIN or reset)
        self.reset = False
        self.messages: list[str] = []
        self.pings = 0
        self.pongs = 0
        self.on_ping: Callable[[bytes], None] | None = None
        self._parts: list[bytes] = []

    def since(self) -> float:
        return round(time.monotonic() - self.start, 4)

    def read_ready(self) -> None:
        """Read what the socket has (it is readable or non-blocking)."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            self.eof_at = self.since()
            return
        if not data:
            self.eof_at = self.since()
            return
        for fin, opcode, payload in self.frames.feed(data):
            if opcode == 0x8 and self.close_at is None:
                self.close_code, self.close_at = close_code(payload), self.since()
            elif opcode == 0x9:
                self.pings += 1
                if self.on_ping is not None:
                    self.on_ping(payload)
            elif opcode == 0xA:
                self.pongs += 1
            elif opcode in (0x0, 0x1, 0x2):
                self._parts.append(payload)
                if fin:
                    self.messages.append(b"".join(self._parts).decode(errors="replace"))
                    self._parts = []

    def read_until_eof(self, within: float) -> None:
        """Keep reading (never writing) until the server ends the connection or ``within``."""
        deadline = time.monotonic() + within
        self.sock.setblocking(False)
        while self.eof_at is None and time.monotonic() < deadline:
            readable, _, _ = select.select([self.sock], [], [], 0.05)
            if readable:
                self.read_ready()

    def report(self) -> dict[str, Any]:
        return {
            "close_code": self.close_code,
            "close_after_s": self.close_at,
            "eof_after_s": self.eof_at,
            "reset": self.reset,
            "messages": self.messages[:20],
            "pings": self.pings,
            "pongs": self.pongs,
        }


# --- replays nobody reads -----------------------------------------------------------------------


def replay_hold(args: argparse.Namespace) -> dict[str, Any]:
    """Write to a room from good clients, then hold ``since=0`` replays there unread.

    Stdin drives it: the writers start at once (``{"writers": K}``), the line ``hold``
    connects the holders (``{"connected": N}``), any other line (or ``--seconds``) ends it.
    """
    v1 = "Sec-WebSocket-Protocol: wschat.v1\r\n"

    def upgrade(path: str, rcvbuf: int | None = None) -> socket.socket:
        sock = connect(args.port, rcvbuf)
        sock.sendall(upgrade_head(args.port, path, v1))
        read_upgrade(sock)  # the head only: for a holder, the replay behind it stays unread
        return sock

    writers = [upgrade(args.writer_path.format(n=n)) for n in range(args.writers)]
    print(json.dumps({"writers": len(writers)}), flush=True)
    socks: list[socket.socket] = []
    said = 0
    start = time.monotonic()
    next_at = start
    while time.monotonic() - start < args.seconds:
        if select.select([sys.stdin], [], [], 0)[0]:
            if sys.stdin.readline().strip() != "hold" or socks:
                break
            socks = [upgrade(args.path.format(n=n), args.rcvbuf) for n in range(args.count)]
            print(json.dumps({"connected": len(socks)}), flush=True)
        if time.monotonic() >= next_at:
            next_at += args.interval
            for writer in writers:
                text = json.dumps({"type": "say", "text": "y" * args.size, "cid": f"w{said}"})
                writer.sendall(masked_frame(0x1, text.encode()))
                said += 1
        for writer in select.select(writers, [], [], 0)[0]:  # their echoes: good readers
            if not writer.recv(1 << 20):
                raise ConnectionError("a writer was closed")
        time.sleep(min(0.005, max(0.0, next_at - time.monotonic())))
    for writer in writers:  # a clean close: the writers are not the attack
        writer.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
        Peer(writer, time.monotonic()).read_until_eof(CLOSE_READ_S)
        writer.close()
    start = time.monotonic()
    peers = [Peer(sock, start) for sock in socks]
    for peer in peers:
        peer.read_until_eof(CLOSE_READ_S)
        peer.sock.close()
    return {
        "said": said,
        "close_codes": [peer.close_code for peer in peers],
        "messages": [len(peer.messages) for peer in peers],
    }


# --- fragments ----------------------------------------------------------------------------------


def frag_flood(args: argparse.Namespace) -> dict[str, Any]:
    sock = handshake(args.port, args.path)
    sock.setblocking(False)
    empty = masked_frame(0x0, b"", fin=False)
    chunk = empty * 1024
    peer = Peer(sock, time.monotonic())
    out = masked_frame(0x1, b"a", fin=False) + chunk
    sent = 0
    deadline = peer.start + args.seconds
    while peer.close_at is None and peer.eof_at is None and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 0.05)
        if readable:
            peer.read_ready()
        if writable and peer.close_at is None and peer.eof_at is None:
            try:
                n = sock.send(out)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                peer.reset, peer.eof_at = True, peer.since()
                break
            sent += n
            out = out[n:] or chunk
    flood_s = peer.since()
    peer.read_until_eof(CLOSE_READ_S)
    sock.close()
    return {
        **peer.report(),
        "flood_s": flood_s,
        "bytes_sent": sent,
        "continuations_sent": max(0, (sent - 7) // len(empty)),
    }


def fragments(args: argparse.Namespace) -> dict[str, Any]:
    sock = handshake(args.port, args.path)
    peer = Peer(sock, time.monotonic())
    parts = [bytes([ord("a") + i % 26]) * args.size for i in range(args.count)]
    data = b"".join(
        masked_frame(0x1 if i == 0 else 0x0, part, fin=i == args.count - 1)
        for i, part in enumerate(parts)
    )
    sock.sendall(data)
    sock.setblocking(False)
    deadline = time.monotonic() + args.seconds
    while not peer.messages and peer.close_at is None and peer.eof_at is None:
        if time.monotonic() > deadline:
            break
        if select.select([sock], [], [], 0.05)[0]:
            peer.read_ready()
    if peer.close_at is None and peer.eof_at is None:  # answered: say goodbye properly
        try:
            sock.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
        except OSError:
            pass
    peer.read_until_eof(CLOSE_READ_S)
    sock.close()
    return {**peer.report(), "sent": b"".join(parts).decode(), "fragments": args.count}


def slow_fragment(args: argparse.Namespace) -> dict[str, Any]:
    sock = handshake(args.port, args.path)
    sock.setblocking(False)
    peer = Peer(sock, time.monotonic())

    def pong(payload: bytes) -> None:
        try:
            sock.sendall(masked_frame(0xA, payload))
        except OSError:
            pass

    peer.on_ping = pong
    sock.sendall(masked_frame(0x1, b"a", fin=False))
    sent = 1
    next_at = peer.start + args.interval
    deadline = peer.start + args.seconds
    while peer.close_at is None and peer.eof_at is None and time.monotonic() < deadline:
        if select.select([sock], [], [], 0.02)[0]:
            peer.read_ready()
        if time.monotonic() >= next_at and peer.close_at is None and peer.eof_at is None:
            try:
                sock.sendall(masked_frame(0x0, b"a", fin=False))
            except OSError:
                peer.reset, peer.eof_at = True, peer.since()
                break
            sent += 1
            next_at += args.interval
    peer.read_until_eof(CLOSE_READ_S)
    sock.close()
    return {**peer.report(), "fragments_sent": sent}


# --- control frames -----------------------------------------------------------------------------


def ping_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Send pings as fast as the socket takes them, never reading, for ``--seconds``."""
    sock = handshake(args.port, args.path, rcvbuf=args.rcvbuf)
    sock.setblocking(False)
    one = masked_frame(0x9, b"p" * args.size)
    chunk = one * 64
    out = chunk
    sent = 0
    start = time.monotonic()
    last_progress = start
    longest_stall = 0.0
    ended: str | None = None
    while time.monotonic() - start < args.seconds:
        _, writable, _ = select.select([], [sock], [], 0.05)
        now = time.monotonic()
        if not writable:
            longest_stall = max(longest_stall, now - last_progress)
            continue
        try:
            n = sock.send(out)
        except BlockingIOError:
            continue
        except (ConnectionResetError, BrokenPipeError) as exc:
            ended = type(exc).__name__
            break
        sent += n
        last_progress = now
        out = out[n:] or chunk
    end = time.monotonic()
    flood_s = end - start
    stalled_at_end = end - last_progress
    longest_stall = max(longest_stall, stalled_at_end)
    peer = Peer(sock, start)  # now read what the server sent meanwhile
    if ended is not None:
        peer.reset, peer.eof_at = True, round(end - start, 4)
    peer.read_until_eof(CLOSE_READ_S)
    sock.close()
    return {
        **peer.report(),
        "flood_s": round(flood_s, 3),
        "send_error": ended,
        "bytes_sent": sent,
        "pings_sent": sent // len(one),
        "stalled_at_end_s": round(stalled_at_end, 3),
        "longest_stall_s": round(longest_stall, 3),
    }


def ping_burst(args: argparse.Namespace) -> dict[str, Any]:
    sock = handshake(args.port, args.path)
    peer = Peer(sock, time.monotonic())
    try:
        sock.sendall(b"".join(masked_frame(0x9, str(i).encode()) for i in range(args.count)))
    except OSError:
        peer.reset, peer.eof_at = True, peer.since()
    peer.read_until_eof(args.seconds)
    sock.close()
    return {**peer.report(), "pings_sent": args.count}


def ping_steady(args: argparse.Namespace) -> dict[str, Any]:
    sock = handshake(args.port, args.path)
    sock.setblocking(False)
    peer = Peer(sock, time.monotonic())
    sent = 0
    deadline = peer.start + args.seconds
    next_at = peer.start
    while peer.close_at is None and peer.eof_at is None and time.monotonic() < deadline:
        if time.monotonic() >= next_at:
            try:
                sock.sendall(masked_frame(0x9, str(sent).encode()))
            except OSError:
                peer.reset, peer.eof_at = True, peer.since()
                break
            sent += 1
            next_at += args.interval
        if select.select([sock], [], [], 0.02)[0]:
            peer.read_ready()
    open_at_end = peer.close_at is None and peer.eof_at is None
    if open_at_end:
        sock.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
    peer.read_until_eof(CLOSE_READ_S)
    sock.close()
    return {**peer.report(), "pings_sent": sent, "open_at_end": open_at_end}


# --- HTTP ---------------------------------------------------------------------------------------


def _request(port: int, case: str) -> bytes:
    kind, _, arg = case.partition(":")
    n = int(arg)
    if kind == "long-line":  # a request line of n bytes (without its CRLF)
        fixed = len("GET /ws?pad= HTTP/1.1")
        return upgrade_head(port, "/ws?pad=" + "x" * (n - fixed))
    if kind == "headers":  # n header lines in all (the upgrade's own 5 included)
        return upgrade_head(port, "/ws", "".join(f"X-Pad-{i}: {i}\r\n" for i in range(n - 5)))
    if kind == "header-bytes":  # one header line of n bytes (without its CRLF)
        return upgrade_head(port, "/ws", "X-Big: " + "y" * (n - len("X-Big: ")) + "\r\n")
    raise SystemExit(f"unknown case {case}")


def handshake_cases(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for case in args.case:
            request = _request(args.port, case)
            sock = connect(args.port)
            sock.sendall(request)
            sent_at = time.monotonic()
            got = b""
            result: dict[str, Any] = {"case": case, "bytes": len(request)}
            sock.settimeout(1.0)  # an answer is due at once; the tests want 0.1 s
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        result["end"] = "eof"
                        break
                    got += chunk
                    if got.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in got:
                        result["end"] = "upgraded"
                        sock.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
                        sock.settimeout(CLOSE_READ_S)
                        while sock.recv(65536):
                            pass
                        break
            except TimeoutError:
                result["end"] = "timeout"
            except ConnectionResetError:
                result["end"] = "reset"
            result["closed_after_s"] = round(time.monotonic() - sent_at, 4)
            result["status"] = got.split(b"\r\n", 1)[0].decode(errors="replace")
            sock.close()
            results.append(result)
    return {"results": results}


def trickle_body(args: argparse.Namespace) -> dict[str, Any]:
    head = (
        f"{args.method} {args.path} HTTP/1.1\r\nHost: {HOST}:{args.port}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {args.length}\r\n\r\n"
    ).encode()
    start = time.monotonic()
    conns: list[dict[str, Any]] = []
    socks: dict[socket.socket, dict[str, Any]] = {}
    for i in range(args.count):
        sock = connect(args.port)
        opened = time.monotonic()
        sock.sendall(head)
        sock.setblocking(False)
        info: dict[str, Any] = {
            "i": i,
            "opened_s": round(opened - start, 4),
            "port": sock.getsockname()[1],
            "status": None,
            "closed_after_s": None,
            "end": None,
            "body_sent": 0,
            "_opened": opened,
            "_got": b"",
        }
        conns.append(info)
        socks[sock] = info
    most_open = len(socks)
    next_at = time.monotonic() + args.interval
    deadline = start + args.seconds
    while socks and time.monotonic() < deadline:
        readable, _, _ = select.select(list(socks), [], [], 0.02)
        for sock in readable:
            info = socks[sock]
            try:
                data = sock.recv(65536)
                end = None if data else "eof"
            except ConnectionResetError:
                data, end = b"", "reset"
            info["_got"] += data
            if end is not None:
                info["end"] = end
                info["closed_after_s"] = round(time.monotonic() - info["_opened"], 4)
                del socks[sock]
                sock.close()
        if time.monotonic() >= next_at:
            next_at += args.interval
            for sock, info in list(socks.items()):
                if info["body_sent"] >= args.length:
                    continue
                try:
                    sock.send(b"z")
                    info["body_sent"] += 1
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    pass  # seen on the next read
        most_open = max(most_open, len(socks))
    for sock, info in socks.items():
        info["end"] = "open"
        sock.close()
    for info in conns:
        got = info.pop("_got")
        info.pop("_opened")
        info["status"] = got.split(b"\r\n", 1)[0].decode(errors="replace") or None
    return {"conns": conns, "ran_s": round(time.monotonic() - start, 3)}


def trickle_head(args: argparse.Namespace) -> dict[str, Any]:
    head = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{args.port}\r\nX-Slow: " + "s" * 100
    sock = connect(args.port)
    sock.setblocking(False)
    start = time.monotonic()
    sent = 0
    got = b""
    end: str | None = None
    closed_after: float | None = None
    next_at = start
    while end is None and time.monotonic() - start < args.seconds and sent < len(head):
        if time.monotonic() >= next_at:
            next_at += args.interval
            try:
                sock.send(head[sent : sent + 1].encode())
                sent += 1
            except (ConnectionResetError, BrokenPipeError):
                end = "reset"
        if select.select([sock], [], [], 0.02)[0]:
            try:
                data = sock.recv(65536)
                if not data:
                    end = "eof"
                got += data
            except ConnectionResetError:
                end = "reset"
        if end is not None:
            closed_after = round(time.monotonic() - start, 4)
    sock.close()
    status = got.split(b"\r\n", 1)[0].decode(errors="replace") or None
    return {"end": end, "closed_after_s": closed_after, "head_bytes_sent": sent, "status": status}


MODES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "frag-flood": frag_flood,
    "fragments": fragments,
    "slow-fragment": slow_fragment,
    "ping-flood": ping_flood,
    "ping-burst": ping_burst,
    "ping-steady": ping_steady,
    "handshake": handshake_cases,
    "trickle-body": trickle_body,
    "trickle-head": trickle_head,
    "replay-hold": replay_hold,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--seconds", type=float, default=3.0, help="hard bound of the attack")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--size", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--rcvbuf", type=int, default=4096)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--case", action="append", default=[])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--writer-path", default="/ws/writer{n}")
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument(
        "--go", action="store_true", help="print 'ready', then wait for a line on stdin"
    )
    args = parser.parse_args(argv)
    if args.go:  # the interpreter's start-up stays out of the measured attack window
        print("ready", flush=True)
        sys.stdin.readline()
    started = time.monotonic()
    try:
        result = MODES[args.mode](args)
    except (OSError, ConnectionError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["mode"] = args.mode
    result["wall_s"] = round(time.monotonic() - started, 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
