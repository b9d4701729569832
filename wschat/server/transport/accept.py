"""Stop accepting near the descriptor limit instead of failing handshakes with EMFILE.

Every connection is a file descriptor, and a process may hold only ``RLIMIT_NOFILE`` of them.
Past it ``accept()`` fails with EMFILE: the event loop drops the connection it could not take,
logs, and retries, and the sockets it does take leave nothing for the history file or the
broker. ``AcceptGate`` counts the server's open connections (uvicorn's
``server_state.connections``) as each one is made. At ``capacity`` it closes its listening
servers, so this process no longer calls ``accept()``: new connections wait in the kernel's
accept queue, and with ``--workers`` the other processes, which share the listening socket,
take them. When connections have fallen ``RESUME_GAP`` below capacity it serves a duplicate of
the listening socket again. ``capacity`` is the descriptor limit minus the descriptors open at
start (log files, the history database, the event loop) minus ``RESERVE`` for what the process
opens later (broker connections, the history's threads, the accept burst that outruns the
pause).

Stdlib only (``/proc/self/fd`` on Linux, a guess elsewhere); asyncio's public ``Server`` API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wschat.transport")

RESERVE = 64  # descriptors kept free for what the process opens besides client sockets
RESUME_GAP = 32  # accept again once this many below capacity: no flapping at the edge
RESUME_CHECK_S = 0.2  # while paused, how often the count is checked
UNKNOWN_BASE = 32  # descriptors assumed open at start when /proc/self/fd cannot be read


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many connections one process can hold before its descriptor limit."""

    fd_limit: int  # soft RLIMIT_NOFILE (0: unlimited)
    fd_hard: int
    open_at_start: int
    connections: int  # the most open connections; 0: no limit

    def describe(self) -> str:
        """Return the start-up line: which limit stops this process, and what to change."""
        if not self.connections:
            return "descriptor limit: none"
        return (
            f"descriptor limit {self.fd_limit} (hard {self.fd_hard}): this process accepts "
            f"up to {self.connections} open connections, then stops accepting until some "
            f"close (raise it with 'ulimit -n' / LimitNOFILE=, or run --workers)"
        )


def open_descriptors(fd_dir: Path = Path("/proc/self/fd")) -> int:
    """Return how many descriptors this process has open (a guess where /proc is missing)."""
    try:
        return len(os.listdir(fd_dir)) - 1  # listing the directory opens one
    except OSError:
        return UNKNOWN_BASE


def capacity(reserve: int = RESERVE) -> Capacity:
    """Return this process's connection capacity under its current descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = open_descriptors()
    if soft == resource.RLIM_INFINITY:
        return Capacity(0, 0, base, 0)
    hard_shown = hard if hard != resource.RLIM_INFINITY else 0
    return Capacity(soft, hard_shown, base, max(1, soft - base - reserve))


class AcceptGate:
    """Pause this process's listening servers at ``limit`` open connections; resume below it.

    ``connections`` is the live collection of open connections (uvicorn's
    ``server_state.connections``); ``servers`` is the live list of this process's listening
    servers (uvicorn's ``Server.servers``), closed and replaced in place; ``listen`` makes a
    new server on a socket (``loop.create_server`` with the protocol factory).
    """

    __slots__ = (
        "_check",
        "_connections",
        "_listen",
        "_paused",
        "_resuming",
        "_servers",
        "_spare",
        "limit",
    )

    def __init__(
        self,
        limit: int,
        connections: Collection[object],
        servers: list[asyncio.Server],
        spare: socket.socket,
        listen: Callable[[socket.socket], Awaitable[asyncio.Server]],
    ) -> None:
        self.limit = limit
        self._connections = connections
        self._servers = servers
        self._spare = spare  # a duplicate of the listening socket: it stays open while paused
        self._listen = listen
        self._paused = False
        self._check: asyncio.TimerHandle | None = None
        self._resuming: asyncio.Task[None] | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    def connection_made(self) -> None:
        """Call as each connection opens: pause at the limit. Cheap: one ``len``."""
        if not self._paused and len(self._connections) >= self.limit:
            self._pause()

    def _pause(self) -> None:
        self._paused = True
        for server in self._servers:
            server.close()
        self._servers.clear()
        log.warning(
            "%d connections open, at this process's descriptor capacity: not accepting "
            "until fewer than %d are open",
            len(self._connections),
            self.limit - RESUME_GAP,
            extra={"event": "accept_paused", "open": len(self._connections)},
        )
        self._check = asyncio.get_running_loop().call_later(RESUME_CHECK_S, self._maybe_resume)

    def _maybe_resume(self) -> None:
        self._check = None
        loop = asyncio.get_running_loop()
        if len(self._connections) >= self.limit - RESUME_GAP:
            self._check = loop.call_later(RESUME_CHECK_S, self._maybe_resume)
            return
        self._resuming = loop.create_task(self._resume())

    async def _resume(self) -> None:
        try:
            server = await self._listen(self._spare.dup())
        except OSError as exc:  # out of descriptors again: try later
            log.warning("cannot accept again yet: %s", exc)
            self._check = asyncio.get_running_loop().call_later(RESUME_CHECK_S, self._maybe_resume)
            return
        finally:
            self._resuming = None
        self._servers.append(server)
        self._paused = False
        log.warning(
            "%d connections open: accepting again",
            len(self._connections),
            extra={"event": "accept_resumed", "open": len(self._connections)},
        )

    def close(self) -> None:
        """Stop checking and close the duplicate socket (at shutdown)."""
        if self._check is not None:
            self._check.cancel()
            self._check = None
        self._spare.close()
