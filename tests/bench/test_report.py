"""--fail-if parsing and judging, the JSON document's schema, the table (no network)."""

from __future__ import annotations

import io
from typing import Any

import jsonschema
import pytest
from rich.console import Console

from wschat.bench.config import BenchConfig
from wschat.bench.limits import Plan
from wschat.bench.payload import Dialect
from wschat.bench.report import document, failures, parse_fail_if, schema, table
from wschat.bench.runner import BenchResult
from wschat.bench.stats import BenchStats, SequenceCheck
from wschat.errors import ConfigError

MS = 1_000_000


def a_result(rate: float = 0.0) -> BenchResult:
    stats = BenchStats(attempted=10, opened=10)
    check = SequenceCheck()
    for seq in range(100):
        stats.record_sent(64)
        stats.record_delivery(check, 0, seq, 0, (seq + 1) * MS, 64)
    stats.tcp_connect.record_ns(MS)
    stats.upgrade.record_ns(2 * MS)
    stats.record_lag(MS)
    stats.record_error("refused")
    stats.expected = 100
    stats.tick(1.0, 0.2)
    plan = Plan(10, 1024, 4096, ("127.0.1.1",), 28232)
    return BenchResult(
        BenchConfig(n=10, rate=rate),
        "abc123",
        "bench-abc123",
        Dialect.PLAIN,
        plan,
        stats,
        connect_s=0.1,
        load_s=1.0,
        send_s=1.0,
        cpu=0.2,
    )


def test_document_validates_against_the_shipped_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    doc = document(a_result())
    doc["fail_if"] = {"expression": "p99<1ms", "failed": ["p99<1ms: measured 99"]}
    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
    assert doc["schema"] == "wschat.bench/1"
    assert doc["summary"]["latency_ms"]["p99_ms"] == pytest.approx(99, rel=0.01)


def test_schema_rejects_a_wrong_document() -> None:
    doc = document(a_result())
    del doc["summary"]["messages"]["lost"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("expr", "failed"),
    [
        ("p99<200ms", []),
        ("p99<50ms", ["p99<50ms"]),
        ("p99<0.2s,max<=101ms", []),
        ("p50<40000us", ["p50<40000us"]),
        ("p99.9<1s, mean<1s", []),
        ("errors<1", ["errors<1"]),
        ("errors<1%", []),  # 1 error in 10 connects + 100 messages
        ("errors<0.5%", ["errors<0.5%"]),
        ("lost<1,duplicates<1,reordered<1,unsent<1", []),
        ("connections>=10", []),
        ("connections>=11", ["connections>=11"]),
        ("throughput>50/s", []),
        ("tcp.p99<2ms,upgrade.p99<1ms", ["upgrade.p99<1ms"]),
    ],
)
def test_fail_if(expr: str, failed: list[str]) -> None:
    lines = failures(parse_fail_if(expr), document(a_result()))
    assert [line.split(":")[0] for line in lines] == failed


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("p99", "cannot read"),
        ("p99<50", "needs a time unit"),
        ("p98<5ms", "unknown metric 'p98'"),
        ("errors<5ms", "count or a percentage"),
        (" , ", "empty"),
    ],
)
def test_fail_if_errors(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_fail_if(expr)


@pytest.mark.parametrize("rate", [0.0, 10.0])
def test_table_rows_explain_themselves(rate: float) -> None:
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table(document(a_result(rate))))
    text: Any = console.file.getvalue()  # type: ignore[attr-defined]
    for row in ("connections", "TCP connect", "WebSocket upgrade", "message latency", "errors"):
        assert row in text
    assert "refused: 1" in text
    assert ("intended send time" in text) == bool(rate)
    assert "not the bottleneck" in text
