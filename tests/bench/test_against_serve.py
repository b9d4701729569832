"""``wschat bench`` and ``wschat join`` against one real ``wschat serve`` (issue 18).

One server, with its per-address cap lowered to 150 (the default 1000 works the same way
at -n 3000, ten times slower), serves every test here: connections past a per-address cap,
rate-limit refusals, Ctrl-C, an unknown path, and the HTML report in headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import Server, start_server
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, default_signals, get_json
from wschat.bench.config import BenchConfig, Scenario
from wschat.bench.runner import run_bench
from wschat.cli import app

PER_IP = 150
WIDE = {"COLUMNS": "250"}  # one table row per line


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("capped"), "--max-connections-per-ip", str(PER_IP)
    )
    yield server
    server.stop(signal.SIGKILL)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


def bench(*args: str) -> tuple[int, str]:
    """Run ``wschat bench`` in this process; return its exit code and what it printed."""
    out = CliRunner().invoke(app, ["bench", *args], env=WIDE)
    return out.exit_code, out.output


def test_connections_past_a_per_address_cap_are_spread_or_refused_with_a_hint(
    capped: Server, tmp_path: Path
) -> None:
    # twice the cap from 127.0.0.1: bench spreads its source addresses, all open
    code, out = bench(
        "-n", str(2 * PER_IP), "--scenario", "echo", "--messages", "1", "--url", capped.ws
    )
    assert code == 0, out
    assert f"{2 * PER_IP} of {2 * PER_IP} connections" in out  # the title: opened of asked
    # without spreading, the cap refuses the rest: said with the server's reason and the flag
    report = tmp_path / "capped.json"
    code, out = bench(
        "-n",
        str(PER_IP + 20),
        "--scenario",
        "echo",
        "--messages",
        "1",
        "--no-spread",
        "--url",
        capped.ws,
        "--json",
        str(report),
    )
    assert code == 0, out
    assert f"{PER_IP} of {PER_IP + 20} connections" in out
    kinds = json.loads(report.read_text())["summary"]["errors"]["by_kind"]
    assert kinds == {"handshake HTTP 429 (too many connections from this address)": 20}
    assert "--max-connections-per-ip" in out


async def test_rate_limited_messages_count_as_refused_not_lost(capped: Server) -> None:
    # closed loop: each sender sends as fast as its answers come, past the burst of 40
    config = BenchConfig(url=capped.ws, n=3, scenario=Scenario.CHAT, messages=50, duration_s=10)
    result = await run_bench(config)
    s = result.stats
    assert s.refused["rate_limited"] > 0, s.errors
    assert s.lost == 0 and s.missed_while_closed == 0
    assert "reply timeout" not in s.errors  # a refusal answers the sender at once
    assert s.delivered == s.expected == 3 * (s.sent - s.refused["rate_limited"])


def test_ctrl_c_prints_and_writes_the_partial_report_and_exits_130(
    capped: Server, tmp_path: Path
) -> None:
    report = tmp_path / "partial.json"
    cmd = [
        sys.executable,
        "-m",
        "wschat",
        "bench",
        "-n",
        "10",
        "--duration",
        "60",
        "--url",
        capped.ws,
        "--json",
        str(report),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **WIDE},
        preexec_fn=default_signals,  # SIGINT works also when pytest runs with & or nohup
    )
    try:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if get_json(f"{capped.http}/healthz")["connections"] >= 10:
                break
            time.sleep(0.05)
        time.sleep(0.8)  # past the settling, some sends at 10/s
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "PARTIAL" in out and "10 of 10 connections" in out
    doc = json.loads(report.read_text())
    assert doc["partial"] is True
    assert doc["summary"]["messages"]["sent"] > 0


def test_unknown_paths_are_explained(capped: Server) -> None:
    # a chat client given the echo endpoint's URL: the server's 404 names its endpoints
    out = CliRunner().invoke(app, ["join", "alice", "--url", f"{capped.ws}/ws"], input="")
    assert out.exit_code == 1
    said = " ".join(out.stderr.split())
    assert "HTTP 404 Not Found: not a WebSocket endpoint" in said
    assert "no WebSocket endpoint at /ws/ws/alice: this server has /ws (echo)" in said
    code, out = bench("-n", "2", "--url", f"{capped.ws}/nothing", "--duration", "0.5")
    assert code == 1
    assert "HTTP 404 Not Found: not a WebSocket endpoint" in out


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_chat_defaults_and_the_html_report_in_a_browser(capped: Server, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    report, html = tmp_path / "chat.json", tmp_path / "report.html"
    code, out = bench(
        "-n",
        "8",
        "--scenario",
        "chat",
        "--duration",
        "1",
        "--url",
        capped.ws,
        "--json",
        str(report),
        "--html",
        str(html),
        "--fail-if",
        "p99<1us",
    )
    assert code == 3, out  # only the --fail-if
    # the defaults of --scenario chat: an open loop under the server's default rate limit
    doc = json.loads(report.read_text())
    assert doc["config"]["rate"] == 10
    assert doc["summary"]["errors"]["total"] == 0
    assert doc["summary"]["messages"]["lost"] == doc["summary"]["messages"]["refused"] == 0
    assert re.search(r"--fail-if failed: p99<1us: measured [0-9.]+ ms", out)
    # the report: one file, opened offline in headless Chromium
    report = html
    assert report.stat().st_size < 100_000
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            titles = page.locator("svg").evaluate_all(
                "svgs => svgs.map(svg => svg.getAttribute('aria-label'))"
            )
            summary = page.locator("pre.summary").inner_text()
        finally:
            browser.close()
    assert errors == []
    assert requests == [report.as_uri()]  # nothing but the file itself: no CDN, no font
    assert {
        "message latency per second",
        "message latency by percentile (HDR)",
        "open connections",
        "messages per second",
    } <= set(titles)
    assert "8 of 8 opened" in summary
    assert "--fail-if p99&lt;1us" in report.read_text("utf-8")
    assert (tmp_path / "report.png").stat().st_size > 0
