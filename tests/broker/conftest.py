"""A private ``redis-server`` per test, on a free port, that a test can kill and restart.

The binary is required in CI (``.ci/run`` installs it); on a developer's machine without it
the Redis tests are skipped, saying so. By default the server appends every write to its own
AOF with ``fsync always``, so history survives a ``kill -9`` and restart, as it must in
production; ``persist=False`` is Redis's own default (a restart forgets everything), and
``password`` sets ``requirepass``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REDIS_SERVER = shutil.which("redis-server")


_handed_out: set[int] = set()


def free_port() -> int:
    """Return a port free now, and never one this test session handed out before: the
    kernel may give the same free port twice, and two servers of one test (a master and a
    sentinel) then fought over it, one answering for the other."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class PortTaken(RuntimeError):
    """``redis-server`` could not bind its port (or its cluster bus port)."""


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1:``port`` with its data in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        persist: bool = True,
        password: str = "",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.directory = directory
        self.persist = persist
        self.password = password
        self.extra = extra  # more redis-server arguments (--replicaof, --cluster-enabled...)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False  # it answered once: restarts keep its port

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port and data; return once it answers.

        The first start moves to other free ports if one of them was taken meanwhile
        (``free_port`` only found it free a moment ago: another process may have bound it
        since), so a busy machine does not fail a test before it begins.
        """
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if self.started or attempt == 2:
                    raise
                self.port = free_port()
                if "--cluster-port" in self.extra:
                    at = self.extra.index("--cluster-port") + 1
                    self.extra = (*self.extra[:at], str(free_port()), *self.extra[at + 1 :])

    def _start(self) -> None:
        assert REDIS_SERVER is not None
        cmd = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
            "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        self.start_with([*cmd, *self.extra])

    def start_with(self, cmd: list[str]) -> None:
        """Start ``redis-server`` with arguments ``cmd`` (its port must be ``self.port``)."""
        assert REDIS_SERVER is not None
        if cmd[0] != REDIS_SERVER:
            cmd = [REDIS_SERVER, *cmd]
        log = open(self.directory / "redis.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                if not self._answered_by_us():
                    self.proc.kill()
                    self.proc.wait()
                    raise PortTaken(f"port {self.port} answered by another process")
                self.started = True
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        log_text = (self.directory / "redis.log").read_text(errors="replace")
        if self.proc.poll() is not None and "Address already in use" in log_text:
            raise PortTaken(log_text)
        raise RuntimeError(log_text)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(16)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _answered_by_us(self) -> bool:
        """Return whether the server answering on our port is our process (``INFO server``
        names its pid): one that could not bind the port would otherwise look started."""
        assert self.proc is not None
        for line in self.info("server").splitlines():
            if line.startswith("process_id:"):
                return int(line.split(":", 1)[1]) == self.proc.pid
        return False

    def command(self, inline: bytes) -> bytes:
        """Send one inline command and return the start of its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                sock.recv(16)
            sock.sendall(inline + b"\r\n")
            return sock.recv(256)

    def info(self, section: str) -> str:
        """Return ``INFO section`` as text."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                sock.recv(16)
            sock.sendall(f"INFO {section}\r\n".encode())
            return sock.recv(65536).decode(errors="replace")

    def pause(self) -> None:
        """SIGSTOP the server: it holds its connections and answers nothing (a stall)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server: it handles what was sent meanwhile."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9 the server, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.send_signal(signal.SIGCONT)
            self.proc.wait(10)


def need_redis() -> None:
    """Skip the test, saying why, where ``redis-server`` is not installed."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI has it)")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis with AOF persistence, killed after the test."""
    need_redis()
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis that wants a password (``requirepass``), killed after the test."""
    need_redis()
    directory = tmp_path / "locked-redis"
    directory.mkdir()
    server = RedisServer(directory, password="hunter2-Zq9")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis without persistence (Redis's default): a restart forgets everything."""
    need_redis()
    directory = tmp_path / "volatile-redis"
    directory.mkdir()
    server = RedisServer(directory, persist=False)
    server.start()
    yield server
    server.kill()


class Sentinels:
    """A master, one replica and three sentinels watching them as ``mymaster``, all on free
    ports, with short timeouts (a dead master is failed over within about two seconds)."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer(directory / "master")
        self.replica = RedisServer(directory / "replica")
        self.replica.extra = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinels = [RedisServer(directory / f"sentinel{i}") for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/mymaster/0"

    def start(self) -> None:
        for server in (self.master, self.replica, *self.sentinels):
            server.directory.mkdir()
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            conf = sentinel.directory / "sentinel.conf"
            conf.write_text(
                f"port {sentinel.port}\nbind 127.0.0.1\nprotected-mode no\n"
                f"dir {sentinel.directory}\n"
                f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 2000\n"
            )
            sentinel.start_with([str(conf), "--sentinel", "--loglevel", "warning"])

    def master_port(self) -> int:
        """Return the master's port as the first sentinel sees it now."""
        reply = self.sentinels[0].command(b"SENTINEL get-master-addr-by-name mymaster")
        return int(reply.split(b"\r\n")[4])  # *2, $9, 127.0.0.1, $5, PORT

    def switches(self) -> int:
        """Return how many failovers the first sentinel has made."""
        log = (self.sentinels[0].directory / "redis.log").read_text(errors="replace")
        return log.count("+switch-master")

    def settled(self) -> bool:
        """Return whether the master the sentinels name has the other server as replica."""
        master = self.master_port()
        other = self.replica if master == self.master.port else self.master
        return "role:slave" in other.info("replication") and f"master_port:{master}" in (
            other.info("replication")
        )

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.kill()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    """A Sentinel-managed master and replica (see ``Sentinels``), stopped after the test."""
    need_redis()
    setup = Sentinels(tmp_path)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


class RedisCluster:
    """Three masters on free ports joined into one Redis Cluster; with ``replicas``, each
    master also gets one replica and the node timeout is 1 s (a dead master's replica is
    promoted within a few seconds)."""

    def __init__(self, directory: Path, *, replicas: bool = False) -> None:
        count = 6 if replicas else 3
        self.servers = [RedisServer(directory / f"node{i}") for i in range(count)]
        self.masters = self.servers[:3]  # as created; ``master_of`` says who serves a key now
        self.replicas = replicas
        timeout = "1000" if replicas else "2000"
        for server in self.servers:
            bus = str(free_port())  # not PORT + 10000, which may be past 65535 or taken
            server.extra = ("--cluster-enabled", "yes", "--cluster-port", bus)
            server.extra += ("--cluster-node-timeout", timeout)
            server.extra += ("--repl-diskless-sync-delay", "0")  # replicas sync at once

    def url(self, *which: int) -> str:
        """Return a ``redis+cluster://`` URL naming the masters ``which`` (all by default)."""
        chosen = [self.masters[i] for i in which] if which else self.masters
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in chosen)

    def start(self) -> None:
        for server in self.servers:
            server.directory.mkdir()
            server.start()
        assert REDIS_SERVER is not None
        cli = str(Path(REDIS_SERVER).with_name("redis-cli"))
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        more = ["--cluster-replicas", "1"] if self.replicas else []
        subprocess.run(
            [cli, "--cluster", "create", *addresses, *more, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.wait_ok(self.servers, within=15)
        deadline = time.monotonic() + 15
        while self.replicas and time.monotonic() < deadline:  # until every replica has synced
            roles = [s.info("replication") for s in self.servers]
            if sum("master_link_status:up" in role for role in roles) == 3:
                return
            time.sleep(0.1)
        if self.replicas:
            raise RuntimeError("the replicas did not sync")

    def wait_ok(self, servers: list[RedisServer], within: float) -> None:
        """Wait until every one of ``servers`` says ``cluster_state:ok``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in s.command(b"CLUSTER INFO") for s in servers):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster is not ok")

    def shards(self, ask: RedisServer) -> list[dict[str, Any]]:
        """Return ``CLUSTER SHARDS`` as ``ask`` sees it now."""
        import redis

        with redis.Redis(port=ask.port, decode_responses=True) as client:
            shards: list[dict[str, Any]] = client.execute_command("CLUSTER SHARDS")
            return shards

    def master_of(self, key: str, ask: RedisServer | None = None) -> RedisServer:
        """Return the server that is the master of ``key``'s slot, as ``ask`` sees it now."""
        ask = ask or self.masters[0]
        slot = int(ask.command(f"CLUSTER KEYSLOT {key}".encode())[1:].split(b"\r")[0])
        for shard in self.shards(ask):
            ranges = shard["slots"]
            if any(a <= slot <= b for a, b in zip(ranges[::2], ranges[1::2], strict=True)):
                for node in shard["nodes"]:
                    if node["role"] == "master" and node["health"] == "online":
                        return next(s for s in self.servers if s.port == node["port"])
        raise LookupError(f"no master serves {key}")

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster without replicas (see ``RedisCluster``), stopped after."""
    need_redis()
    cluster = RedisCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster of 3 masters with one replica each (see ``RedisCluster``), stopped
    after the test."""
    need_redis()
    cluster = RedisCluster(tmp_path, replicas=True)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
