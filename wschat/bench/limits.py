"""System limits for many connections: file descriptors, local ports, source addresses.

One process opening 10,000 client sockets runs into two limits: the file-descriptor soft
limit (often 1024) and the ~28,000 ephemeral ports per (source address, destination) pair.
``plan`` raises the first as far as the hard limit allows and, when the target is IPv4
loopback, spreads the sockets' source addresses over 127.0.0.0/8 (every address in it is
local on Linux), at most ``PER_SOURCE`` connections per address, so neither limit nor a
server's per-address connection cap at its default is hit; when ``n`` still cannot be reached it raises
``BenchError`` before a single connection is opened. Stdlib only; no event loop.
"""

from __future__ import annotations

import ipaddress
import math
import resource
import socket
from dataclasses import dataclass
from pathlib import Path

from wschat.errors import BenchError
from wschat.rlimit import raise_fd_limit

FD_RESERVE = 64  # descriptors the process needs besides the client sockets (stdio, epoll, ...)
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_PORT_RANGE = (32768, 60999)
SOURCE_NET = "127.0.1.0"  # the first source address: 127.0.1.1, 127.0.1.2, ...
MAX_SOURCES = 1000  # 127.0.1.1 to 127.0.4.232
# Connections per source address (until MAX_SOURCES are in use): a tenth of ``wschat serve``'s
# default per-address cap (--max-connections-per-ip 1000), so -n 3000 opens 3000 against a
# default server, and so does a server whose cap was lowered to 100 (issue 18).
PER_SOURCE = 100
# Linux: let connect() pick the source port, so bind() to an address does not reserve a port
# for every destination (IP_BIND_ADDRESS_NO_PORT, Linux 4.2; not in Python 3.11's socket).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass(frozen=True, slots=True)
class Plan:
    """How ``n`` connections will be opened: descriptor limit and source addresses."""

    n: int
    fd_soft: int
    fd_hard: int
    sources: tuple[str, ...]  # empty: let the kernel choose the source address
    ports_per_source: int

    def source(self, index: int) -> str | None:
        """Return the source address for connection ``index``, or ``None`` for the default."""
        return self.sources[index % len(self.sources)] if self.sources else None


def ephemeral_ports(path: Path = PORT_RANGE_FILE) -> int:
    """Return how many local ports the kernel hands out to outgoing connections."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        low, high = DEFAULT_PORT_RANGE
    return high - low + 1


def is_loopback_v4(address: str) -> bool:
    """Return whether ``address`` (an IP literal) is in 127.0.0.0/8."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and ip.is_loopback


def source_addresses(n: int, ports: int, offset: int = 0) -> tuple[str, ...]:
    """Return enough loopback source addresses for ``n`` connections at ``ports`` each.

    Each address carries at most ``PER_SOURCE`` connections (and half its ports), so a
    server's per-address cap at its default does not refuse a run from one machine.
    ``offset`` skips that many addresses: the processes of one ``--processes`` run each take
    their own addresses, as the local ports of one (source, destination) pair are shared.
    """
    per_source = max(1, min(PER_SOURCE, ports // 2))
    count = min(MAX_SOURCES, max(1, math.ceil(n / per_source)))
    first = int(ipaddress.IPv4Address(SOURCE_NET)) + offset
    return tuple(str(ipaddress.IPv4Address(first + 1 + i)) for i in range(count))


def plan(
    n: int,
    target_ip: str,
    spread: bool | None = None,
    ports: int | None = None,
    source_offset: int = 0,
) -> Plan:
    """Check that ``n`` connections to ``target_ip`` can be opened, and prepare for them.

    Raises the descriptor soft limit as a side effect. ``spread=None`` spreads source addresses
    when the target is IPv4 loopback. Raises ``BenchError`` with what to change when the hard
    descriptor limit or the local ports cannot carry ``n`` connections.
    """
    if n < 1:
        raise BenchError(f"-n must be at least 1, not {n}")
    needed = n + FD_RESERVE
    soft, hard = raise_fd_limit(needed)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise BenchError(
            f"{n} connections need {needed} file descriptors but this process may open only "
            f"{soft} (hard limit {hard}): raise it with 'ulimit -n {needed}' as root "
            f"(or LimitNOFILE= in a systemd unit), or lower -n"
        )
    ports = ephemeral_ports() if ports is None else ports
    loopback = is_loopback_v4(target_ip)
    if spread is None:
        spread = loopback
    if spread and not loopback:
        raise BenchError(
            f"--spread works only for an IPv4 loopback target, not {target_ip}: "
            f"every 127.0.0.0/8 address is local, other addresses are not"
        )
    sources = source_addresses(n, ports, source_offset) if spread else ()
    capacity = ports * (len(sources) or 1)
    if n > capacity:
        hint = (
            "use a loopback target (127.0.0.1) so source addresses can be spread"
            if not loopback
            else "leave --spread on"
        )
        raise BenchError(
            f"{n} connections to one server need {n} local ports but only {capacity} are "
            f"available (net.ipv4.ip_local_port_range gives {ports} per source address): "
            f"{hint}, widen the port range, or lower -n"
        )
    return Plan(n, soft, hard, sources, ports)


def open_socket(family: socket.AddressFamily, source: str | None) -> socket.socket:
    """Return a non-blocking TCP socket, bound to ``source`` (port chosen at connect) if given.

    Raises ``OSError`` (EMFILE, EADDRNOTAVAIL, ...) like ``socket.socket`` and ``bind`` do.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
    except OSError:
        sock.close()
        raise
    return sock
