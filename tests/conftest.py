"""Fixtures that start real servers: ``wschat serve --port 0`` in a subprocess."""

from __future__ import annotations

import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import default_signals


@dataclass
class Server:
    """A running ``wschat serve`` process and where to reach it."""

    proc: subprocess.Popen[str]
    http: str
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http")

    @property
    def port(self) -> int:
        return int(self.http.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the process to exit; return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def start_server(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, fd_limit: int | None = None
) -> Server:
    """Start ``wschat serve`` on a free 127.0.0.1 port and return once it accepts connections.

    ``fd_limit`` lowers the server's descriptor limit (soft and hard, as ``ulimit -n``).
    """
    stamp = time.monotonic_ns()
    log_path = tmp_path / f"server-{stamp}.log"
    if "--db" not in args:  # never the user's own history file
        args = (*args, "--db", str(tmp_path / f"history-{stamp}.sqlite3"))
    if "--port" not in args:
        args = ("--port", "0", *args)
    cmd = [sys.executable, "-m", "wschat", "serve", "--host", "127.0.0.1", *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=full_env,
            preexec_fn=lambda: _child_setup(fd_limit),
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            return Server(proc, line.strip().rsplit(" ", 1)[1], log_path, list(args))
    proc.kill()
    proc.wait(5)
    proc.stdout.close()
    raise RuntimeError(f"server did not start: {log_path.read_text()}")


def _child_setup(fd_limit: int | None) -> None:
    default_signals()  # stop() signals it: SIGINT must work also under `pytest &`
    if fd_limit is not None:
        _limit_fds(fd_limit)


def _limit_fds(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[Server] | object]:
    """Start servers with extra flags; every one started is stopped after the test."""
    started: list[Server] = []

    def factory(
        *args: str, env: dict[str, str] | None = None, fd_limit: int | None = None
    ) -> Server:
        server = start_server(tmp_path, *args, env=env, fd_limit=fd_limit)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL)
        if server.proc.stdout is not None:
            server.proc.stdout.close()


@pytest.fixture
def server(server_factory: object) -> Server:
    """A default ``wschat serve`` on a free port."""
    return server_factory()  # type: ignore[operator, no-any-return]


def serve_while(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[Server]:
    """Start ``wschat serve *args``, yield it, kill it: the body of a module-scoped fixture.

    A server start costs a second or two; a module of small tests shares one instead. Tests
    on a shared server must not depend on each other: each uses its own names and rooms
    (``tag``), closes what it opens, and never stops the server or counts all of its
    connections (such tests keep ``server`` or ``server_factory``, a fresh server each).
    """
    server = start_server(tmp_path_factory.mktemp("shared-server"), *args)
    yield server
    if server.proc.poll() is None:
        server.stop(signal.SIGKILL)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One default ``wschat serve`` for every test of a module that asks for it (``serve_while``)."""
    yield from serve_while(tmp_path_factory)


_TAGS = itertools.count(1)


@pytest.fixture
def tag() -> str:
    """A short string no other test of the session gets: suffix names and rooms with it."""
    return f"t{next(_TAGS)}"
