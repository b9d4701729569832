"""The real ``wschat join`` in a tmux pane: keys in, what a person would see out.

``Pane`` runs the client on a private tmux server; ``raw()`` is every byte the client wrote
to its terminal (tmux ``pipe-pane``), for asserting on escape sequences and bells.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_sessions = itertools.count()


class Pane:
    """``wschat join`` running in a tmux pane on a private tmux server."""

    def __init__(
        self,
        tmp_path: Path,
        args: list[str],
        width: int = 100,
        height: int = 24,
        env: dict[str, str] | None = None,
    ):
        self.socket = f"wschat-test-{os.getpid()}-{next(_sessions)}"
        self.exit_file = tmp_path / f"{self.socket}.exit"
        self.raw_file = tmp_path / f"{self.socket}.raw"
        env = {"WSCHAT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1", **(env or {})}
        command = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), sys.executable])
        command += " -m wschat join " + shlex.join(args)
        command += f" 2>&1; echo $? > {shlex.quote(str(self.exit_file))}; exec sleep 120"
        # The client starts once its output is being recorded (raw()): it waits for a key.
        command = "read -r _; " + command
        self.tmux("new-session", "-d", "-s", "w", "-x", str(width), "-y", str(height), command)
        self.tmux("pipe-pane", "-t", "w", f"cat >> {shlex.quote(str(self.raw_file))}")
        self.keys("Enter")

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout

    def keys(self, *keys: str) -> None:
        """Press keys by tmux name (``Enter``, ``C-c``, ``Up``, ``Tab``)."""
        self.tmux("send-keys", "-t", "w", *keys)

    def type(self, text: str) -> None:
        """Type ``text`` literally."""
        self.tmux("send-keys", "-t", "w", "-l", text)

    def screen(self) -> str:
        """The visible screen."""
        return self.tmux("capture-pane", "-p", "-t", "w")

    def everything(self) -> str:
        """The scrollback and the visible screen, as lines a person could scroll through."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "w")

    def input_line(self) -> str:
        """The line with the prompt on it."""
        lines = [line for line in self.screen().splitlines() if line.startswith("#")]
        return lines[-1] if lines else ""

    async def wait(self, predicate: Callable[[str], bool], within: float = 10.0) -> str:
        """Wait until ``predicate(everything())``; fail with the screen after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                while not predicate(text := self.everything()):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"timed out; the pane shows:\n{self.everything()}")
        return text

    async def wait_for(self, needle: str, within: float = 10.0) -> str:
        return await self.wait(lambda text: needle in text, within)

    async def exit_status(self, within: float = 10.0) -> int:
        async with asyncio.timeout(within):
            while not self.exit_file.exists() or not self.exit_file.read_text().strip():
                await asyncio.sleep(0.05)
        return int(self.exit_file.read_text())

    def raw(self) -> bytes:
        """Every byte written to the pane since the client started (and the Enter echoed)."""
        return self.raw_file.read_bytes() if self.raw_file.exists() else b""

    def client_pid(self) -> int:
        """The pid of the ``wschat join`` process (the child of the pane's shell)."""
        shell = int(self.tmux("display-message", "-p", "-t", "w", "#{pane_pid}"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        return int(children[0])

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "w", "-x", str(width), "-y", str(height))

    def close(self) -> None:
        self.tmux("kill-server")
