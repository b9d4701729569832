"""What ``wschat bench`` runs: check, run, show, write JSON and HTML, judge --fail-if; compare.

Kept apart from ``cli.py`` so the CLI stays a thin parser and imports this stack only when
the command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from wschat.bench.compare import load
from wschat.bench.compare import render as render_compare
from wschat.bench.compare import table as compare_table
from wschat.bench.config import BenchConfig
from wschat.bench.html import write_html
from wschat.bench.processes import check_memory, run_processes, target_address
from wschat.bench.report import (
    document,
    failures,
    live,
    parse_fail_if,
    table,
    write_json,
)
from wschat.bench.runner import Runner
from wschat.bench.stats import HISTOGRAMS, dump_histograms
from wschat.errors import ConfigError


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory when it is installed (uvicorn[standard] brings it), else None.

    The generator spends most of its time in the event loop's per-read work (one readable
    socket, one recv, one data_received); uvloop does that in C, several times cheaper.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class Outcome(StrEnum):
    """How a run ended; ``cli.py`` maps each to an exit status."""

    OK = "ok"
    FAIL_IF = "fail_if"  # a --fail-if condition did not hold
    INTERRUPTED = "interrupted"  # Ctrl-C: the report so far was shown and written


def bench(
    config: BenchConfig,
    json_path: Path | None = None,
    fail_if: str | None = None,
    progress: bool | None = None,
    html_path: Path | None = None,
    histograms: bool = False,
    processes: int = 1,
    room_per_process: bool = False,
) -> Outcome:
    """Run one load test, print its table, write ``--json`` and ``--html``; return how it ended.

    On Ctrl-C the run stops, closes its connections, and the report so far is printed and
    written, marked partial (``Outcome.INTERRUPTED``); a second Ctrl-C while closing raises
    ``KeyboardInterrupt``. Raises ``ConfigError`` for a bad ``--fail-if`` before anything
    runs, and ``BenchError`` when the test cannot run at all (no server, limits too low).
    ``histograms`` adds the raw HDR histograms to the JSON (what ``--processes`` merges; see
    ``processes``). ``processes`` > 1 spreads the run over that many child processes and
    reports their merged result; on Ctrl-C, the merge of the partial reports they wrote (the
    processes that wrote none are named), within ``processes.INTERRUPT_GRACE_S``. Their
    fan-out and chat share one room unless ``room_per_process``.
    """
    conditions = parse_fail_if(fail_if) if fail_if else []
    to_stdout = json_path is not None and str(json_path) == "-"
    out = Console(stderr=to_stdout)
    err = Console(stderr=True, force_terminal=progress or None)
    if progress is False:
        err = Console(stderr=True, force_terminal=False)
    if processes > 1:
        err.print(f"running {config.n} connections in {processes} processes ...")
        result = run_processes(
            config, processes, target_address(config.url), err.print, room_per_process
        )
    else:
        check_memory(config.n)
        with live(err) as update:
            runner = Runner(config, update)
            try:
                with asyncio.Runner(loop_factory=loop_factory()) as loop:
                    result = loop.run(runner.run())
            except KeyboardInterrupt:
                if runner.result is None:  # interrupted before the first connection
                    raise
                result = runner.result
                result.partial = True
                runner.finish(result)
    doc = document(result)
    doc["processes"] = processes
    if processes > 1:
        doc["shared_room"] = result.shared_room
    if histograms:
        doc[HISTOGRAMS] = dump_histograms(result.stats)
    out.print(table(doc))
    failed = failures(conditions, doc)
    if conditions:
        doc["fail_if"] = {"expression": fail_if, "failed": failed}
    if json_path is not None:
        write_json(json_path, doc)
    if html_path is not None:
        write_html(html_path, doc)
    if result.partial:
        return Outcome.INTERRUPTED
    if failed:
        for line in failed:
            out.print(f"[red]--fail-if failed: {escape(line)}[/red]")
        return Outcome.FAIL_IF
    return Outcome.OK


def compare(paths: list[Path], html_path: Path | None = None) -> None:
    """Print the reports at ``paths`` side by side; write the HTML comparison if asked.

    Raises ``ConfigError`` when a file cannot be read or is not a ``wschat.bench/1`` report.
    """
    docs = [load(path) for path in paths]
    names = [path.stem for path in paths]
    Console().print(compare_table(docs, names))
    if html_path is not None:
        try:
            html_path.write_text(render_compare(docs, names), "utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write --html {html_path}: {exc.strerror or exc}") from None
