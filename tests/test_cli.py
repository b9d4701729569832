"""CLI wiring: help texts, version, argument errors (the real commands run in subprocesses)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from wschat import __version__
from wschat.cli import app

runner = CliRunner()


def test_help_lists_the_three_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "join", "bench"):
        assert command in result.output


def test_serve_help_names_env_vars() -> None:
    result = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "WSCHAT_PORT" in result.output
    assert "--max-message-size" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.output.strip() == f"wschat {__version__}"


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wschat", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_port_in_use_is_one_clear_line() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "wschat", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 1
    assert "cannot listen on 127.0.0.1" in out.stderr
    assert "Traceback" not in out.stderr
