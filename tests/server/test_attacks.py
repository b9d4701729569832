"""Issue 13, part 2: transport-level attacks, each from its own process, against a real server.

Each attack is ``tests/server/attacker.py`` in a subprocess (raw sockets, bounded, one JSON
line of what it saw). Where the attack is against everyone, a ``Bystander`` in another room
measures its round trips before and during the attack and must lose nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
import websockets

from tests.conftest import Server
from tests.helpers import get_json, raw_handshake, reset, wait_until
from tests.server.bystander import BASELINE_S, BYSTANDER_FLAGS, Bystander
from tests.server.test_metrics import scrape
from tests.server.v1client import connect, next_of, say

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


async def spawn(server: Server, mode: str, *args: str) -> asyncio.subprocess.Process:
    """Start an attacker process against ``server``; return once it is ready to attack.

    It attacks when told (``outcome``, ``go``), so its interpreter's start-up, which competes
    for this 2-core machine's CPU, falls outside the bystander's attack window.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.server.attacker",
        mode,
        "--port",
        str(server.port),
        "--go",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


def go(proc: asyncio.subprocess.Process) -> None:
    """Let a spawned attacker start (once)."""
    stdin = proc.stdin
    if stdin is not None and not stdin.is_closing():
        stdin.write(b"go\n")
        stdin.close()


async def outcome(proc: asyncio.subprocess.Process, within: float = 20.0) -> dict[str, Any]:
    """Start the attacker if it waits, wait for it to stop by itself, return what it printed."""
    go(proc)
    try:
        async with asyncio.timeout(within):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the attacker did not stop by itself") from None
    assert proc.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in seen, seen
    return seen


async def attack(server: Server, mode: str, *args: str) -> dict[str, Any]:
    return await outcome(await spawn(server, mode, *args))


def no_traceback(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-3000:]


def rss(server: Server) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


# --- 1. fragments -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_an_empty_continuation_flood_is_closed_within_a_second(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(*BYSTANDER_FLAGS)
    async with asyncio.timeout(30), Bystander.running(server) as bystander:
        await bystander.baseline(BASELINE_S)
        proc = await spawn(server, "frag-flood", "--path", "/ws", "--seconds", "3")
        async with bystander.attack():
            seen = await outcome(proc)
    assert seen["continuations_sent"] > 128, seen  # it did flood, past the default limit
    assert seen["close_code"] in (1009, 1008), seen
    assert seen["close_after_s"] <= 1.0, seen
    assert seen["eof_after_s"] is not None and seen["eof_after_s"] <= 2.0, seen  # TCP closed
    bystander.check()
    no_traceback(server)


async def test_max_fragments_is_exact(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--max-fragments", "8")
    async with asyncio.timeout(20):
        fits, too_many = await asyncio.gather(
            attack(server, "fragments", "--count", "8", "--size", "2"),
            attack(server, "fragments", "--count", "9", "--size", "2"),
        )
    # 8 fragments are one message, echoed whole; the clean close that follows is answered.
    assert fits["messages"] == [f"You said: {fits['sent']}"], fits
    assert fits["close_code"] == 1000 and fits["eof_after_s"] is not None, fits
    # A 9th is one too many: 1009, nothing echoed, the TCP connection ends.
    assert too_many["messages"] == [], too_many
    assert too_many["close_code"] == 1009, too_many
    assert too_many["eof_after_s"] is not None and too_many["eof_after_s"] <= 2.0, too_many
    assert server.log().count("WebSocket closed 1009") == 1
    no_traceback(server)


@pytest.mark.slow
async def test_an_unfinished_fragmented_message_is_closed_1008_after_the_fragment_timeout(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server: Server = server_factory(
        "--fragment-timeout", "2", "--ping-interval", "1", *BYSTANDER_FLAGS
    )
    async with asyncio.timeout(30), Bystander.running(server) as bystander:
        await bystander.baseline(BASELINE_S)
        proc = await spawn(
            server, "slow-fragment", "--path", "/ws", "--interval", "1", "--seconds", "6"
        )
        async with bystander.attack():
            seen = await outcome(proc)
    assert seen["pings"] >= 1, seen  # it was pinged, and answered: keepalive is not progress
    assert seen["close_code"] == 1008, seen
    assert 1.9 <= seen["close_after_s"] <= 4.0, seen  # after its first frame
    assert seen["eof_after_s"] is not None, seen
    bystander.check()
    no_traceback(server)


# --- 2. control frames --------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_ping_flood_from_a_peer_that_never_reads_costs_no_memory(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(*BYSTANDER_FLAGS)
    async with asyncio.timeout(40), Bystander.running(server) as bystander:
        await bystander.baseline(BASELINE_S)
        before = rss(server)
        peak = before
        proc = await spawn(
            server, "ping-flood", "--path", "/ws", "--rcvbuf", "4096", "--size", "125",
            "--seconds", "5",
        )  # fmt: skip
        async with bystander.attack():
            go(proc)
            while proc.returncode is None:
                peak = max(peak, rss(server))
                try:
                    async with asyncio.timeout(0.1):
                        await proc.wait()
                except TimeoutError:
                    pass
            seen = await outcome(proc)
        peak = max(peak, rss(server))
    growth = (peak - before) / MB
    assert growth < 20, f"the server grew by {growth:.1f} MB: {seen}"
    assert seen["close_code"] in (None, 1008), seen
    closed = seen["close_code"] == 1008 or seen["eof_after_s"] is not None
    blocked = seen["stalled_at_end_s"] >= 1.0  # the server stopped reading from it
    assert closed or blocked, seen
    bystander.check()
    no_traceback(server)


@pytest.mark.slow
async def test_pings_past_the_control_frame_rate_close_1008(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--control-frame-rate", "5")
    async with asyncio.timeout(30):
        burst, steady = await asyncio.gather(
            attack(server, "ping-burst", "--path", "/ws", "--count", "30", "--seconds", "3"),
            attack(server, "ping-steady", "--path", "/ws", "--interval", "1", "--seconds", "5"),
        )
    # 30 at once is past the burst of 10: closed 1008, the excess never answered.
    assert burst["close_code"] == 1008, burst
    assert burst["pongs"] <= 12, burst
    assert burst["eof_after_s"] is not None, burst
    # One a second is well within 5/s: every ping answered, open until it closes itself.
    assert steady["pings_sent"] == 5, steady
    assert steady["open_at_end"] and steady["pongs"] == 5, steady
    assert steady["close_code"] == 1000, steady
    no_traceback(server)


# --- 3. request heads ---------------------------------------------------------------------------


def _half_handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    return sock


@pytest.mark.slow
async def test_oversized_request_heads_get_414_or_431_and_are_closed(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory(*BYSTANDER_FLAGS)
    small: Server = server_factory("--max-header-bytes", "1024")
    expected = {
        "long-line:9000": "HTTP/1.1 414",  # a request line over 8 KiB
        "headers:129": "HTTP/1.1 431",  # one header line more than 128
        "header-bytes:9000": "HTTP/1.1 431",  # one header line over 8 KiB
        "headers:128": "HTTP/1.1 101",  # exactly 128 is allowed
    }
    small_expected = {"header-bytes:2048": "HTTP/1.1 431", "header-bytes:900": "HTTP/1.1 101"}
    cases = [arg for case in expected for arg in ("--case", case)]
    small_cases = [arg for case in small_expected for arg in ("--case", case)]
    async with asyncio.timeout(30):
        async with Bystander.running(server) as bystander:
            await bystander.baseline(BASELINE_S)
            procs = await asyncio.gather(
                spawn(server, "handshake", "--repeat", "3", *cases),
                spawn(small, "handshake", "--repeat", "2", *small_cases),
            )
            async with bystander.attack():
                seen, small_seen = await asyncio.gather(*map(outcome, procs))
        bystander.check()
        for results, wanted in ((seen, expected), (small_seen, small_expected)):
            for result in results["results"]:
                status = wanted[result["case"]]
                assert result["status"].startswith(status), result
                if status != "HTTP/1.1 101":
                    # Answered, then the TCP connection ends at once (a FIN, not a reset).
                    assert result["end"] == "eof", result
                    assert result["closed_after_s"] <= 0.1, result
                else:
                    assert result["end"] == "upgraded", result
        # Several such sockets tried, and two half-sent handshakes still open: a clean stop.
        half = [_half_handshake(server.port) for _ in range(2)]
        half += [_half_handshake(small.port) for _ in range(2)]
        await asyncio.sleep(0.2)
        statuses = await asyncio.gather(
            asyncio.to_thread(server.stop), asyncio.to_thread(small.stop)
        )
        for sock in half:
            sock.close()
    assert statuses == [0, 0], statuses
    for each in (server, small):
        no_traceback(each)
        assert "Finished server process" in each.log()


# --- 4. plain HTTP connections ------------------------------------------------------------------


def _server_side_open(server: Server, attacker_pid: int) -> int | None:
    """Count the server's sockets whose peer is one of the attacker's sockets."""
    try:
        ours = {
            c.laddr.port
            for c in psutil.Process(attacker_pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == server.port
        }
    except psutil.NoSuchProcess:
        return None
    return sum(
        1
        for c in psutil.Process(server.proc.pid).net_connections(kind="tcp")
        if c.laddr.port == server.port and c.raddr and c.raddr.port in ours
    )


def _get_status(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        got = b""
        while b"\r\n" not in got:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    return got.split(b"\r\n", 1)[0].decode(errors="replace")


@pytest.mark.slow
async def test_trickled_request_bodies_hold_at_most_the_http_slots_and_time_out(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server: Server = server_factory(
        "--http-timeout", "2", "--max-http-connections", "50", *BYSTANDER_FLAGS
    )
    slow_head: Server = server_factory("--handshake-timeout", "2")
    samples: list[int] = []
    async with asyncio.timeout(40), Bystander.running(server) as bystander:
        await bystander.baseline(BASELINE_S)
        proc = await spawn(
            server, "trickle-body", "--count", "100", "--length", "1000",
            "--interval", "0.5", "--path", "/healthz", "--seconds", "6",
        )  # fmt: skip
        head_proc = await spawn(slow_head, "trickle-head", "--interval", "0.5", "--seconds", "5")
        async with bystander.attack():
            go(proc)
            go(head_proc)
            stop = threading.Event()

            def sample() -> None:
                stop.wait(1.0)  # every connection opened and its head sent by then
                while not stop.is_set():
                    count = _server_side_open(server, proc.pid)
                    if count is not None:
                        samples.append(count)
                    # Each sample parses the kernel's TCP table in this process, holding the
                    # GIL for milliseconds: sampled sparsely, so the bystander here measures
                    # the server and not this sampler. The connections live 2 s each.
                    stop.wait(0.15)

            sampler = asyncio.create_task(asyncio.to_thread(sample))
            try:
                await asyncio.sleep(1.2)
                # The slots are full: plain HTTP is refused, WebSockets are not (nor counted).
                during = await asyncio.to_thread(_get_status, server.port)
                newcomer, _ = await connect(server, "newcomer", room="fresh")
                await say(newcomer, "made it", cid="n1")
                echoed = await next_of(newcomer, "message", within=2.0)
                await newcomer.close()
                seen, head = await asyncio.gather(outcome(proc), outcome(head_proc))
            finally:
                stop.set()  # the sampler thread must end, or the event loop never closes
                await sampler
    assert during.startswith("HTTP/1.1 503 "), during
    assert (echoed["text"], echoed["cid"]) == ("made it", "n1")
    # Once the slots are free, plain HTTP works again.
    assert get_json(f"{server.http}/healthz")["status"] == "ok"
    conns = seen["conns"]
    refused = [c for c in conns if (c["status"] or "").startswith("HTTP/1.1 503")]
    held = [c for c in conns if c not in refused]
    assert len(refused) == 50 and len(held) == 50, [c["status"] for c in conns]
    for c in refused:
        assert c["end"] in ("eof", "reset") and c["closed_after_s"] <= 0.5, c
    for c in held:  # closed --http-timeout after it opened, body unfinished
        assert c["end"] in ("eof", "reset") and 1.8 <= c["closed_after_s"] <= 3.5, c
    assert len(samples) >= 5 and max(samples) <= 50, samples
    # A request head trickled a byte at a time is closed by --handshake-timeout.
    assert head["end"] in ("eof", "reset") and 1.8 <= head["closed_after_s"] <= 3.0, head
    bystander.check()
    no_traceback(server)
    no_traceback(slow_head)


# --- 5. close codes in the records --------------------------------------------------------------


def _read_until_close_frame(sock: socket.socket, within: float) -> int:
    """Read (never answering a ping) until the server's close frame; return its code."""
    sock.settimeout(within)
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"the connection ended without a close frame: {buf!r}")
        buf += chunk
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            size = buf[1] & 0x7F
            opcode, payload, buf = buf[0] & 0x0F, buf[2 : 2 + size], buf[2 + size :]
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")


async def test_close_codes_are_recorded_as_they_happened(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--ping-interval", "1", "--ping-timeout", "1")
    async with asyncio.timeout(30):
        dozy = raw_handshake(server.port, "/ws/dozy")  # reads, never answers a ping
        resetter = raw_handshake(server.port, "/ws/resetter")
        normal = await websockets.connect(f"{server.ws}/ws/normal")
        reset(resetter)  # SO_LINGER (1, 0): a TCP reset, no close frame
        await normal.close()  # a clean 1000
        # The keepalive gives up on dozy: 1011, after which dozy just goes away.
        assert await asyncio.to_thread(_read_until_close_frame, dozy, 6.0) == 1011
        dozy.close()
        await wait_until(lambda: get_json(f"{server.http}/healthz")["connections"] == 0)
        health = get_json(f"{server.http}/healthz")
        metrics = await asyncio.to_thread(scrape, server.http)
    recorded = {
        dict(labels)["code"]: value
        for (name, labels), value in metrics.items()
        if name == "wschat_disconnects_total"
    }
    want = {"1000": 1, "1006": 1, "1011": 1}
    assert (health["closed_by_code"], recorded) == (want, want)
    log = server.log()
    for name, code in (("dozy", 1011), ("resetter", 1006), ("normal", 1000)):
        lines = re.findall(rf"close {name} room=\S* peer=\S* code=(\S+)", log)
        assert lines == [str(code)], (name, lines)
    no_traceback(server)
