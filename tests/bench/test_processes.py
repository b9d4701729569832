"""``wschat bench --processes N``: children's counts and HDR histograms merged exactly."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from tests.bench.plain_server import PlainServer, plain_server
from tests.conftest import Server
from tests.helpers import default_signals, get_json
from wschat.bench.barrier import Meeting
from wschat.bench.config import BenchConfig
from wschat.bench.processes import child_configs, merge, run_children
from wschat.bench.report import document, schema, table
from wschat.bench.stats import Latency
from wschat.errors import BenchError


def test_two_processes_add_up_exactly_against_a_real_server(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wschat",
            "bench",
            "--url",
            server.ws,
            "--processes",
            "2",
            "-n",
            "41",
            "--scenario",
            "fanout",
            "--senders",
            "2",
            "--rate",
            "10",
            "--messages",
            "5",
            "--duration",
            "2",
            "--json",
            str(report),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, schema())
    summary = doc["summary"]
    assert doc["processes"] == 2
    assert summary["connections"]["attempted"] == summary["connections"]["opened"] == 41
    # one room shared by both processes: all 41 receivers hear both senders' 5 messages each
    assert doc["shared_room"] is True
    assert doc["config"]["room"].startswith("bench-") and "," not in doc["config"]["room"]
    assert summary["messages"]["sent"] == 10
    assert summary["messages"]["expected"] == summary["messages"]["delivered"] == 41 * 10
    assert summary["messages"]["lost"] == 0
    assert summary["messages"]["duplicates"] == summary["messages"]["reordered"] == 0
    # the merged histograms hold every sample of both processes
    assert summary["latency_ms"]["count"] == 410
    assert summary["upgrade_ms"]["count"] == summary["tcp_connect_ms"]["count"] == 41
    assert summary["generator"]["source_addresses"] == 2  # each process its own


def bench_processes(url: str, report: Path, *args: str) -> dict[str, Any]:
    """Run ``wschat bench --processes 2 *args`` against ``url``; return its valid JSON report."""
    done = subprocess.run(
        [
            sys.executable, "-m", "wschat", "bench", "--url", url, "--processes", "2",
            "--json", str(report), "--no-progress", *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(report.read_text())
    jsonschema.validate(doc, schema())
    return doc


@contextmanager
def plain_server_thread(drop: Callable[[int, int, int], bool]) -> Iterator[PlainServer]:
    """Run ``plain_server(drop=drop)`` on its own event loop in a thread for the block."""
    ready = threading.Event()
    box: list[tuple[PlainServer, asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        async with plain_server(drop=drop) as state:
            box.append((state, asyncio.get_running_loop(), stop))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    state, loop, stop = box[0]
    try:
        yield state
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def test_loss_across_processes_is_counted_exactly(tmp_path: Path) -> None:
    # -n 20 over 2 processes: process 1 holds connections 0-9 (sender 0), process 2 holds
    # 10-19 (sender 10). The server leaves process 2's receivers out of sender 0's messages
    # 1 and 3: only a check across processes sees it (process 2 never saw sender 0 send).
    def drop(sender: int, seq: int, receiver: int) -> bool:
        return sender == 0 and seq in (1, 3) and receiver >= 10

    with plain_server_thread(drop) as server:
        doc = bench_processes(
            server.url, tmp_path / "lossy.json", "--scenario", "fanout", "-n", "20",
            "--senders", "2", "--rate", "10", "--messages", "5", "--protocol", "plain",
        )  # fmt: skip
    messages = doc["summary"]["messages"]
    assert doc["shared_room"] is True and doc["processes"] == 2
    assert messages["sent"] == 10
    assert messages["expected"] == 20 * 10
    assert messages["lost"] == 10 * 2
    assert messages["delivered"] == 20 * 10 - 10 * 2
    assert messages["duplicates"] == messages["reordered"] == messages["missed_while_closed"] == 0


def test_chat_over_two_processes_is_one_room(server: Server, tmp_path: Path) -> None:
    # every connection sends; each of the 7 hears all 7, whichever process either is in
    doc = bench_processes(
        server.ws, tmp_path / "chat.json", "--scenario", "chat", "-n", "7",
        "--rate", "10", "--messages", "3",
    )  # fmt: skip
    messages = doc["summary"]["messages"]
    assert doc["shared_room"] is True
    assert messages["sent"] == 7 * 3
    assert messages["expected"] == messages["delivered"] == 7 * 7 * 3
    assert messages["lost"] == messages["duplicates"] == 0


def test_one_sender_feeds_the_receivers_of_every_process(server: Server, tmp_path: Path) -> None:
    # fewer senders than processes: process 2 only receives
    doc = bench_processes(
        server.ws, tmp_path / "one.json", "--scenario", "fanout", "-n", "9", "--senders", "1",
        "--rate", "0", "--messages", "20",
    )  # fmt: skip
    messages = doc["summary"]["messages"]
    assert messages["sent"] == 20
    assert messages["expected"] == messages["delivered"] == 9 * 20
    assert messages["lost"] == 0
    assert doc["summary"]["latency_ms"]["count"] == 9 * 20


def test_room_per_process_keeps_each_processs_receivers_to_its_senders(
    server: Server, tmp_path: Path
) -> None:
    doc = bench_processes(
        server.ws, tmp_path / "rooms.json", "--room-per-process", "--scenario", "fanout",
        "-n", "11", "--senders", "2", "--rate", "10", "--messages", "3",
    )  # fmt: skip
    messages = doc["summary"]["messages"]
    assert doc["shared_room"] is False
    assert len(doc["config"]["room"].split(", ")) == 2  # two rooms
    assert messages["expected"] == messages["delivered"] == 6 * 3 + 5 * 3
    assert messages["lost"] == 0


def test_the_descriptor_limit_is_named_before_anything_opens() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wschat",
            "bench",
            "--url",
            "ws://127.0.0.1:9",
            "--processes",
            "2",
            "-n",
            "10000000",
            "--scenario",
            "connect",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "descriptors:" in done.stderr and "--processes" in done.stderr
    assert "Traceback" not in done.stderr


def test_merged_histograms_give_the_percentiles_of_one_histogram() -> None:
    one, parts = Latency(), [Latency(), Latency(), Latency()]
    for i in range(3000):
        duration_ns = (i * 7919 % 100_000 + 1) * 1000
        one.record_ns(duration_ns)
        parts[i % 3].record_ns(duration_ns)
    merged = Latency()
    for part in parts:
        merged.merge(json.loads(json.dumps(part.dump())))
    assert merged.summary() == one.summary()


def start_interruptible(
    url: str, ready: Callable[[], bool], report: Path, *args: str, **popen: Any
) -> subprocess.Popen[str]:
    """Start ``bench --processes 2 -n 10`` for 60 s; return once ``ready()`` (at most 20 s)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wschat",
            "bench",
            "--url",
            url,
            "--processes",
            "2",
            "-n",
            "10",
            "--duration",
            "60",
            "--json",
            str(report),
            "--no-progress",
            *(args or ("--senders", "2")),  # fan-out: one shared room, a sender per process
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
        preexec_fn=default_signals,  # SIGINT works also when pytest runs with & or nohup
        **popen,
    )
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.05)
    time.sleep(0.3)  # a few more sends at 10/s
    return proc


def sending(server: Server) -> Callable[[], bool]:
    """Return whether the server has all 10 connections and has had messages from them."""

    def ready() -> bool:
        if get_json(f"{server.http}/healthz")["connections"] < 10:
            return False
        with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        return any(
            line.startswith('wschat_messages_in_total{kind="room"}') and float(line.split()[-1]) > 0
            for line in metrics.splitlines()
        )

    return ready


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait (at most 20 s) for ``proc`` to exit; return what it printed."""
    try:
        return proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def check_partial(server: Server, report: Path, proc: subprocess.Popen[str], out: str) -> None:
    assert proc.returncode == 130
    assert "PARTIAL" in out and "10 of 10 connections" in out
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, schema())
    assert doc["partial"] is True and doc["processes"] == 2
    assert "unreported" not in doc  # both children wrote their partial report
    summary = doc["summary"]
    assert summary["connections"]["opened"] == 10
    assert summary["messages"]["sent"] > 0
    assert summary["latency_ms"]["count"] > 0  # merged from the children's histograms
    # every connection was closed by its child (1000), none cut short
    health = get_json(f"{server.http}/healthz")
    assert health["connections"] == 0
    assert health["closed_by_code"].get("1000", 0) >= 10, health


def test_sigint_to_the_parent_alone_stops_the_children_and_reports_partial(
    server: Server, tmp_path: Path
) -> None:
    # what `kill -INT PARENT` does: the children get SIGINT only from the parent
    report = tmp_path / "partial.json"
    proc = start_interruptible(server.ws, sending(server), report)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 130, err
    assert "interrupted: the processes close their connections" in err
    check_partial(server, report, proc, out)


def test_a_terminals_ctrl_c_interrupts_each_child_once(server: Server, tmp_path: Path) -> None:
    # a terminal's Ctrl-C signals the foreground process group: the parent's own, here
    report = tmp_path / "partial.json"
    proc = start_interruptible(server.ws, sending(server), report, process_group=0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 130, err
    check_partial(server, report, proc, out)


def test_a_child_without_a_report_is_named_in_the_partial_report(server: Server) -> None:
    # process 1 runs against the server; process 2 finds no server and exits 1 at once
    config = BenchConfig(url=server.ws, n=10, senders=2, duration_s=60)
    first, second = child_configs(config, 2)
    configs = [first, dataclasses.replace(second, url=f"ws://127.0.0.1:{closed_port()}")]
    # Ctrl-C reaches this process (and only it: each child has its own process group) once
    # process 1's 5 connections are open; default SIGINT also when pytest runs with &
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if get_json(f"{server.http}/healthz")["connections"] >= 5:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        t0 = time.monotonic()
        reports = run_children(configs)
        took = time.monotonic() - t0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert reports.interrupted and took < 30
    assert len(reports.docs) == 1 and reports.docs[0]["partial"] is True
    assert len(reports.unreported) == 1
    assert reports.unreported[0].startswith("process 2 of 2: "), reports.unreported
    assert "no server at" in reports.unreported[0]
    result = merge(config, reports.docs)
    result.partial, result.unreported = True, tuple(reports.unreported)
    doc = {**document(result), "processes": 2}
    jsonschema.validate(doc, schema())
    assert doc["summary"]["connections"]["opened"] == 5
    console = Console(width=250, record=True)
    console.print(table(doc))
    text = console.export_text()
    assert "PARTIAL" in text and "5 of 10 connections" in text
    assert "1 of 2 reported" in text and "process 2 of 2" in text


def test_a_shared_room_goes_on_without_a_process_that_ended(server: Server) -> None:
    # process 2 finds no server and exits at once: process 1 must not wait for it to connect
    config = BenchConfig(url=server.ws, n=10, senders=2, duration_s=1, messages=3, rate=10)
    meeting = Meeting(2)
    first, second = (
        dataclasses.replace(c, sync_fds=meeting.child_fds(i))
        for i, c in enumerate(child_configs(config, 2))
    )
    second = dataclasses.replace(second, url=f"ws://127.0.0.1:{closed_port()}")
    t0 = time.monotonic()
    with pytest.raises(BenchError, match=r"process 2 of 2: .*no server at"):
        run_children([first, second], meeting=meeting)
    assert time.monotonic() - t0 < 20
    assert meeting.phases == ["connected", "settled", "sent", "drained"]  # process 1's, alone


def closed_port() -> int:
    """Return a local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_children_die_with_a_killed_parent(server: Server, tmp_path: Path) -> None:
    # they run in their own process group: nothing else would stop them before their 60 s
    proc = start_interruptible(server.ws, sending(server), tmp_path / "never.json")
    proc.kill()
    finish(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if get_json(f"{server.http}/healthz")["connections"] == 0:
            break
        time.sleep(0.1)
    assert get_json(f"{server.http}/healthz")["connections"] == 0


class SlowCloser(socketserver.ThreadingTCPServer):
    """A WebSocket server that holds every connection silently and answers a close 1 s late.

    It records, per connection, whether the client was still there to read that answer
    (``clean``) or had already dropped the connection (``dropped``): a client that waits for
    the closing handshake, as a bench process does within its close bound, is clean.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowCloseHandler)
        self.open = 0
        self.clean = 0
        self.dropped = 0
        self.lock = threading.Lock()

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.server_address[1]}"

    def count(self, field: str, delta: int = 1) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + delta)


class _SlowCloseHandler(socketserver.BaseRequestHandler):
    server: SlowCloser

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.server.count("open")
        try:
            if not self._until_close_frame(sock):
                return
            time.sleep(1.0)  # a slow server: the closing handshake's answer comes late
            try:
                early = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                early = False  # nothing pending: the client is still waiting for our answer
            except OSError:  # reset
                early = True
            if not early:
                sock.sendall(b"\x88\x02\x03\xe8")  # close 1000
            self.server.count("dropped" if early else "clean")
        finally:
            self.server.count("open", -1)

    @staticmethod
    def _until_close_frame(sock: socket.socket) -> bool:
        """Read client frames (masked, RFC 6455 5.2) until a close; False at EOF before one."""
        buf = b""
        while True:
            while len(buf) >= 2:
                length, at = buf[1] & 0x7F, 2
                if length == 126:
                    length, at = int.from_bytes(buf[2:4]), 4
                elif length == 127:
                    length, at = int.from_bytes(buf[2:10]), 10
                end = at + 4 + length
                if len(buf) < end:
                    break
                if buf[0] & 0x0F == 0x8:
                    return True
                buf = buf[end:]
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf += chunk


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


@pytest.fixture
def slow_closer() -> Iterator[SlowCloser]:
    server = SlowCloser()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_child_gets_one_sigint_and_finishes_its_closing_handshakes(
    slow_closer: SlowCloser, tmp_path: Path
) -> None:
    # A terminal's Ctrl-C signals the parent's process group. Were the children in it, each
    # would get a second SIGINT from the parent, and asyncio.Runner's second interrupt cuts
    # the close short: against a server that answers closes 1 s late, they would drop them.
    report = tmp_path / "partial.json"
    proc = start_interruptible(
        slow_closer.ws, lambda: slow_closer.open >= 10, report, "--scenario", "connect",
        process_group=0,
    )  # fmt: skip
    os.killpg(proc.pid, signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 130, err
    assert "PARTIAL" in out and "10 of 10 connections" in out
    assert json.loads(report.read_text())["partial"] is True
    deadline = time.monotonic() + 5
    while slow_closer.clean + slow_closer.dropped < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (slow_closer.clean, slow_closer.dropped) == (12, 0)  # each child's probe, and the 10
