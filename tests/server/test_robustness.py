"""Slow, vanished and oversized clients never hurt anyone else, and nothing leaks."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import psutil
import websockets

from tests.conftest import Server
from tests.helpers import get_json, masked_frame, raw_handshake, reset, wait_until
from wschat.protocol import SUBPROTOCOL

# Tests that count the server's connections, tasks or rooms, or stop it, each start their
# own; the others share one (``shared_server``) with names and rooms of their own.


def _established(server: Server) -> int:
    """Count the server process's established TCP connections on its port."""
    conns = psutil.Process(server.proc.pid).net_connections(kind="tcp")
    return sum(
        1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
    )


async def test_slow_receiver_does_not_stall_others(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--outbox-size", "8", "--rate-limit", "0")  # floods on purpose
    # A peer that completes the handshake and then never reads, with a tiny receive buffer.
    stalled = raw_handshake(server.port, "/ws/stalled", rcvbuf=4096)
    payload = "x" * 30_000
    count = 200  # ~6 MB: far more than the socket buffers and outbox can hold
    async with asyncio.timeout(30):
        async with (
            websockets.connect(f"{server.ws}/ws/sender", max_size=None) as sender,
            websockets.connect(f"{server.ws}/ws/reader", max_size=None) as reader,
        ):
            received = 0

            async def read_all() -> None:
                nonlocal received
                while received < count:
                    msg = await reader.recv()
                    assert msg == f"Client sender: {received} {payload}"
                    received += 1

            task = asyncio.create_task(read_all())
            for i in range(count):
                # Paced by its own copy: a sender that outruns every reader is a flood, not this.
                await sender.send(f"{i} {payload}")
                assert await sender.recv() == f"Client sender: {i} {payload}"
            await task
            assert received == count
            health = get_json(server.http + "/healthz")
            assert health["slow_consumers"] == 1
            # The stalled peer never reads its close frame: it is aborted after the close timeout.
            await wait_until(lambda: get_json(server.http + "/healthz")["connections"] == 2)
    stalled.close()


async def test_slow_consumer_gets_close_code_4001(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--outbox-size", "4", "--rate-limit", "0")  # floods on purpose
    async with asyncio.timeout(30):
        # max_queue=1 + a small read limit: the websockets client stops reading the socket.
        slow = await websockets.connect(f"{server.ws}/ws/slow", max_queue=1, max_size=None)
        async with websockets.connect(f"{server.ws}/ws/fast", max_size=None) as fast:
            for i in range(300):
                await fast.send(f"{i} " + "y" * 20_000)
                await fast.recv()
            await wait_until(lambda: get_json(server.http + "/healthz")["slow_consumers"] == 1)
        # Once the slow client catches up on reading, it finds the documented close code.
        try:
            while True:
                await slow.recv()
        except websockets.ConnectionClosed:
            pass
        assert slow.close_code in (4001, 1006)
        await slow.close()


async def test_resets_and_closes_leak_nothing(server: Server) -> None:
    base = get_json(server.http + "/healthz")
    async with asyncio.timeout(30):
        clean = [await websockets.connect(f"{server.ws}/ws/c{i}") for i in range(20)]
        echo = [await websockets.connect(f"{server.ws}/ws") for _ in range(5)]
        raw = [raw_handshake(server.port, f"/ws/r{i}") for i in range(20)]
        raw += [raw_handshake(server.port, "/ws") for _ in range(5)]
        assert get_json(server.http + "/healthz")["connections"] == 50
        # A message in flight while peers vanish: the failed sends must clean up too.
        await clean[0].send("bye")
        for sock in raw:
            reset(sock)
        for ws in clean[::2]:
            await ws.close()
        for ws in clean[1::2]:
            ws.transport.abort()  # type: ignore[attr-defined]
        for ws in echo:
            await ws.close()
        await wait_until(lambda: get_json(server.http + "/healthz")["connections"] == 0)
        await wait_until(lambda: _established(server) == 0)
        await wait_until(lambda: get_json(server.http + "/healthz")["tasks"] <= base["tasks"])
        health = get_json(server.http + "/healthz")
        assert health["rooms"] == 0


async def test_oversized_message_closes_1009_and_others_carry_on(
    shared_server: Server, tag: str
) -> None:
    url = f"{shared_server.ws}/ws/{{}}-{tag}?room=size-{tag}"
    async with asyncio.timeout(15):
        async with (
            websockets.connect(url.format("big"), max_size=None) as big,
            websockets.connect(url.format("ok")) as ok,
        ):
            await big.send("z" * (64 * 1024 + 1))
            await big.wait_closed()
            assert big.close_code == 1009
            await ok.send("still here")
            assert await ok.recv() == f"Client ok-{tag}: still here"


async def test_max_message_size_flag(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--max-message-size", "100")
    async with asyncio.timeout(15), websockets.connect(f"{server.ws}/ws") as ws:
        await ws.send("a" * 90)
        assert await ws.recv() == "You said: " + "a" * 90
        await ws.send("a" * 101)
        await ws.wait_closed()
        assert ws.close_code == 1009


async def test_sigterm_closes_1001_and_exits_promptly(server: Server) -> None:
    async with asyncio.timeout(20):
        clients = [await websockets.connect(f"{server.ws}/ws/c{i}") for i in range(10)]
        echo = await websockets.connect(f"{server.ws}/ws")
        # One peer that never reads and never answers the close: it must not hold the exit.
        stalled = raw_handshake(server.port, "/ws/stalled", rcvbuf=4096)
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for ws in [*clients, echo]:
            await ws.wait_closed()
            assert ws.close_code == 1001
        await asyncio.to_thread(server.proc.wait, 15)
        assert time.monotonic() - start < 10
        stalled.close()


async def test_ctrl_c_exits_promptly(server: Server) -> None:
    async with asyncio.timeout(20), websockets.connect(f"{server.ws}/ws/a") as ws:
        server.proc.send_signal(signal.SIGINT)
        await ws.wait_closed()
        assert ws.close_code == 1001
        await asyncio.to_thread(server.proc.wait, 15)


def test_port_zero_prints_the_real_port(shared_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5):
        pass
    assert shared_server.port != 0


def test_env_var_sets_option(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(env={"WSCHAT_OUTBOX_SIZE": "3"})
    assert get_json(server.http + "/healthz")["status"] == "ok"
    # The option reached the server: --help shows it reads the variable, and a bad value fails.
    import subprocess
    import sys

    bad = subprocess.run(
        [sys.executable, "-m", "wschat", "serve", "--port", "0"],
        env={"WSCHAT_OUTBOX_SIZE": "zero", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert bad.returncode == 2
    assert "outbox-size" in bad.stderr


def test_healthz_reports_connections(server: Server) -> None:
    health = get_json(server.http + "/healthz")
    assert health["status"] == "ok"
    assert health["connections"] == 0


def test_server_raises_its_own_descriptor_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Started with a soft limit of 256 descriptors, it still holds 400 sockets.
    import resource
    import subprocess
    import sys

    def low_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    cmd = [sys.executable, "-m", "wschat", "serve", "--port", "0", "--db", ":memory:"]
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=low_limit
        )
    socks = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        socks = [raw_handshake(port, f"/ws/c{i}") for i in range(400)]
        assert get_json(f"http://127.0.0.1:{port}/healthz")["connections"] == 400
    finally:
        for sock in socks:
            sock.close()
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_idle_chat_sockets_hold_no_task(server: Server) -> None:
    # Sockets are read by callbacks from the protocol (server/conn/reader.py), not by a task
    # each: a task exists only while a message is handled.
    base = get_json(server.http + "/healthz")["tasks"]
    async with asyncio.timeout(30):
        plain = [await websockets.connect(f"{server.ws}/ws/p{i}") for i in range(30)]
        # These never read: an unbounded client queue keeps their presence events from
        # pausing the client library's reads (which would hold up its closing handshake).
        v1 = [
            await websockets.connect(
                f"{server.ws}/ws/v{i}",
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                max_queue=None,
            )
            for i in range(30)
        ]
        echo = [await websockets.connect(f"{server.ws}/ws") for _ in range(10)]
        assert get_json(server.http + "/healthz")["connections"] == 70
        # Once the last ones are set up (their history read happens on the store's thread),
        # the 70 idle sockets hold no task: a task per socket would keep this above 70.
        await wait_until(lambda: get_json(server.http + "/healthz")["tasks"] < base + 5, within=5)
        await plain[0].send("still served")
        assert await plain[1].recv() == "Client p0: still served"
        await echo[0].send("and echoed")
        assert await echo[0].recv() == "You said: and echoed"
        for ws in plain + v1 + echo:
            await ws.close()


async def test_a_pipelined_flood_arrives_whole_and_in_order(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--rate-limit", "0")  # floods on purpose
    count = 500
    async with asyncio.timeout(30), websockets.connect(f"{server.ws}/ws/watcher") as watcher:
        flood = raw_handshake(server.port, "/ws/flood")
        try:
            # Every frame in one write: they reach the server in a few reads, far faster
            # than it handles them one at a time.
            flood.sendall(b"".join(masked_frame(0x1, f"m{i}".encode()) for i in range(count)))
            got = [await watcher.recv() for _ in range(count)]
        finally:
            flood.close()
    assert got == [f"Client flood: m{i}" for i in range(count)]
