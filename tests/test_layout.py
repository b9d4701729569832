"""The sans-I/O core stays free of frameworks; the CLI loads each stack only when asked."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "websockets", "rich", "prompt_toolkit", "typer")


@pytest.mark.parametrize(
    "module",
    [
        "wschat",
        "wschat.protocol",
        "wschat.errors",
        "wschat.ratelimit",
        "wschat.origin",
        "wschat.names",
        "wschat.auth",
        "wschat.rooms",
        "wschat.broker",
        "wschat.store",
        "wschat.server.conn.drain",
        "wschat.server.transport.extension",
    ],
)
def test_core_imports_no_framework(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)


def test_cli_help_does_not_load_the_server() -> None:
    code = "import sys; from wschat import cli; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
