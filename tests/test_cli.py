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


def test_token_prints_a_token_for_the_name() -> None:
    from wschat.auth import verify_token

    result = runner.invoke(app, ["token", "alice", "--secret", "S", "--ttl", "15m"])
    assert result.exit_code == 0, result.output
    assert verify_token(result.output.strip(), "S", "alice") == "alice"
    result = runner.invoke(app, ["token", "alice"], env={"WSCHAT_SECRET": "S"})
    assert verify_token(result.output.strip(), "S", "alice") == "alice"


def test_token_refuses_a_bad_name_or_ttl() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wschat", "token", "a b", "--secret", "S"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "invalid name" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "wschat", "token", "alice", "--secret", "S", "--ttl", "soon"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "invalid ttl" in out.stderr


def test_serve_help_lists_the_security_flags() -> None:
    result = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    for flag in (
        "--secret",
        "--allow-origin",
        "--rate-limit",
        "--rate-burst",
        "--max-connections",
        "--handshake-timeout",
        "--db-timeout",
    ):
        assert flag in result.output


def test_serve_refuses_a_db_timeout_of_zero() -> None:
    result = runner.invoke(app, ["serve", "--db-timeout", "0"])
    assert result.exit_code == 2
    assert "--db-timeout" in result.output


def test_help_keeps_text_in_square_brackets_and_lists_choices() -> None:
    """Rich markup used to eat '[default: ...]' written in a help text (issue 18)."""

    def help_text(command: str) -> str:
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0
        return " ".join(result.output.replace("│", " ").split())

    serve = help_text("serve")
    assert "':memory:' keeps none. [default: " in serve and "history.sqlite3]" in serve
    bench = help_text("bench")
    assert "[default: 10 for fanout and chat" in bench
    assert "<auto|v1|plain>" in bench and "<connect|echo|fanout|chat>" in bench
