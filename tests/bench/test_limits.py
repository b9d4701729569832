"""The pre-check: descriptor and port limits, loopback source addresses."""

from __future__ import annotations

import resource
import socket

import pytest

from wschat.bench import limits
from wschat.errors import BenchError


def test_plan_raises_the_soft_limit_and_spreads_on_loopback() -> None:
    plan = limits.plan(100, "127.0.0.1")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 100 + limits.FD_RESERVE
    assert (plan.sources and plan.source(0) != plan.source(1)) or len(plan.sources) == 1
    assert limits.plan(100, "127.0.0.1", spread=False).source(0) is None


def test_too_few_descriptors_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits.resource, "getrlimit", lambda _: (1024, 2048))
    monkeypatch.setattr(limits.resource, "setrlimit", lambda *_: None)
    with pytest.raises(BenchError, match=r"10000 connections need 10064 file descriptors.*ulimit"):
        limits.plan(10_000, "127.0.0.1")


def test_too_few_ports_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match=r"need 5000 local ports but only 1000"):
        limits.plan(5000, "192.0.2.1", ports=1000)  # TEST-NET: only planned, never contacted
    plan = limits.plan(5000, "127.0.0.1", ports=1000)  # loopback: spread over addresses
    assert len(plan.sources) * plan.ports_per_source >= 5000


def test_spread_needs_loopback() -> None:
    with pytest.raises(BenchError, match="loopback"):
        limits.plan(10, "192.0.2.1", spread=True)


@pytest.mark.parametrize(
    ("n", "count"), [(1, 1), (100, 1), (3000, 30), (20_000, 200), (10**7, 1000)]
)
def test_source_addresses(n: int, count: int) -> None:
    sources = limits.source_addresses(n, 28_232)
    assert len(sources) == count
    assert all(limits.is_loopback_v4(a) for a in sources)
    # never more per address than a default wschat serve admits (--max-connections-per-ip)
    assert min(n, 1000 * limits.PER_SOURCE) / count <= 100


def test_open_socket_binds_a_loopback_source() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = limits.open_socket(socket.AF_INET, "127.0.1.7")
        with sock:
            sock.setblocking(True)
            sock.settimeout(5)
            sock.connect(server.getsockname())
            peer, _ = server.accept()
            with peer:
                assert peer.getpeername()[0] == "127.0.1.7"
