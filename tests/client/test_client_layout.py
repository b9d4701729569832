"""The client's layers import only what they need: no UI in the session, no server anywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_by(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("wschat.client.commands", {"websockets", "rich", "prompt_toolkit", "fastapi"}),
        ("wschat.client.render", {"websockets", "prompt_toolkit", "fastapi"}),
        ("wschat.client.resume", {"asyncio", "websockets", "rich", "prompt_toolkit", "fastapi"}),
        ("wschat.client.session", {"rich", "prompt_toolkit", "fastapi", "uvicorn"}),
        ("wschat.client.pipe", {"prompt_toolkit", "fastapi", "uvicorn"}),
        ("wschat.client.terminal", {"fastapi", "starlette", "uvicorn"}),
        ("wschat.client.launcher", {"fastapi", "starlette", "uvicorn", "prompt_toolkit"}),
    ],
)
def test_client_modules_import_no_more_than_they_need(module: str, forbidden: set[str]) -> None:
    assert not loaded_by(module) & forbidden


def test_cli_import_loads_no_client_stack() -> None:
    assert not loaded_by("wschat.cli") & {"websockets", "prompt_toolkit", "fastapi"}
