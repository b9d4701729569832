"""``wschat bench compare``: reports side by side with ratios, and overlaid in HTML (no network)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.bench.test_report import a_result
from wschat.bench.compare import rows
from wschat.bench.report import document
from wschat.cli import app


def test_compare_prints_side_by_side_with_ratios_and_writes_html(tmp_path: Path) -> None:
    before, after = document(a_result()), document(a_result())
    after["summary"]["latency_ms"]["p99_ms"] = before["summary"]["latency_ms"]["p99_ms"] / 2
    for name, doc in (("before", before), ("after", after)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    measures = dict(rows([before, after]))
    assert measures["latency p99"][1].endswith("([green]×0.50[/green])")  # noqa: RUF001
    assert measures["connections opened"] == ["10", "10 (×1.00)"]  # noqa: RUF001

    page = tmp_path / "compare.html"
    args = ["bench", "compare", str(tmp_path / "before.json"), str(tmp_path / "after.json")]
    out = CliRunner().invoke(app, [*args, "--html", str(page)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "before" in out.output and "after" in out.output and "×0.50" in out.output  # noqa: RUF001
    text = page.read_text()
    assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    # three charts (p99 over time, HDR distribution, delivered/s), one line or dot per run
    assert text.count("<polyline") + text.count("<circle") == 3 * 2

    not_a_report = tmp_path / "x.json"
    not_a_report.write_text("{}")
    out = CliRunner().invoke(app, ["bench", "compare", str(not_a_report), str(not_a_report)])
    assert out.exit_code == 2
    assert "is not a wschat.bench/1 report" in out.stderr
