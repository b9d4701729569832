"""Phases in step across the processes of one shared-room run (``wschat bench --processes``).

With fan-out or chat spread over N processes, every process's receivers are in the one room
and hear every process's senders. For every delivery to be checked exactly, the processes
meet at each phase: no sender starts before every receiver of every process has connected
and settled (``connected``, then ``settled``), every process drains until its receivers have
what *all* senders had sent (``sent``), and each counts its losses against all senders' final
counts (``drained``). At each meeting a child hands its own senders' accepted counts (sender
number → messages the server took) and gets back those of every sender of the run.

``Barrier`` is the child's side (asyncio, on two pipes the parent passed it), ``Meeting``
the parent's (a thread). One JSON line each way per phase. A child that ends (or never
comes) is left out of the meetings that follow; its missing report fails the run as before.
Stdlib only.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import threading
from collections.abc import Mapping

PHASES = ("connected", "settled", "sent", "drained")


def _line(counts: Mapping[int, int]) -> bytes:
    return (json.dumps({str(k): v for k, v in counts.items()}) + "\n").encode()


def _counts(line: bytes) -> dict[int, int]:
    return {int(k): int(v) for k, v in json.loads(line).items()}


class Barrier:
    """A child's side: ``await meet(phase, counts)`` returns every sender's counts, or ``None``.

    ``None`` means the parent stopped coordinating (it died, or the run is being cut short):
    the caller must stop loading and close. Not thread-safe; one meeting at a time.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd, self._write_fd = read_fd, write_fd
        self._reader: asyncio.StreamReader | None = None

    async def meet(self, phase: str, counts: Mapping[int, int]) -> dict[int, int] | None:
        """Tell the parent this process reached ``phase`` with ``counts``; wait for everyone."""
        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = reader = asyncio.StreamReader()
            pipe = os.fdopen(self._read_fd, "rb", buffering=0)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            os.write(self._write_fd, phase.encode() + b" " + _line(counts))
        except OSError:
            return None
        line = await self._reader.readline()
        if not line:
            return None
        return _counts(line)


class Meeting:
    """The parent's side for ``count`` children: make their pipes, answer each phase.

    Pass ``child_fds(i)`` to child ``i`` (``pass_fds``), call ``spawned()`` once they all
    run, ``start()`` the thread; it ends once every child has closed its pipe (exited).
    A phase is answered once every child still running has reached it: with the union of
    the counts they handed in. ``phases`` lists the phases answered, for the report.
    """

    def __init__(self, count: int) -> None:
        self._to = [os.pipe() for _ in range(count)]  # (child reads, parent writes)
        self._from = [os.pipe() for _ in range(count)]  # (parent reads, child writes)
        self.phases: list[str] = []
        self._thread = threading.Thread(target=self._run, name="bench-meeting", daemon=True)

    def child_fds(self, i: int) -> tuple[int, int]:
        """Return child ``i``'s (read, write) descriptors."""
        return self._to[i][0], self._from[i][1]

    def spawned(self) -> None:
        """Close the children's ends in this process (so a child's exit reads as EOF here)."""
        for r, _ in self._to:
            os.close(r)
        for _, w in self._from:
            os.close(w)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        buffers = {r: bytearray() for r, _ in self._from}
        child = {r: i for i, (r, _) in enumerate(self._from)}
        for r in buffers:
            sel.register(r, selectors.EVENT_READ)
        arrived: dict[int, tuple[str, dict[int, int]]] = {}
        live = set(range(len(self._from)))
        try:
            while live:
                for key, _ in sel.select():
                    fd = int(key.fd)
                    data = os.read(fd, 65536)
                    i = child[fd]
                    if not data:
                        sel.unregister(fd)
                        live.discard(i)
                        arrived.pop(i, None)
                        continue
                    buffers[fd] += data
                    while (end := buffers[fd].find(b"\n")) >= 0:
                        line = bytes(buffers[fd][: end + 1])
                        del buffers[fd][: end + 1]
                        phase, _, text = line.partition(b" ")
                        arrived[i] = (phase.decode(), _counts(text))
                if live and live <= arrived.keys():
                    merged: dict[int, int] = {}
                    for _, counts in arrived.values():
                        merged.update(counts)
                    self.phases.append(arrived[min(live)][0])
                    reply = _line(merged)
                    for i in live:
                        try:
                            os.write(self._to[i][1], reply)
                        except OSError:
                            pass  # it has exited: its EOF comes next
                    arrived.clear()
        finally:
            sel.close()
            for r, _ in self._from:
                os.close(r)
            for _, w in self._to:
                os.close(w)
