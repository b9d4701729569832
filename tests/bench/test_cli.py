"""``wschat bench`` end to end in subprocesses: exit codes, one-line errors, the JSON file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from tests.conftest import Server
from wschat.bench.report import schema
from wschat.cli import app


def wschat(*args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wschat", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "module", ["wschat.bench.stats", "wschat.bench.payload", "wschat.bench.limits", "wschat.cli"]
)
def test_pure_modules_and_the_cli_load_no_network_stack(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not {"websockets", "rich.live", "fastapi"} & set(out.stdout.split())


def test_help_names_the_flags() -> None:
    result = CliRunner().invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--scenario", "--rate", "--duration", "--json", "--fail-if", "--ramp", "-n"):
        assert flag in result.output


def test_no_server_is_one_clear_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        out = wschat("bench", "-n", "5", "--url", f"ws://127.0.0.1:{port}")
    assert out.returncode == 1
    assert f"no server at ws://127.0.0.1:{port}" in out.stderr
    assert "wschat serve" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--fail-if", "p99<fast"], "--fail-if: cannot read"),
        (["bench", "--fail-if", "p99<<5"], "--fail-if: cannot read 'p99<<5'"),
        (["bench", "--scenario", "storm"], "'storm' is not one of"),
        (["bench", "--url", "http://127.0.0.1:1"], "--url must look like ws://"),
        (["token", "alice", "--secret", "S", "--ttl", "1x"], "invalid ttl '1x'"),
        (["serve", "--port", "0", "--broker", "foo://x"], "unknown broker 'foo://x'"),
        (["serve", "--port", "0", "--workers", "2"], "--workers needs --broker redis://"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args: list[str], message: str) -> None:
    """README: "2 = bad usage", for every command (issue 18: these exited 1)."""
    if args[0] == "bench":
        args = [*args, "-n", "1", "--duration", "0.5"]
    if args[0] == "serve":
        args = [*args, "--db", ":memory:"]
    out = CliRunner().invoke(app, args, terminal_width=200)
    assert out.exit_code == 2, (out.output, out.exception)
    assert message in " ".join(out.stderr.split())  # rich wraps Click's usage errors


# The two runs against a default wschat serve share one (``shared_server``): each bench run
# has a room and connection names of its own.


def test_json_report_and_fail_if(shared_server: Server, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    common = [
        "bench",
        "-n",
        "20",
        "--url",
        shared_server.ws,
        "--duration",
        "1",
        "--messages",
        "20",
        "--rate",
        "0",
    ]
    ok = wschat(*common, "--json", str(report), "--fail-if", "p99<10s,errors<0.1%,lost<1")
    assert ok.returncode == 0, ok.stderr
    assert "message latency" in ok.stdout and "20 of 20 opened" in ok.stdout
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
    assert doc["summary"]["messages"]["delivered"] == 20 * 20
    assert doc["fail_if"]["failed"] == []
    assert doc["series"], "a per-second series"

    strict = wschat(*common, "--fail-if", "p99<1us")
    assert strict.returncode == 3
    assert "--fail-if failed: p99<1us" in strict.stdout


def test_default_fanout_stays_under_the_servers_default_rate_limit(shared_server: Server) -> None:
    out = wschat("bench", "-n", "20", "--url", shared_server.ws, "--duration", "2", "--json", "-")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    assert doc["config"]["rate"] == 10 and doc["config"]["open_loop"] is True
    assert doc["summary"]["errors"]["total"] == 0
    assert doc["summary"]["messages"]["lost"] == 0


def test_a_rate_limited_run_says_how_to_lift_the_limit(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--rate-limit", "2", "--rate-burst", "2")
    cmd = [sys.executable, "-m", "wschat", "bench", "-n", "5", "--url", server.ws]
    cmd += ["--duration", "2", "--rate", "0"]
    env = {**os.environ, "COLUMNS": "300"}  # one table row per line
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=50, env=env)
    assert "v1 error rate_limited" in out.stdout
    assert "start it with 'wschat serve --rate-limit 0'" in out.stdout
