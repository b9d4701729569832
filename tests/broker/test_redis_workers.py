"""``wschat serve --workers N`` (issue 14): ``/metrics`` and ``/healthz`` answer for every
worker, counters never go down between scrapes, and the workers die with their parent."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import urllib.request
from pathlib import Path

import psutil

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import get_json, wait_until
from tests.server.v1client import connect, next_of, say
from wschat.server.workers import POOL_DIR_PREFIX


def _pool_dirs(server: Server) -> list[Path]:
    """Return the snapshot directories of ``server``'s ``--workers`` parent."""
    return list(Path(tempfile.gettempdir()).glob(f"{POOL_DIR_PREFIX}{server.proc.pid}-*"))


def _room_messages_in(server: Server) -> float:
    with urllib.request.urlopen(server.http + "/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith('wschat_messages_in_total{kind="room"}'):
                return float(line.split()[1])
    raise AssertionError("no wschat_messages_in_total in /metrics")


async def test_workers_report_totals_and_die_with_their_parent(
    server_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    args = ("--broker", redis_server.url, "--workers", "2", "--drain-seconds", "0.2")
    server: Server = server_factory(*args)
    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == 2

    def serving(pid: int) -> int:
        conns = psutil.Process(pid).net_connections()
        return sum(1 for s in conns if s.status == "ESTABLISHED" and s.laddr.port == server.port)

    async with asyncio.timeout(40):
        # Connect until both workers hold some (which one accepts is the kernel's choice).
        clients = []
        while len(clients) < 4 or not all(serving(w.pid) > 0 for w in workers):
            assert len(clients) < 64, [serving(w.pid) for w in workers]
            clients.append((await connect(server, f"u{len(clients)}"))[0])
        for i, ws in enumerate(clients):
            await say(ws, f"m{i}")
            await next_of(ws, "message")
        # Whichever worker answers, the figures are the server's: both workers' messages and
        # connections, and a counter that never goes down from one scrape to the next.
        await wait_until(lambda: _room_messages_in(server) == len(clients))
        seen = [_room_messages_in(server) for _ in range(8)]
        assert seen == [len(clients)] * 8, seen
        for _ in range(4):
            health = get_json(server.http + "/healthz")
            assert (health["workers"], health["connections"]) == (2, len(clients)), health

        # kill -9 of the parent: the workers drain and exit on their own, the port is free,
        # and the same command starts again on it.
        server.stop(signal.SIGKILL)
        _gone, alive = await asyncio.to_thread(psutil.wait_procs, workers, 15)
        assert not alive, f"workers outlived their parent: {alive}"
        assert _pool_dirs(server), "the parent's snapshot directory is not where expected"
        again: Server = server_factory(*args, "--port", str(server.port))
        assert get_json(again.http + "/healthz")["workers"] == 2
        # The dead parent's snapshot directory was swept by the next start; its own goes
        # with a clean stop.
        assert _pool_dirs(server) == []
        assert len(_pool_dirs(again)) == 1
        for ws in clients:
            assert ws.close_code is not None  # told by their worker's drain, not left hanging
        assert again.stop() == 0
        assert _pool_dirs(again) == []
