"""The ``--html`` report: one self-contained HTML file with the run's charts as inline SVG.

The charts are drawn here, as SVG text, from the ``wschat.bench/1`` document: no plotting
library, no script, no stylesheet or font from the network, so the file opens offline, in any
browser, and stays small (about 12 KB). It shows latency over time (p50, p99 and max per
second, log scale), the HDR percentile distribution (both axes log), open connections and
delivered messages per second, errors by kind, the config, and the summary table itself
(rendered by ``report.table`` through rich's HTML export). Pure: no I/O but ``write_html``.

Why hand-drawn SVG: a plotting library that embeds its JavaScript (plotly, bokeh, vega)
makes a file of 1 to 4 MB or loads the script from a CDN, and matplotlib would add a large
dependency for five line charts; a few dozen lines of SVG give charts any browser draws,
with no script to fail and nothing to download.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from wschat.bench.report import table
from wschat.errors import ConfigError

WIDTH, HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 110, 16, 40
COLOURS = ("#1f77b4", "#d62728", "#7f7f7f", "#2ca02c")

Points = Sequence[tuple[float, float]]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        return [
            10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ]
    step = 10 ** math.floor(math.log10(max(high - low, 1e-9)))
    while (high - low) / step > 6:
        step *= 2
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 2)]


def chart(
    title: str,
    series: Sequence[tuple[str, Points]],
    x_label: str,
    y_label: str,
    log_y: bool = False,
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """Return an inline ``<svg>`` line chart of ``series`` (name, points); log scale on request.

    ``x_ticks`` replaces the automatic x axis labels with (position, label) pairs (the
    percentile plot places its x axis at log positions). Points with a value of 0 or less are
    left out of a log scale. A chart with nothing to draw says so.
    """
    drawn = [(name, [(x, y) for x, y in pts if y > 0 or not log_y]) for name, pts in series]
    every = [p for _, pts in drawn for p in pts]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>"
    )
    if not every:
        return head + '<text x="20" y="40">nothing measured</text></svg>'
    xs, ys = [x for x, _ in every], [y for _, y in every]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    if log_y:
        y0 = 10 ** math.floor(math.log10(min(ys)))
        y1 = 10 ** math.ceil(math.log10(max(ys)))
        y1 = y1 if y1 > y0 else y0 * 10
    else:
        y0, y1 = 0.0, max(ys) * 1.1 or 1.0
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        if log_y:
            frac = (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0))
        else:
            frac = (y - y0) / (y1 - y0)
        return MARGIN_TOP + (1 - frac) * plot_h

    parts = [head, '<g font-size="11" fill="#333">']
    for tick in _ticks(y0, y1, log_y):
        if y0 <= tick <= y1:
            y = sy(tick)
            parts.append(
                f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="#ddd"/>'
                f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
            )
    labels = x_ticks or [(t, _fmt(t)) for t in _ticks(x0, x1, False) if x0 <= t <= x1]
    for x, label in labels:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{MARGIN_TOP + plot_h + 14}" text-anchor="middle">'
            f"{html.escape(label)}</text>"
        )
    parts.append(
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999"/>'
        f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{html.escape(x_label)}</text>"
        f'<text transform="translate(12 {MARGIN_TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(drawn):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        if len(pts) == 1:
            x, y = pts[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        elif pts:
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
        ly = MARGIN_TOP + 14 + 16 * i
        lx = MARGIN_LEFT + plot_w + 10
        parts.append(
            f'<line x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
            f'stroke-width="2"/><text x="{lx + 20}" y="{ly}">{html.escape(name)}</text>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def bars(title: str, items: Sequence[tuple[str, int]]) -> str:
    """Return an inline ``<svg>`` horizontal bar chart of (label, count); empty: "none"."""
    if not items:
        return f"<p>{html.escape(title)}: none</p>"
    top = max(v for _, v in items)
    row, label_w, bar_w = 22, 300, WIDTH - 300 - 80
    height = row * len(items) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{html.escape(title)}">'
        f'<title>{html.escape(title)}</title><g font-size="12" fill="#333">'
    ]
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = max(1.0, value / top * bar_w)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(label[:48])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="#d62728"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{value:,}</text>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def per_second(series: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """Turn a cumulative counter of the one-second series into a rate per second."""
    points, last_t, last_v = [], 0.0, 0
    for sample in series:
        dt = sample["t_s"] - last_t
        if dt > 0:
            points.append((sample["t_s"], (sample[key] - last_v) / dt))
        last_t, last_v = sample["t_s"], sample[key]
    return points


def distribution_points(
    distribution: Sequence[Sequence[float]],
) -> tuple[list[tuple[float, float]], list[tuple[float, str]]]:
    """Place an HDR distribution for plotting: points at x = log10(1 / (1 - p)), and ticks.

    So 90, 99 and 99.9 % are equally far apart; the max goes just right of the rest.
    """
    if not distribution:
        return [], []
    finite = [(p, ms) for p, ms in distribution if p < 100]
    last_x = math.log10(1 / (1 - finite[-1][0] / 100)) if finite else 0.0
    points = [(math.log10(1 / (1 - p / 100)), ms) for p, ms in finite]
    points.append((last_x + 0.3, distribution[-1][1]))
    ticks = [
        (math.log10(1 / (1 - p / 100)), label)
        for p, label in ((0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%"))
        if math.log10(1 / (1 - p / 100)) <= last_x + 0.3
    ]
    ticks.append((last_x + 0.3, "max"))
    return points, ticks


def _distribution_chart(distribution: Sequence[Sequence[float]]) -> str:
    """The HDR percentile plot of one run."""
    points, ticks = distribution_points(distribution)
    return chart(
        "message latency by percentile (HDR)",
        [("latency", points)],
        "percentile",
        "latency (ms, log)",
        log_y=True,
        x_ticks=ticks or None,
    )


def _summary_table(doc: dict[str, Any]) -> str:
    """The summary table as the terminal shows it, exported by rich with inline styles."""
    console = Console(record=True, width=120, file=io.StringIO(), color_system="truecolor")
    console.print(table(doc))
    return console.export_html(inline_styles=True, code_format="<pre class=summary>{code}</pre>")


def render(doc: dict[str, Any]) -> str:
    """Return the whole HTML report for a ``wschat.bench/1`` document."""
    cfg, s, series = doc["config"], doc["summary"], doc["series"]
    title = f"wschat bench · {cfg['scenario']} · {s['connections']['opened']} of {cfg['n']}"
    latency = [
        (name, [(x["t_s"], x[key]) for x in series if x[key] is not None])
        for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms"))
    ]
    errors = sorted(s["errors"]["by_kind"].items(), key=lambda kv: -kv[1])
    config_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in cfg.items()
    )
    fail_if = doc.get("fail_if")
    verdict = ""
    if fail_if:
        lines = fail_if["failed"] or ["every condition held"]
        verdict = (
            f"<h2>--fail-if {html.escape(fail_if['expression'])}</h2><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + "</ul>"
        )
    partial = "<p class=partial>PARTIAL: the run was interrupted</p>" if doc.get("partial") else ""
    if doc.get("unreported"):
        missing = html.escape("; ".join(doc["unreported"]))
        partial += f"<p class=partial>Not counted (no report written): {missing}</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin-top: 1.6em; }}
table.config th {{ text-align: left; padding-right: 1em; font-weight: normal; color: #555; }}
pre.summary {{ font-size: 12px; line-height: 1.25; overflow-x: auto; }}
.partial {{ color: #b35900; font-weight: bold; }}
svg {{ max-width: 100%; height: auto; display: block; }}
</style></head><body>
<h1>{html.escape(title)} connections · {html.escape(cfg["url"])}</h1>
<p>{html.escape(doc["tool"])} · run {html.escape(doc["run_id"])} · {html.escape(doc["started"])}</p>
{partial}
<h2>Message latency over time</h2>
{chart("message latency per second", latency, "seconds since start", "latency (ms, log)", log_y=True)}
<h2>Latency distribution</h2>
{_distribution_chart(s.get("latency_distribution") or [])}
<h2>Connections and throughput</h2>
{chart("open connections", [("open", [(x["t_s"], x["open"]) for x in series])], "seconds since start", "connections")}
{chart("messages per second", [("delivered/s", per_second(series, "delivered")), ("sent/s", per_second(series, "sent"))], "seconds since start", "messages/s")}
<h2>Errors by kind</h2>
{bars("errors by kind", errors)}
{verdict}
<h2>Summary</h2>
{_summary_table(doc)}
<h2>Config</h2>
<table class="config">{config_rows}</table>
</body></html>
"""


def write_html(path: Path, doc: dict[str, Any]) -> None:
    """Write the report for ``doc`` to ``path``; raise ``ConfigError`` when it cannot."""
    try:
        path.write_text(render(doc), "utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --html {path}: {exc.strerror or exc}") from None
