"""What a run shows and hands on: the JSON document, the final table, the live line, --fail-if.

``document`` turns a ``BenchResult`` into the versioned JSON document (``schema.json`` beside
this file describes it); ``table`` renders that document for a person; ``parse_fail_if`` and
``failures`` are pure and tested without running anything. Imports rich, never websockets.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wschat import __version__
from wschat.bench.config import Scenario
from wschat.bench.runner import BenchResult, Progress
from wschat.bench.stats import LatencySummary
from wschat.errors import ConfigError

SCHEMA_ID = "wschat.bench/1"

# --- the JSON document ------------------------------------------------------------------------


def _latency(summary: LatencySummary | None) -> dict[str, Any] | None:
    return summary.as_dict() if summary else None


def document(result: BenchResult, started: datetime | None = None) -> dict[str, Any]:
    """Return the run as a JSON-able ``wschat.bench/1`` document (see ``schema.json``)."""
    cfg, s = result.config, result.stats
    load_s = result.load_s or 1e-9
    attempts = s.attempted + s.sent
    limited = result.limited_by_generator
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "tool": f"wschat {__version__}",
        "started": (started or datetime.now(UTC)).isoformat(timespec="seconds"),
        "run_id": result.run_id,
        "partial": result.partial,
        "config": {
            "url": cfg.url,
            "n": cfg.n,
            "scenario": str(cfg.scenario),
            "protocol": str(cfg.protocol),
            "dialect": str(result.dialect),
            "room": result.room,
            "size": cfg.size,
            "duration_s": cfg.duration_s,
            "messages": cfg.messages,
            "rate": cfg.rate,
            "senders": cfg.senders if cfg.scenario is Scenario.FANOUT else None,
            "ramp_s": cfg.ramp_s,
            "open_loop": cfg.rate > 0,
        },
        "summary": {
            "connections": {
                "attempted": s.attempted,
                "opened": s.opened,
                "connect_s": round(result.connect_s, 3),
            },
            "tcp_connect_ms": _latency(s.tcp_connect.summary()),
            "upgrade_ms": _latency(s.upgrade.summary()),
            "latency_ms": _latency(s.latency.summary()),
            "latency_from": "intended send time" if cfg.rate > 0 else "actual send time",
            "latency_distribution": [[round(p, 6), ms] for p, ms in s.latency.distribution()],
            "messages": {
                "sent": s.sent,
                "expected": s.expected,
                "delivered": s.delivered,
                "lost": s.lost,
                "missed_while_closed": s.missed_while_closed,
                "refused": sum(s.refused.values()),
                "duplicates": s.duplicates,
                "reordered": s.reordered,
                "unsent": result.unsent,
                "cancelled_by_close": result.cancelled,
                "foreign": s.foreign,
            },
            "throughput": {
                "load_s": round(result.load_s, 3),
                "load_started_unix": round(result.load_started, 3),
                "sent_per_s": round(s.sent / load_s, 1),
                "delivered_per_s": round(s.delivered / load_s, 1),
                "sent_bytes": s.sent_bytes,
                "received_bytes": s.received_bytes,
            },
            "errors": {
                "total": s.error_count,
                "rate": round(s.error_count / attempts, 6) if attempts else 0.0,
                "by_kind": dict(s.errors.most_common()),
                "refused_by_code": dict(s.refused.most_common()),
            },
            "generator": {
                "cpu": round(result.cpu, 3),
                "loop_lag_ms": _latency(s.loop_lag.summary()),
                "limited": limited is not None,
                "reason": limited,
                "fd_limit": result.plan.fd_soft,
                "source_addresses": len(result.plan.sources),
            },
        },
        "series": [asdict(sample) for sample in s.series],
    }
    if result.unreported:
        doc["unreported"] = list(result.unreported)
    return doc


def schema() -> dict[str, Any]:
    """Return the JSON Schema of the document (shipped as ``wschat/bench/schema.json``)."""
    text = resources.files("wschat.bench").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` ("-" for stdout); raise ``ConfigError`` when it cannot."""
    text = json.dumps(doc, indent=2) + "\n"
    if str(path) == "-":
        print(text, end="")
        return
    try:
        path.write_text(text, "utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --json {path}: {exc.strerror or exc}") from None


# --- --fail-if ----------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_LATENCY_KEYS = {
    "p50": "p50_ms",
    "p90": "p90_ms",
    "p99": "p99_ms",
    "p99.9": "p999_ms",
    "max": "max_ms",
    "mean": "mean_ms",
}
_GROUPS = {"": "latency_ms", "tcp.": "tcp_connect_ms", "upgrade.": "upgrade_ms"}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_CONDITION = re.compile(
    r"^\s*([a-z_.0-9]+?)\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*(%|us|ms|s|/s)?\s*$"
)
COUNT_METRICS = ("errors", "lost", "duplicates", "reordered", "unsent", "refused")
FAIL_IF_HELP = (
    "p50 p90 p99 p99.9 max mean (message latency; tcp.p99, upgrade.p99 for connects; "
    "units us, ms, s), errors lost duplicates reordered unsent refused (a count, or % of "
    "attempts), "
    "connections (opened), throughput (delivered messages/s)"
)


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``--fail-if`` clause: the run passes while ``metric op value`` holds."""

    text: str
    metric: str
    op: str
    value: float
    percent: bool = False

    def holds(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)


def parse_fail_if(expr: str) -> list[Condition]:
    """Parse ``'p99<50ms,errors<0.1%'`` into conditions; raise ``ConfigError`` naming the bad part.

    Times are kept in milliseconds; a percentage is kept as a percentage.
    """
    conditions = []
    for part in filter(None, (p.strip() for p in expr.split(","))):
        match = _CONDITION.match(part)
        if not match:
            raise ConfigError(f"--fail-if: cannot read {part!r}; expected e.g. 'p99<50ms'")
        name, op, raw, unit = match.groups()
        unit = unit or ""
        value = float(raw)
        base = name
        for prefix in ("tcp.", "upgrade."):
            base = base.removeprefix(prefix)
        if base in _LATENCY_KEYS:
            if unit not in _TIME_UNITS:
                raise ConfigError(f"--fail-if: {part!r} needs a time unit (us, ms or s)")
            conditions.append(Condition(part, name, op, value * _TIME_UNITS[unit]))
        elif name in COUNT_METRICS:
            if unit not in ("", "%"):
                raise ConfigError(f"--fail-if: {name} is a count or a percentage, not {unit!r}")
            conditions.append(Condition(part, name, op, value, percent=unit == "%"))
        elif name in ("connections", "throughput") and unit in ("", "/s"):
            conditions.append(Condition(part, name, op, value))
        else:
            known = ", ".join(
                [*(p + k for p in ("", "tcp.") for k in _LATENCY_KEYS), *COUNT_METRICS]
            )
            raise ConfigError(
                f"--fail-if: unknown metric {name!r} in {part!r}; known: {known}, connections, throughput"
            )
    if not conditions:
        raise ConfigError("--fail-if is empty")
    return conditions


def measure(condition: Condition, doc: dict[str, Any]) -> float | None:
    """Return the measured value ``condition`` talks about, or ``None`` when nothing was measured."""
    summary = doc["summary"]
    name = condition.metric
    if name == "connections":
        return float(summary["connections"]["opened"])
    if name == "throughput":
        return float(summary["throughput"]["delivered_per_s"])
    if name in COUNT_METRICS:
        if name == "errors":
            count, base = (
                summary["errors"]["total"],
                summary["connections"]["attempted"] + summary["messages"]["sent"],
            )
        else:
            count, base = (
                summary["messages"][name],
                max(summary["messages"]["expected"], summary["messages"]["sent"]),
            )
        if condition.percent:
            return 100.0 * count / base if base else 0.0
        return float(count)
    group = "latency_ms"
    for prefix, key in _GROUPS.items():
        if prefix and name.startswith(prefix):
            group, name = key, name.removeprefix(prefix)
    latency = summary[group]
    return None if latency is None else float(latency[_LATENCY_KEYS[name]])


def failures(conditions: list[Condition], doc: dict[str, Any]) -> list[str]:
    """Return one line per condition that does not hold (a latency never measured fails)."""
    failed = []
    for condition in conditions:
        value = measure(condition, doc)
        if value is None:
            failed.append(f"{condition.text}: not measured")
        elif not condition.holds(value):
            failed.append(f"{condition.text}: measured {_measured(condition, value)}")
    return failed


def _measured(condition: Condition, value: float) -> str:
    """Return a measured value with its unit: ``1355.78 ms``, ``0.4 %``, ``3``, ``12 /s``."""
    if condition.percent:
        return f"{value:.4g} %"
    base = condition.metric.removeprefix("tcp.").removeprefix("upgrade.")
    if base in _LATENCY_KEYS:
        return f"{value:.6g} ms"
    if condition.metric == "throughput":
        return f"{value:g} messages/s"
    return f"{value:g}"


# --- for a person -----------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"


def _pcts(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return "—"
    return (
        f"p50 {_ms(latency['p50_ms'])} · p90 {_ms(latency['p90_ms'])} · "
        f"p99 {_ms(latency['p99_ms'])} · p99.9 {_ms(latency['p999_ms'])} · "
        f"max {_ms(latency['max_ms'])}"
    )


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def table(doc: dict[str, Any]) -> Table:
    """Render the document as a three-column table: what, how much, what it means."""
    cfg, s = doc["config"], doc["summary"]
    m, t, e, g = s["messages"], s["throughput"], s["errors"], s["generator"]
    loop = "open loop" if cfg["open_loop"] else "closed loop"
    partial = "[bold yellow]PARTIAL (interrupted)[/bold yellow] · " if doc.get("partial") else ""
    title = (
        f"{partial}wschat bench · {cfg['scenario']} · "
        f"{s['connections']['opened']} of {cfg['n']} connections · "
        f"{cfg['dialect']} · {cfg['url']}"
    )
    out = Table(title=title, title_justify="left", show_lines=False)
    out.add_column("measure", style="bold")
    out.add_column("result")
    out.add_column("what it means", style="dim")
    c = s["connections"]
    out.add_row(
        "connections",
        f"{c['opened']} of {c['attempted']} opened in {c['connect_s']:.2f} s",
        "WebSocket connections open at the same time",
    )
    out.add_row("TCP connect", _pcts(s["tcp_connect_ms"]), "SYN to established, per connection")
    out.add_row("WebSocket upgrade", _pcts(s["upgrade_ms"]), "HTTP upgrade request to 101 response")
    if cfg["scenario"] != "connect":
        if cfg["open_loop"]:
            how = f"{loop}, {cfg['rate']:g}/s per sender: counted from each message's intended send time"
        else:
            how = f"{loop}: each sender waits for its own message before sending the next"
        out.add_row(
            "message latency", _pcts(s["latency_ms"]), f"send to arrival at each receiver; {how}"
        )
        out.add_row(
            "messages",
            f"{m['sent']} sent · {m['delivered']} of {m['expected']} delivered",
            "expected = receivers times messages sent"
            if cfg["scenario"] != "echo"
            else "each echo comes back to its sender",
        )
        ok = "ok" if not (m["lost"] or m["duplicates"] or m["reordered"]) else "[red]check[/red]"
        out.add_row(
            "integrity",
            f"{m['lost']} lost · {m['duplicates']} duplicated · {m['reordered']} reordered ({ok})",
            "checked per receiver and sender by sequence number; lost: a receiver was open "
            "and never got it",
        )
        refused = e.get("refused_by_code") or {}
        if m.get("refused"):
            codes = ", ".join(f"{k}: {v}" for k, v in refused.items())
            out.add_row(
                "refused",
                f"[red]{m['refused']}[/red] ({codes})",
                "messages the server answered with an error event and did not send on",
            )
        if m.get("missed_while_closed"):
            out.add_row(
                "missed while closed",
                f"{m['missed_while_closed']}",
                "copies for receivers the server had closed (their close is under errors)",
            )
        if m.get("cancelled_by_close"):
            out.add_row(
                "cancelled by close",
                f"{m['cancelled_by_close']}",
                "scheduled sends of connections the server had closed",
            )
        if m["unsent"]:
            out.add_row(
                "unsent",
                f"[red]{m['unsent']}[/red]",
                "scheduled sends that never left: the sender was blocked",
            )
        out.add_row(
            "throughput",
            f"{t['sent_per_s']:,.0f} sent/s · {t['delivered_per_s']:,.0f} delivered/s",
            f"over {t['load_s']:.1f} s, first send to last delivery",
        )
        out.add_row(
            "bytes",
            f"{_bytes(t['sent_bytes'])} sent · {_bytes(t['received_bytes'])} received",
            f"WebSocket payloads of {cfg['size']} characters",
        )
    kinds = ", ".join(f"{k}: {v}" for k, v in e["by_kind"].items()) or "none"
    out.add_row(
        "errors",
        f"[red]{e['total']}[/red] ({e['rate']:.3%}) — {kinds}" if e["total"] else "0",
        "failed connects, unexpected closes, timeouts, by kind",
    )
    for hint, flag in hints(e["by_kind"]):
        out.add_row("", f"[yellow]{hint}[/yellow]", f"[yellow]{flag}[/yellow]")
    lag = g["loop_lag_ms"]
    gen = f"CPU {g['cpu']:.0%} of one core · loop lag p99 {_ms(lag['p99_ms']) if lag else '—'}"
    if g["limited"]:
        out.add_row(
            "load generator",
            f"[yellow]{gen}[/yellow]",
            f"[yellow]the generator limited this result ({g['reason']}): the server may be faster[/yellow]",
        )
    else:
        out.add_row("load generator", gen, "not the bottleneck: these numbers are the server's")
    if doc.get("unreported"):
        missing, processes = doc["unreported"], doc.get("processes", len(doc["unreported"]))
        out.add_row(
            "processes",
            f"[yellow]{processes - len(missing)} of {processes} reported · "
            f"{escape('; '.join(missing))}[/yellow]",
            "[yellow]interrupted before writing a report: not counted above[/yellow]",
        )
    return out


_HINTS = (
    (
        "rate_limited",
        "the server rate-limited the senders",
        "for a load test start it with 'wschat serve --rate-limit 0'",
    ),
    (
        "handshake HTTP 429",
        "the server's per-address cap refused connections",
        "start it with a higher 'wschat serve --max-connections-per-ip' (0: none), or "
        "leave --spread on for a loopback target",
    ),
    (
        "handshake HTTP 503",
        "the server's connection cap refused connections",
        "start it with a higher 'wschat serve --max-connections' (0: none)",
    ),
)


def hints(by_kind: dict[str, int]) -> list[tuple[str, str]]:
    """Return (what happened, what to change) for the error kinds a server flag explains."""
    return [(what, fix) for key, what, fix in _HINTS if any(key in kind for kind in by_kind)]


def progress_line(p: Progress) -> Text:
    """Return the one-line live display for ``p``."""
    p99 = f"{p.p99_ms:.1f} ms" if p.p99_ms is not None else "—"
    return Text.assemble(
        (f"{p.phase:<8}", "bold cyan"),
        f" {p.elapsed_s:5.1f} s · connections {p.open}/{p.n} open ({p.attempted} tried) · ",
        f"sent {p.sent:,} · delivered {p.delivered:,} · p99 {p99} · ",
        (f"errors {p.errors:,}", "red" if p.errors else ""),
    )


@contextmanager
def live(console: Console) -> Iterator[Callable[[Progress], None]]:
    """Show a live progress line on ``console`` while the block runs; yield its update function.

    Nothing is shown when the console is not a terminal (the update function does nothing).
    """
    if not console.is_terminal:
        yield lambda _: None
        return
    with Live(console=console, auto_refresh=False, transient=True) as display:

        def update(p: Progress) -> None:
            display.update(progress_line(p), refresh=True)

        yield update
