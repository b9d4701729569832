"""The one function ``wschat bench`` calls: check, run, show, write JSON, judge --fail-if.

Kept apart from ``cli.py`` so the CLI stays a thin parser and imports this stack only when
the command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from wschat.bench.processes import check_memory, run_processes, target_address
from wschat.bench.report import (
    FAIL_IF_EXIT,
    document,
    failures,
    live,
    parse_fail_if,
    table,
    write_json,
)
from wschat.bench.runner import BenchConfig, run_bench
from wschat.bench.stats import HISTOGRAMS, dump_histograms


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


def bench(
    config: BenchConfig,
    json_path: Path | None = None,
    fail_if: str | None = None,
    progress: bool | None = None,
    histograms: bool = False,
    processes: int = 1,
) -> int:
    """Run one load test, print its table, write ``--json``; return the exit code.

    Returns 0, or ``FAIL_IF_EXIT`` (3) when a ``--fail-if`` condition does not hold. Raises
    ``ConfigError`` for a bad ``--fail-if`` before anything runs, and ``BenchError`` when the
    test cannot run at all (no server, limits too low). ``histograms`` adds the raw HDR
    histograms to the JSON (what ``--processes`` merges; see ``processes``). ``processes`` > 1
    spreads the run over that many child processes and reports their merged result.
    """
    conditions = parse_fail_if(fail_if) if fail_if else []
    to_stdout = json_path is not None and str(json_path) == "-"
    out = Console(stderr=to_stdout)
    err = Console(stderr=True, force_terminal=progress or None)
    if progress is False:
        err = Console(stderr=True, force_terminal=False)
    if processes > 1:
        err.print(f"running {config.n} connections in {processes} processes ...")
        result = run_processes(config, processes, target_address(config.url))
    else:
        check_memory(config.n)
        with live(err) as update:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                result = runner.run(run_bench(config, update))
    doc = document(result)
    doc["processes"] = processes
    if histograms:
        doc[HISTOGRAMS] = dump_histograms(result.stats)
    out.print(table(doc))
    failed = failures(conditions, doc)
    if conditions:
        doc["fail_if"] = {"expression": fail_if, "failed": failed}
    if json_path is not None:
        write_json(json_path, doc)
    if failed:
        for line in failed:
            out.print(f"[red]--fail-if failed: {line}[/red]")
        return FAIL_IF_EXIT
    return 0
