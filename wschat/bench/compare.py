"""``wschat bench compare``: runs side by side, from their ``--json`` reports.

The first report is the baseline; each other column shows its value and its ratio to the
baseline, the way one compares before and after a change. ``table`` is for the terminal,
``render`` writes the same comparison as a self-contained HTML page with the runs' series
overlaid (the charts of ``html``). Reads files only in ``load``; everything else is pure.
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wschat.bench.html import chart, distribution_points, per_second
from wschat.bench.report import SCHEMA_ID
from wschat.errors import ConfigError

Getter = Callable[[dict[str, Any]], float | None]


def _latency(group: str, key: str) -> Getter:
    def get(doc: dict[str, Any]) -> float | None:
        latency = doc["summary"].get(group)
        return None if latency is None else float(latency[key])

    return get


def _field(*path: str) -> Getter:
    def get(doc: dict[str, Any]) -> float | None:
        value: Any = doc["summary"]
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value)

    return get


# (row name, unit, getter, lower is better)
ROWS: tuple[tuple[str, str, Getter, bool], ...] = (
    ("connections opened", "", _field("connections", "opened"), False),
    ("latency p50", "ms", _latency("latency_ms", "p50_ms"), True),
    ("latency p90", "ms", _latency("latency_ms", "p90_ms"), True),
    ("latency p99", "ms", _latency("latency_ms", "p99_ms"), True),
    ("latency p99.9", "ms", _latency("latency_ms", "p999_ms"), True),
    ("latency max", "ms", _latency("latency_ms", "max_ms"), True),
    ("TCP connect p99", "ms", _latency("tcp_connect_ms", "p99_ms"), True),
    ("upgrade p99", "ms", _latency("upgrade_ms", "p99_ms"), True),
    ("sent", "", _field("messages", "sent"), False),
    ("delivered/s", "", _field("throughput", "delivered_per_s"), False),
    ("lost", "", _field("messages", "lost"), True),
    ("refused", "", _field("messages", "refused"), True),
    ("missed while closed", "", _field("messages", "missed_while_closed"), True),
    ("duplicated", "", _field("messages", "duplicates"), True),
    ("reordered", "", _field("messages", "reordered"), True),
    ("errors", "", _field("errors", "total"), True),
    ("generator CPU", "", _field("generator", "cpu"), True),
)


def load(path: Path) -> dict[str, Any]:
    """Read one ``--json`` report; raise ``ConfigError`` naming the file when it is not one."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise ConfigError(f"{path} is not a {SCHEMA_ID} report (wschat bench --json)")
    return doc


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if value == int(value) and not unit else f"{value:.4g}"
    return f"{text} {unit}".rstrip()


def ratio(base: float | None, value: float | None) -> float | None:
    """Return ``value / base``, or ``None`` when either is missing or the base is 0."""
    if base is None or value is None or base == 0:
        return None
    return value / base


def rows(docs: Sequence[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Return each compared measure with one cell per run: the value, then the ratio."""
    out = []
    for name, unit, get, lower_better in ROWS:
        values = [get(doc) for doc in docs]
        if all(v is None for v in values):
            continue
        cells = [_show(values[0], unit)]
        for value in values[1:]:
            r = ratio(values[0], value)
            if r is None or math.isclose(r, 1.0, rel_tol=0.005):
                mark = "" if r is None else " (×1.00)"  # noqa: RUF001
            else:
                better = (r < 1) == lower_better
                colour = "green" if better else "red"
                mark = f" ([{colour}]×{r:.2f}[/{colour}])"  # noqa: RUF001
            cells.append(_show(value, unit) + mark)
        out.append((name, cells))
    return out


def table(docs: Sequence[dict[str, Any]], names: Sequence[str]) -> Table:
    """Render the runs side by side; ratios are to the first run (green: better)."""
    out = Table(title="wschat bench compare · ratios to the first run", title_justify="left")
    out.add_column("measure", style="bold")
    for name, doc in zip(names, docs, strict=True):
        cfg = doc["config"]
        out.add_column(
            f"{escape(name)}\n{cfg['scenario']} · {cfg['n']} · "
            f"{'open loop' if cfg['open_loop'] else 'closed loop'}"
        )
    for measure, cells in rows(docs):
        out.add_row(measure, *cells)
    return out


def render(docs: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """Return the comparison as one self-contained HTML page, the runs' series overlaid."""
    p99 = [
        (name, [(x["t_s"], x["p99_ms"]) for x in doc["series"] if x["p99_ms"] is not None])
        for name, doc in zip(names, docs, strict=True)
    ]
    placed = [distribution_points(d["summary"].get("latency_distribution") or []) for d in docs]
    hdr = [(name, points) for name, (points, _) in zip(names, placed, strict=True)]
    ticks = max((t for _, t in placed), key=len)  # the run that reached the highest percentile
    delivered = [
        (name, per_second(doc["series"], "delivered"))
        for name, doc in zip(names, docs, strict=True)
    ]
    console = Console(record=True, width=160, file=io.StringIO(), color_system="truecolor")
    console.print(table(docs, names))
    summary = console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")
    title = "wschat bench compare · " + " · ".join(names)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin-top: 1.6em; }}
pre {{ font-size: 12px; line-height: 1.25; overflow-x: auto; }}
svg {{ max-width: 100%; height: auto; display: block; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Message latency p99 over time</h2>
{chart("latency p99 per second", p99, "seconds since start", "latency (ms, log)", log_y=True)}
<h2>Latency distribution</h2>
{chart("latency by percentile (HDR)", hdr, "percentile", "latency (ms, log)", True, ticks or None)}
<h2>Delivered messages per second</h2>
{chart("delivered per second", delivered, "seconds since start", "messages/s")}
<h2>Side by side</h2>
{summary}
</body></html>
"""
