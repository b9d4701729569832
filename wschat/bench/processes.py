"""``wschat bench --processes N``: one run spread over N child processes, merged exactly.

One process may hold only as many sockets as its descriptor limit, and its asyncio loop uses
one core. With ``--processes N`` the parent checks the limits for the whole run, starts N
``wschat bench`` children, each with its share of the connections and senders and its own
127.0.0.0/8 source addresses (a source/destination pair's local ports are shared by every
process), and reads each child's JSON report with its raw HDR histograms. It adds the counts
and the histograms into one ``BenchResult``, so percentiles, losses and errors are exactly
those of one process that had done all of it, and hands that to the usual report.

Fan-out and chat run in ONE room shared by every process, as in one process: every receiver
hears every sender, whichever process either is in. The children share one run id and room
and number their connections apart (``index_offset``), so every stamp names its sender
uniquely, and they meet at each phase (``barrier``): nobody sends before every receiver of
every process has connected and settled, and each process drains and counts its receivers'
losses against every sender's accepted count. Latency is measured across processes: a stamp
carries its sender's ``time.monotonic_ns()``, one system-wide clock (CLOCK_MONOTONIC on
Linux) for the processes of one machine, which the children always are. Stdlib and the
bench's own modules only; the children are bounded by the same timeouts as a single run, and
killed if they overrun them.

Ctrl-C works as in one process: the children run in their own process group, and the parent
sends each one SIGINT (one only: a second would cut its close short), gives them
``INTERRUPT_GRACE_S`` to close their connections and write their partial reports, merges
those and marks the result partial; a process that wrote none is named in the report. On
Linux the children are sent SIGTERM if the parent dies, so none loads the server unread.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wschat.bench.barrier import Meeting
from wschat.bench.config import BenchConfig, Scenario
from wschat.bench.limits import (
    FD_RESERVE,
    Plan,
    ephemeral_ports,
    is_loopback_v4,
    source_addresses,
)
from wschat.bench.payload import Dialect
from wschat.bench.runner import CLOSE_TIMEOUT_S, SETTLE_MAX_S, BenchResult
from wschat.bench.stats import HISTOGRAMS, BenchStats, Sample, merge_histograms
from wschat.errors import BenchError
from wschat.rlimit import available_memory

# Memory one open bench connection costs the generator (socket buffers idle; measured about
# 9 KB of RSS at 15,000 per process): with the server's on the same machine, checked up front.
CLIENT_BYTES_PER_CONNECTION = 12 * 1024
SPAWN_MARGIN_S = 60.0  # start-up, probe and report of a child, beyond its own phase bounds
# After Ctrl-C: a child's close phase (Runner._close_all aborts what has not closed within
# CLOSE_TIMEOUT_S + 3) plus 5 s to cancel its tasks and write its report; then it is killed.
INTERRUPT_GRACE_S = CLOSE_TIMEOUT_S + 3 + 5.0
INTERRUPTED_EXIT = 130  # a child that wrote its partial report after SIGINT (cli.ExitCode)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def shares(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` integers that differ by at most one and add up to it."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def shares_room(config: BenchConfig, room_per_process: bool = False) -> bool:
    """Return whether the children of ``config``'s run share one room (fan-out and chat).

    ``room_per_process`` (``--room-per-process``) gives each child its own room instead.
    """
    return not room_per_process and config.scenario in (Scenario.FANOUT, Scenario.CHAT)


def child_configs(
    config: BenchConfig, processes: int, room_per_process: bool = False
) -> list[BenchConfig]:
    """Return each child's config: its share of ``n`` and senders, its own source addresses.

    Fan-out and chat (``shares_room``): one run id and room for all, connections numbered
    apart (``run_processes`` adds the pipes they meet on); a fan-out child may hold receivers
    only (``senders`` 0). With ``room_per_process`` each child has its own room and checks
    its own deliveries, so each fan-out child needs a sender and ``--room`` is refused.
    Raises ``BenchError`` when a child would get no connection, or (fan-out) no sender.
    """
    if processes > config.n:
        raise BenchError(
            f"--processes {processes} needs at least as many connections, not -n {config.n}"
        )
    ns = shares(config.n, processes)
    senders = shares(config.senders, processes)
    shared = shares_room(config, room_per_process)
    if config.scenario is Scenario.FANOUT and config.senders > config.n:
        raise BenchError(f"fanout: --senders {config.senders} is more than -n {config.n}")
    if not shared and config.scenario is Scenario.FANOUT and min(senders) < 1:
        raise BenchError(
            f"fanout with --room-per-process over {processes} processes needs a sender in "
            f"each: use --senders {processes} or more"
        )
    per_room = config.scenario in (Scenario.FANOUT, Scenario.CHAT)
    if not shared and per_room and config.room is not None:
        raise BenchError(
            "--room cannot be combined with --room-per-process: each process checks its own "
            "room's deliveries"
        )
    run_id = config.run_id or secrets.token_hex(3)
    room = config.room or f"bench-{run_id}"
    ports = ephemeral_ports()
    offset = index = 0
    configs = []
    for n, s in zip(ns, senders, strict=True):
        configs.append(
            BenchConfig(
                **{
                    **{f: getattr(config, f) for f in config.__dataclass_fields__},
                    "n": n,
                    "senders": min(s, n),
                    "source_offset": offset,
                    # handshakes in flight: the whole run's, shared, as in one process
                    "concurrency": max(1, config.concurrency // processes),
                    **({"run_id": run_id, "room": room, "index_offset": index} if shared else {}),
                }
            )
        )
        offset += len(source_addresses(n, ports))
        index += n
    return configs


def check(config: BenchConfig, processes: int, target_ip: str) -> None:
    """Say which limit stops this run (descriptors, local ports, memory) before opening anything.

    Raises ``BenchError`` with what to change.
    """
    per_process = math.ceil(config.n / processes)
    needed = per_process + FD_RESERVE
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < needed:
        least = math.ceil(config.n / max(1, hard - FD_RESERVE))
        raise BenchError(
            f"descriptors: {per_process} connections per process need {needed} file "
            f"descriptors but a process may open only {hard} (hard limit): use "
            f"--processes {least} or more, or raise the hard limit"
        )
    ports = ephemeral_ports()
    spread = config.spread if config.spread is not None else is_loopback_v4(target_ip)
    if not spread and config.n > ports:
        raise BenchError(
            f"local ports: {config.n} connections to one server from one source address "
            f"need {config.n} local ports but net.ipv4.ip_local_port_range gives {ports}: "
            f"use a 127.0.0.1 target with --spread, widen the port range, or lower -n"
        )
    check_memory(config.n)


def check_memory(n: int) -> None:
    """Raise ``BenchError`` when ``n`` connections would not fit in the available memory."""
    available = available_memory()
    wanted = n * CLIENT_BYTES_PER_CONNECTION
    if available is not None and wanted > available:
        raise BenchError(
            f"memory: {n} connections need about {wanted / 2**20:.0f} MiB in the "
            f"load generator but {available / 2**20:.0f} MiB are available: lower -n or run "
            f"the generator on another machine"
        )


def child_args(config: BenchConfig, json_path: Path) -> list[str]:
    """Return the ``wschat bench`` command line of one child."""
    args = [
        sys.executable, "-m", "wschat", "bench", "--url", config.url, "-n", str(config.n),
        "--scenario", str(config.scenario), "--protocol", str(config.protocol),
        "--size", str(config.size), "--duration", repr(config.duration_s),
        "--messages", str(config.messages), "--rate", repr(config.rate),
        "--senders", str(config.senders), "--ramp", repr(config.ramp_s),
        "--connect-timeout", repr(config.connect_timeout_s),
        "--drain-timeout", repr(config.drain_timeout_s),
        "--source-offset", str(config.source_offset),
        "--concurrency", str(config.concurrency), "--json", str(json_path),
        "--no-progress", "--histograms",
    ]  # fmt: skip
    if config.room is not None:
        args += ["--room", config.room]
    if config.run_id is not None:
        args += ["--run-id", config.run_id, "--index-offset", str(config.index_offset)]
    if config.sync_fds is not None:
        args += ["--sync-fds", ",".join(map(str, config.sync_fds))]
    if config.spread is not None:
        args.append("--spread" if config.spread else "--no-spread")
    return args


def time_bound(config: BenchConfig) -> float:
    """Return the longest a child may take: its phases' own bounds plus a start-up margin."""
    rounds = math.ceil(config.n / config.concurrency) + 1
    return (
        config.ramp_s
        + config.connect_timeout_s * (rounds + 1)
        + SETTLE_MAX_S
        + config.duration_s
        + config.reply_timeout_s
        + config.connect_timeout_s
        + config.drain_timeout_s
        + CLOSE_TIMEOUT_S
        + 3
        + SPAWN_MARGIN_S
    )


@dataclass
class Reports:
    """What the children of one run handed back."""

    docs: list[dict[str, Any]]  # the reports written, in process order
    unreported: list[str]  # "process 2 of 2: why", for each child that wrote none
    interrupted: bool  # Ctrl-C (SIGINT) reached the parent: the reports are partial


def run_children(
    configs: Sequence[BenchConfig],
    on_interrupt: Callable[[str], None] | None = None,
    meeting: Meeting | None = None,
) -> Reports:
    """Run one ``wschat bench`` per config at once; return their reports, in order.

    Raises ``BenchError`` with the child's own message when one cannot run, and kills the
    children that overrun ``time_bound``. On Ctrl-C (``KeyboardInterrupt``) each child still
    running gets one SIGINT, closes its connections and writes its partial report (it runs in
    its own process group, so a terminal's Ctrl-C reaches it only through the parent: a
    second SIGINT would cut its close short); the children get ``INTERRUPT_GRACE_S`` to do
    so, then are killed. The reports written are returned with ``interrupted`` set, and the
    children that wrote none are named in ``unreported``. A second Ctrl-C kills the children
    and raises ``KeyboardInterrupt``. ``on_interrupt`` is told, in one line, what happens next.
    ``meeting`` (a shared room) gets the children's phases; each config's ``sync_fds`` are its.
    """
    die_with_parent = _death_signal()
    with tempfile.TemporaryDirectory(prefix="wschat-bench-") as tmp:
        paths = [Path(tmp) / f"process-{i}.json" for i in range(len(configs))]
        procs: list[subprocess.Popen[bytes]] = []
        errors: dict[int, str] = {}  # why child i wrote no report (so far)
        done: set[int] = set()
        interrupted = False

        def wait(i: int, timeout: float, overran: str) -> None:
            proc, name = procs[i], f"process {i + 1} of {len(configs)}"
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                errors[i] = f"{name}: {overran} and was killed"
            else:
                text = err.decode(errors="replace").strip().splitlines()
                if text:
                    errors[i] = f"{name}: {text[-1]}"
                elif interrupted and proc.returncode == INTERRUPTED_EXIT:
                    errors[i] = f"{name}: interrupted before its first connection"
                else:
                    errors[i] = f"{name}: exit code {proc.returncode}"
            done.add(i)

        try:
            try:
                try:
                    for c, p in zip(configs, paths, strict=True):
                        procs.append(
                            subprocess.Popen(
                                child_args(c, p),
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                                env={**os.environ, "COLUMNS": "200"},
                                process_group=0,  # signalled by this parent only
                                preexec_fn=die_with_parent,
                                pass_fds=c.sync_fds or (),
                            )
                        )
                finally:
                    if meeting is not None:  # a child not started reads as one that ended
                        meeting.spawned()
                        meeting.start()
                for i, c in enumerate(configs):
                    wait(i, time_bound(c), f"overran {time_bound(c):.0f} s")
            except KeyboardInterrupt:
                interrupted = True
                if on_interrupt is not None:
                    on_interrupt(
                        f"interrupted: the processes close their connections and report "
                        f"(at most {INTERRUPT_GRACE_S:g} s; Ctrl-C again to abort)"
                    )
                for proc in procs:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGINT)
                deadline = time.monotonic() + INTERRUPT_GRACE_S
                for i in range(len(procs)):
                    if i not in done:
                        wait(
                            i,
                            max(0.0, deadline - time.monotonic()),
                            f"had not reported {INTERRUPT_GRACE_S:g} s after Ctrl-C",
                        )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if meeting is not None:
                meeting.join(5.0)  # every child has exited: its pipes have ended
        docs, unreported = [], []
        for i, path in enumerate(paths):
            ok = (0, INTERRUPTED_EXIT) if interrupted else (0,)
            doc = _read(path) if i < len(procs) and procs[i].returncode in ok else None
            if doc is not None:
                docs.append(doc)
            elif i >= len(procs):
                unreported.append(f"process {i + 1} of {len(configs)}: not started")
            else:
                unreported.append(errors.get(i, f"process {i + 1} of {len(configs)}: no report"))
        if unreported and not interrupted:
            raise BenchError("; ".join(unreported))
        return Reports(docs, unreported, interrupted)


def _death_signal() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that has a child sent SIGTERM when this process dies (Linux).

    The children are in their own process group: a terminal's hangup or a ``kill -9`` of the
    parent would otherwise leave them loading the server to the end of their run, unread.
    Elsewhere None: they run to the end of their run (bounded by ``time_bound``).
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, only called after

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def _read(path: Path) -> dict[str, Any] | None:
    """Return the report a child wrote at ``path``, or None when it wrote none (or half)."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc


def merge(
    config: BenchConfig, docs: Sequence[dict[str, Any]], room_per_process: bool = False
) -> BenchResult:
    """Add the children's reports into one result, as if one process had done all of it.

    In a shared room (``shares_room``) each child has already counted its receivers'
    losses against every process's senders (``barrier``): the counts add up as they are.
    """
    stats = BenchStats()
    errors: Counter[str] = Counter()
    for doc in docs:
        summary = doc["summary"]
        conns, messages = summary["connections"], summary["messages"]
        stats.attempted += conns["attempted"]
        stats.opened += conns["opened"]
        stats.sent += messages["sent"]
        stats.expected += messages["expected"]
        stats.delivered += messages["delivered"]
        stats.lost += messages["lost"]
        stats.missed_while_closed += messages["missed_while_closed"]
        stats.refused.update(summary["errors"]["refused_by_code"])
        stats.duplicates += messages["duplicates"]
        stats.reordered += messages["reordered"]
        stats.foreign += messages["foreign"]
        stats.sent_bytes += summary["throughput"]["sent_bytes"]
        stats.received_bytes += summary["throughput"]["received_bytes"]
        errors.update(summary["errors"]["by_kind"])
        merge_histograms(stats, doc[HISTOGRAMS])
    stats.errors = errors
    stats.series = _merge_series([doc["series"] for doc in docs])
    ports = ephemeral_ports()
    sources: tuple[str, ...] = ()
    for doc in docs:
        if doc["summary"]["generator"]["source_addresses"]:
            sources += source_addresses(doc["config"]["n"], ports, len(sources))
    generator = [doc["summary"]["generator"] for doc in docs]
    plan = Plan(config.n, min(g["fd_limit"] for g in generator), -1, sources, ports)
    shared = shares_room(config, room_per_process)
    result = BenchResult(
        config,
        docs[0]["run_id"] if shared else secrets.token_hex(3),
        ", ".join(dict.fromkeys(doc["config"]["room"] for doc in docs)),
        Dialect(docs[0]["config"]["dialect"]),
        plan,
        stats,
        connect_s=max(doc["summary"]["connections"]["connect_s"] for doc in docs),
        load_s=max(doc["summary"]["throughput"]["load_s"] for doc in docs),
        load_started=min(doc["summary"]["throughput"]["load_started_unix"] for doc in docs),
        cpu=sum(g["cpu"] for g in generator),  # cores: each process has its own
        unsent=sum(doc["summary"]["messages"]["unsent"] for doc in docs),
        cancelled=sum(doc["summary"]["messages"]["cancelled_by_close"] for doc in docs),
    )
    result.shared_room = shared
    limited = [f"process {i + 1}: {g['reason']}" for i, g in enumerate(generator) if g["limited"]]
    result.limited_by_generator = "; ".join(limited) or None
    return result


def _merge_series(series: Sequence[Sequence[dict[str, Any]]]) -> list[Sample]:
    """Add the children's one-second series second by second (counters summed).

    A second's percentiles cannot be merged from summaries: the merged second shows the worst
    process's p50, p99 and max.
    """
    merged = []
    for seconds in zip(*series, strict=False):

        def worst(key: str, seconds: Sequence[dict[str, Any]] = seconds) -> float | None:
            values = [s[key] for s in seconds if s[key] is not None]
            return max(values) if values else None

        merged.append(
            Sample(
                t_s=max(s["t_s"] for s in seconds),
                open=sum(s["open"] for s in seconds),
                sent=sum(s["sent"] for s in seconds),
                delivered=sum(s["delivered"] for s in seconds),
                errors=sum(s["errors"] for s in seconds),
                p50_ms=worst("p50_ms"),
                p99_ms=worst("p99_ms"),
                max_ms=worst("max_ms"),
                cpu=round(sum(s["cpu"] for s in seconds), 3),
                lag_ms=max(s["lag_ms"] for s in seconds),
            )
        )
    return merged


def target_address(url: str) -> str:
    """Return the IP address ``url``'s host resolves to; raise ``BenchError`` when it does not."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise BenchError(f"--url must look like ws://HOST:PORT, not {url!r}")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BenchError(f"cannot resolve {parts.hostname!r}: {exc.strerror}") from None
    return str(infos[0][4][0])


def run_processes(
    config: BenchConfig,
    processes: int,
    target_ip: str,
    on_interrupt: Callable[[str], None] | None = None,
    room_per_process: bool = False,
) -> BenchResult:
    """Check the limits, run ``processes`` children and return their merged result.

    Fan-out and chat share one room unless ``room_per_process`` (see ``child_configs``).

    On Ctrl-C the result merges the partial reports the children wrote, is marked
    ``partial`` and names in ``unreported`` the children that wrote none (see
    ``run_children``); raises ``KeyboardInterrupt`` when none wrote one.
    """
    check(config, processes, target_ip)
    configs = child_configs(config, processes, room_per_process)
    meeting = None
    if shares_room(config, room_per_process):
        meeting = Meeting(processes)
        configs = [replace(c, sync_fds=meeting.child_fds(i)) for i, c in enumerate(configs)]
    reports = run_children(configs, on_interrupt, meeting)
    if not reports.docs:  # interrupted before any child had opened its first connection
        raise KeyboardInterrupt
    result = merge(config, reports.docs, room_per_process)
    result.partial = reports.interrupted
    result.unreported = tuple(reports.unreported)
    return result
