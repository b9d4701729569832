"""``wschat bench --processes N``: children's counts and HDR histograms merged exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from tests.conftest import Server
from wschat.bench.report import schema
from wschat.bench.stats import Latency


def test_two_processes_add_up_exactly_against_a_real_server(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wschat",
            "bench",
            "--url",
            server.ws,
            "--processes",
            "2",
            "-n",
            "41",
            "--scenario",
            "fanout",
            "--senders",
            "2",
            "--rate",
            "10",
            "--messages",
            "5",
            "--duration",
            "2",
            "--json",
            str(report),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, schema())
    summary = doc["summary"]
    assert doc["processes"] == 2
    assert summary["connections"]["attempted"] == summary["connections"]["opened"] == 41
    # one room per process: 21 and 20 receivers, one sender each, 5 messages each
    assert summary["messages"]["sent"] == 10
    assert summary["messages"]["expected"] == summary["messages"]["delivered"] == 21 * 5 + 20 * 5
    assert summary["messages"]["lost"] == 0
    # the merged histograms hold every sample of both processes
    assert summary["latency_ms"]["count"] == 205
    assert summary["upgrade_ms"]["count"] == summary["tcp_connect_ms"]["count"] == 41
    assert summary["generator"]["source_addresses"] == 2  # each process its own


def test_the_descriptor_limit_is_named_before_anything_opens() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wschat",
            "bench",
            "--url",
            "ws://127.0.0.1:9",
            "--processes",
            "2",
            "-n",
            "10000000",
            "--scenario",
            "connect",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "descriptors:" in done.stderr and "--processes" in done.stderr
    assert "Traceback" not in done.stderr


def test_merged_histograms_give_the_percentiles_of_one_histogram() -> None:
    one, parts = Latency(), [Latency(), Latency(), Latency()]
    for i in range(3000):
        duration_ns = (i * 7919 % 100_000 + 1) * 1000
        one.record_ns(duration_ns)
        parts[i % 3].record_ns(duration_ns)
    merged = Latency()
    for part in parts:
        merged.merge(json.loads(json.dumps(part.dump())))
    assert merged.summary() == one.summary()
