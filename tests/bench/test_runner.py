"""The load tester against real servers: exact counts, a slowed server, an unreachable URL."""

from __future__ import annotations

import functools
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.bench.plain_server import plain_server
from tests.conftest import Server
from wschat.bench.config import BenchConfig, Protocol, Scenario
from wschat.bench.payload import Dialect
from wschat.bench.runner import BenchResult, run_bench
from wschat.errors import BenchError

# The tests against wschat serve share one (``shared_server``): every run has a room and
# connection names of its own (its run id), so no run sees another's traffic.


def assert_exact(result: BenchResult, expected: int) -> None:
    s = result.stats
    assert s.errors == {}, s.errors
    assert (s.expected, s.delivered, s.lost, s.duplicates, s.reordered) == (
        expected,
        expected,
        0,
        0,
        0,
    )
    assert s.latency.count == expected


@pytest.mark.parametrize(
    ("scenario", "n", "senders", "messages", "expected"),
    [
        (Scenario.FANOUT, 60, 3, 20, 60 * 3 * 20),  # every receiver gets every message
        (Scenario.CHAT, 20, 1, 5, 20 * 20 * 5),  # everyone sends, everyone receives all
        (Scenario.ECHO, 30, 1, 10, 30 * 10),  # each echo back to its sender
    ],
)
async def test_counts_are_exact_against_wschat_serve(
    shared_server: Server, scenario: Scenario, n: int, senders: int, messages: int, expected: int
) -> None:
    config = BenchConfig(
        url=shared_server.ws,
        n=n,
        scenario=scenario,
        senders=senders,
        messages=messages,
        duration_s=20,
    )
    result = await run_bench(config)
    assert result.stats.opened == n
    assert result.stats.sent == expected // (1 if scenario is Scenario.ECHO else n)
    assert_exact(result, expected)
    tcp, upgrade = result.stats.tcp_connect.summary(), result.stats.upgrade.summary()
    assert tcp is not None and upgrade is not None
    assert tcp.count == upgrade.count == n


@pytest.mark.parametrize(
    ("protocol", "dialect"),
    [(Protocol.AUTO, Dialect.V1), (Protocol.V1, Dialect.V1), (Protocol.PLAIN, Dialect.PLAIN)],
)
async def test_both_dialects_of_wschat_serve(
    shared_server: Server, protocol: Protocol, dialect: Dialect
) -> None:
    config = BenchConfig(url=shared_server.ws, n=30, protocol=protocol, messages=10, senders=2)
    result = await run_bench(config)
    assert result.dialect is dialect
    assert_exact(result, 30 * 2 * 10)


async def test_open_loop_counts_are_exact(shared_server: Server) -> None:
    config = BenchConfig(url=shared_server.ws, n=40, rate=20, messages=10, duration_s=5, senders=2)
    result = await run_bench(config)
    assert result.unsent == 0
    assert_exact(result, 40 * 2 * 10)


async def test_a_few_hundred_connections_held(shared_server: Server) -> None:
    config = BenchConfig(url=shared_server.ws, n=300, scenario=Scenario.CONNECT, duration_s=1)
    result = await run_bench(config)
    s = result.stats
    assert (s.attempted, s.opened, s.error_count) == (300, 300, 0)
    assert len(result.plan.sources) >= 1  # loopback: source addresses spread
    assert s.series and max(x.open for x in s.series) == 300


async def test_counts_are_exact_against_a_plain_server() -> None:
    async with plain_server() as srv:
        result = await run_bench(BenchConfig(url=srv.url, n=30, messages=15, duration_s=10))
    assert str(result.dialect) == "plain"
    assert_exact(result, 30 * 15)


async def test_a_slowed_server_shows_in_the_tail() -> None:
    # every 25th echo is held 300 ms: closed loop, so only those messages are slow
    async with plain_server(lambda sender, seq: 0.3 if seq % 25 == 24 else 0.0) as srv:
        config = BenchConfig(url=srv.url, n=2, scenario=Scenario.ECHO, messages=100, duration_s=20)
        result = await run_bench(config)
    assert_exact(result, 200)
    summary = result.stats.latency.summary()
    assert summary is not None
    assert summary.p50_ms < 100
    assert summary.p99_ms >= 290 and summary.max_ms >= 290


async def test_open_loop_counts_from_the_intended_send_time() -> None:
    """One 500 ms stall at 50 msg/s: closed loop sees one slow message, open loop ~25."""

    def stall(sender: int, seq: int) -> float:
        return 0.5 if seq == 20 else 0.0

    async with plain_server(stall) as srv:
        closed = await run_bench(
            BenchConfig(url=srv.url, n=1, scenario=Scenario.ECHO, messages=100, duration_s=20)
        )
        opened = await run_bench(
            BenchConfig(
                url=srv.url, n=1, scenario=Scenario.ECHO, rate=50, messages=100, duration_s=5
            )
        )
    assert_exact(closed, 100)
    assert_exact(opened, 100)
    closed_s, open_s = closed.stats.latency.summary(), opened.stats.latency.summary()
    assert closed_s is not None and open_s is not None
    # closed loop: the stall hides in one sample (coordinated omission)
    assert closed_s.max_ms >= 490 and closed_s.p90_ms < 100
    # open loop: the messages scheduled during the stall waited too, and are counted so
    assert open_s.max_ms >= 450 and open_s.p90_ms >= 100


async def test_unreachable_url_fails_clearly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(BenchError, match=r"no server at ws://127\.0\.0\.1:\d+.*wschat serve"):
            await run_bench(BenchConfig(url=f"ws://127.0.0.1:{port}", n=5, duration_s=1))


async def test_forcing_v1_on_a_plain_server_fails_clearly() -> None:
    async with plain_server() as srv:
        with pytest.raises(BenchError, match=r"did not accept the subprotocol wschat\.v1"):
            await run_bench(BenchConfig(url=srv.url, n=2, protocol=Protocol.V1, duration_s=1))


async def test_a_server_that_refuses_the_upgrade(shared_server: Server) -> None:
    with pytest.raises(BenchError, match=r"refused the WebSocket upgrade: HTTP 404 Not Found"):
        await run_bench(BenchConfig(url=shared_server.ws + "/nothing", n=2, duration_s=1))


async def test_connections_the_server_closes_are_counted_by_close_code() -> None:
    async with plain_server() as srv:
        # the plain server closes every unknown path at once with 1008
        result = await run_bench(
            BenchConfig(url=srv.url + "/x", n=5, messages=1, duration_s=1, drain_timeout_s=0.2)
        )
    assert result.stats.errors["close 1008"] >= 5


async def test_a_plain_http_server_is_named_not_a_websocket_endpoint(tmp_path: Path) -> None:
    # http.server answers HTTP/1.0 404, which a WebSocket client cannot even parse
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            url = f"ws://127.0.0.1:{httpd.server_address[1]}"
            with pytest.raises(BenchError) as failed:
                await run_bench(BenchConfig(url=url, n=2, duration_s=1))
        finally:
            httpd.shutdown()
    assert "answered HTTP 404 File not found: not a WebSocket endpoint" in str(failed.value)
