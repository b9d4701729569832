"""``wschat serve --workers N``: N processes sharing one listening socket and one Redis.

The parent binds the socket once, starts N children (``python -m`` this module's
``worker_main``) that inherit it, waits until each says it is ready on a pipe, then prints
``wschat listening on URL`` once. The kernel spreads new connections over the children;
Redis makes them one chat. The parent forwards SIGTERM/SIGINT (children run in their own
session, so a terminal's Ctrl-C reaches only the parent), restarts a child that dies, and
exits when all have stopped. Only for a Redis broker: the CLI refuses it with ``memory``.

Workers die with their parent: each asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` on Linux; elsewhere a thread watches the parent's pid), so a
``kill -9`` of the parent leaves no worker serving unsupervised on the port: they drain and
exit, and the next ``wschat serve --workers N`` can bind it. ``/metrics`` and ``/healthz``
answer for every worker (``pool``: snapshots in a directory the parent makes and removes).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from wschat.errors import WschatError
from wschat.server.pool import process_alive
from wschat.server.runner import _print_url, bind, display_url, preflight, run
from wschat.server.settings import ServerSettings

READY_TIMEOUT_S = 60.0  # a worker that is not accepting by then fails the start
RESTART_DELAY_S = 1.0  # between restarts of a worker that died
# The workers' snapshot directory, in the temp dir: this, the parent's pid, a random tail.
POOL_DIR_PREFIX = "wschat-workers-"
_FD = "WSCHAT_WORKER_FD"
_READY_FD = "WSCHAT_WORKER_READY_FD"
_SETTINGS = "WSCHAT_WORKER_SETTINGS"
_PARENT = "WSCHAT_WORKER_PARENT"
_POOL = "WSCHAT_WORKER_POOL_DIR"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_PARENT_S = 0.5  # where prctl is missing: how often a worker checks its parent lives


class _Worker:
    def __init__(self, sock: socket.socket, settings: ServerSettings, pool_dir: str) -> None:
        read_end, write_end = os.pipe()
        env = {
            **os.environ,
            _FD: str(sock.fileno()),
            _READY_FD: str(write_end),
            _SETTINGS: json.dumps(dataclasses.asdict(settings)),
            _PARENT: str(os.getpid()),
            _POOL: pool_dir,
        }
        code = "from wschat.server.workers import worker_main; worker_main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            pass_fds=(sock.fileno(), write_end),
            start_new_session=True,
        )
        os.close(write_end)
        self.ready_fd = read_end

    def wait_ready(self, deadline: float) -> bool:
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([self.ready_fd], [], [], left)
                if readable:
                    return os.read(self.ready_fd, 16).startswith(b"ready")
        finally:
            os.close(self.ready_fd)


def serve_workers(settings: ServerSettings, workers: int) -> None:
    """Run ``workers`` server processes on one socket until SIGINT/SIGTERM.

    Raises ``WschatError`` if the broker is unusable or a worker does not start, ``OSError``
    if the address cannot be bound.
    """
    preflight(settings, workers)
    sock = bind(settings.host, settings.port)
    url = display_url(settings.host, sock.getsockname()[1])
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _sweep_pool_dirs()
    pool_dir = tempfile.mkdtemp(prefix=f"{POOL_DIR_PREFIX}{os.getpid()}-")
    children = [_Worker(sock, settings, pool_dir) for _ in range(workers)]
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for child in children:
            if not child.wait_ready(deadline):
                raise WschatError("a worker did not start: see its log above")
        _print_url(url)
        while not stopping:
            time.sleep(0.2)
            for i, child in enumerate(children):
                if child.proc.poll() is not None and not stopping:
                    time.sleep(RESTART_DELAY_S)
                    children[i] = _Worker(sock, settings, pool_dir)
                    children[i].wait_ready(time.monotonic() + READY_TIMEOUT_S)
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.proc.wait(settings.shutdown_timeout_s + 5)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        sock.close()
        shutil.rmtree(pool_dir, ignore_errors=True)


def _sweep_pool_dirs() -> None:
    """Remove the snapshot directories of parents that died without removing theirs (a
    ``kill -9``): each is named after its parent's pid."""
    for path in Path(tempfile.gettempdir()).glob(POOL_DIR_PREFIX + "*-*"):
        pid = path.name.removeprefix(POOL_DIR_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def worker_main() -> None:
    """Entry point of one worker: serve on the inherited socket, say ready on the pipe."""
    _die_with_parent(int(os.environ[_PARENT]))
    settings = ServerSettings(**json.loads(os.environ[_SETTINGS]))
    sock = socket.socket(fileno=int(os.environ[_FD]))
    ready_fd = int(os.environ[_READY_FD])

    def on_ready() -> None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)

    run(settings, sock, on_ready, os.environ[_POOL])


def _die_with_parent(parent: int) -> None:
    """Have this worker sent SIGTERM when ``parent`` (the ``--workers`` process) dies."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_PARENT_S)
    os.kill(os.getpid(), signal.SIGTERM)
