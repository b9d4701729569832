"""Measure wschat against the article's pattern, plain websockets and Node's ``ws``, in one run.

Starts each server in turn on a free 127.0.0.1 port — the article's ConnectionManager
(``article_server.py``), a python-websockets server using ``broadcast()``
(``websockets_server.py``), Node's ``ws`` (``node/server.js``; ``npm ci`` there first, into
``benchmarks/node/node_modules``) and ``wschat serve`` — drives each with the same ``wschat bench``
scenarios, samples the server's CPU time and RSS from outside with psutil, and writes a
Markdown report (``docs/performance.md`` by default) with the table, the machine and the
command.

    python benchmarks/run.py                 # the full run (about 20 minutes; a quiet machine)
    python benchmarks/run.py --smoke --out /tmp/perf.md   # seconds; what CI runs

Server CPU per delivered message is the server's CPU time while messages flowed (from the
bench's first send to its last delivery, sampled every 0.1 s) divided by the messages
delivered; connection set-up is not counted. Server CPU per connect is its CPU from the bench's
start to the end of its connect phase divided by the connections opened; per echo round trip,
its CPU during the echo load divided by the round trips. wschat runs with ``--presence-limit 0`` (no
joined/left: the baselines have no presence) and no rate limit or connection caps. Every run is bounded in
count and time, and everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import psutil
import scale
from floor import measure_floor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Sizes:
    fanout_n: int = 1000
    fanout_rate: float = 20.0
    flood_senders: int = 4  # "as fast as possible": closed-loop senders to fanout_n receivers
    # the same flood from a generator spread over this many processes (one shared room), so
    # that one asyncio process reading fanout_n sockets is not the ceiling
    flood_processes: int = 2
    latency_n: int = 500
    latency_rate: float = 200.0
    idle_n: int = 5000
    echo_n: int = 50
    many_n: int = 10_000
    duration: float = 10.0
    repeats: int = 3


SMOKE = Sizes(
    fanout_n=20,
    fanout_rate=20,
    flood_senders=2,
    latency_n=20,  # = the fan-out run's size and rate: its p99 stands for this one
    latency_rate=20,
    idle_n=50,
    echo_n=4,
    many_n=50,  # = idle_n: the idle run's figures stand for it (one server start fewer)
    duration=1.0,
    repeats=1,
)
NODE_DIR = HERE / "node"
SCALE_MARK = "<!-- scale rows -->"


@dataclass
class ScaleSizes:
    fd_limit: int | None = None  # one process: None = the limit it inherits (ulimit -Hn)
    one_messages: int = 100
    one_rate: float = 1.0
    machine_n: int = 60_000
    workers: int = 4
    processes: int = 4
    machine_messages: int = 20
    machine_rate: float = 0.5


SCALE_SMOKE = ScaleSizes(
    fd_limit=160,
    one_messages=3,
    one_rate=5,
    machine_n=60,
    workers=2,
    processes=2,
    machine_messages=3,
    machine_rate=5,
)


def measure_scale(sizes: Sizes) -> dict[str, Any]:
    """Run ``scale.py``'s two measurements (tiny ones with ``--smoke``)."""
    s = SCALE_SMOKE if sizes.idle_n == SMOKE.idle_n else ScaleSizes()
    with tempfile.TemporaryDirectory() as tmp:
        print("measuring one process at its descriptor limit ...", file=sys.stderr, flush=True)
        one = scale.one_process(Path(tmp), s.fd_limit, s.one_messages, s.one_rate)
        print(json.dumps(one), file=sys.stderr, flush=True)
        print(f"measuring {s.machine_n:,} connections on one machine ...", file=sys.stderr)
        machine = scale.machine(
            Path(tmp), s.machine_n, s.workers, s.processes, s.machine_messages, s.machine_rate
        )
        print(json.dumps(machine), file=sys.stderr, flush=True)
    return {"one": one, "machine": machine, "sizes": s}


def render_scale(rows: dict[str, Any], sizes: Sizes) -> str:
    """Return the scale table: one process at its descriptor limit; N workers on one machine."""
    if not rows:
        return "Scale rows: not measured in this run (--no-scale or --rows)."
    one, machine, s = rows["one"], rows["machine"], rows["sizes"]
    head = (
        "| scale | connections held (of attempted) | failed | fan-out lost (of expected) | "
        "RSS | RSS per connection | time to connect all | connects/s | server CPU per connect |"
    )
    lines = [
        "**Scale** (`benchmarks/scale.py`, run by `run.py`; server CPU and RSS summed over the "
        "server's processes, sampled from outside):",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for title, row in (
        (
            f"one `wschat serve` process at its descriptor limit ({one['fd_limit']:,}: it "
            f"said it accepts {one['capacity']:,}), one bench process, "
            f"{s.one_messages} messages to all in one room",
            one,
        ),
        (
            f"`wschat serve --workers {s.workers} --broker redis://…`, `wschat bench "
            f"--processes {s.processes} --room-per-process --scenario fanout -n {s.machine_n}` "
            f"({s.processes} "
            f"rooms, each spread over all workers), {s.machine_messages} messages per room",
            machine,
        ),
    ):
        lines.append(
            f"| {title} | {row['opened']:,} of {row['attempted']:,} | {row['failed']} | "
            f"{row['lost']:,} of {row['expected']:,} | {row['rss_mib']:,} MiB | "
            f"{row['rss_kb_per_conn']:.1f} KB | {row['connect_s']:.1f} s | "
            f"{row['connects_per_s']:,} | {row['cpu_ms_per_connect']:.3f} ms |"
        )
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerKind:
    name: str
    label: str

    def command(self, port: int, workdir: Path) -> list[str]:
        if self.name == "article":
            return [sys.executable, str(HERE / "article_server.py"), str(port)]
        if self.name == "websockets":
            return [sys.executable, str(HERE / "websockets_server.py"), str(port)]
        if self.name == "node":
            return ["node", str(NODE_DIR / "server.js"), str(port)]
        db = workdir / f"history-{port}.sqlite3"
        return [
            sys.executable, "-m", "wschat", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--db", str(db), "--log-level", "warning",
            # Raw capacity, as the baselines have no limits: no rate limit, caps above the load.
            "--rate-limit", "0", "--max-connections", "20000", "--max-connections-per-ip", "20000",
            "--presence-limit", "0",
        ]  # fmt: skip


SERVERS = [
    ServerKind("article", "article's ConnectionManager"),
    ServerKind("websockets", "websockets broadcast()"),
    ServerKind("node", "Node ws"),
    ServerKind("wschat", "wschat serve"),
]


def node_ready() -> str:
    """Install Node's ``ws`` into ``benchmarks/node`` (``npm ci``, once); return its version.

    Raises ``RuntimeError`` saying what to install when node or npm is missing.
    """
    package = NODE_DIR / "node_modules" / "ws" / "package.json"
    if not package.exists():
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeError(
                "npm is not installed: install Node.js and npm (apt-get install nodejs npm), "
                "or leave Node out with --only"
            ) from None
        if done.returncode != 0:
            raise RuntimeError(f"npm ci in {NODE_DIR} failed: {done.stderr[-2000:]}")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
    return f"ws {json.loads(package.read_text())['version']} on Node {node.stdout.strip()}"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    ps: psutil.Process
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # unix t, cpu_s, rss
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def sample_while(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.1):
                try:
                    self.samples.append((time.time(), self.cpu(), self.rss()))
                except psutil.Error:
                    return

        self._stop.clear()
        self.samples = []
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def start(kind: ServerKind, workdir: Path) -> Running:
    port = free_port()
    proc = subprocess.Popen(
        kind.command(port, workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60  # a loaded machine: 20 s was once not enough
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind.name} exited with {proc.returncode}") from None
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"{kind.name} did not start")
    time.sleep(0.3)
    return Running(proc, port, psutil.Process(proc.pid))


def stop(server: Running) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(5)


def bench(server: Running, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``wschat bench`` against ``server``; return its JSON report and the server's CPU."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    cmd = [
        sys.executable, "-m", "wschat", "bench", "--url", f"ws://127.0.0.1:{server.port}",
        "--json", str(out), "--no-progress", *args,
    ]  # fmt: skip
    cpu0 = server.cpu()
    rss0 = server.rss()
    server.sample_while()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        server.stop_sampling()
    cpu1 = server.cpu()
    if done.returncode not in (0, 3) or not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"bench failed ({done.returncode}): {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    throughput = report["summary"]["throughput"]
    start = throughput.get("load_started_unix", 0.0)
    window = [c for t, c, _ in server.samples if start <= t <= start + throughput["load_s"]]
    connecting = [c for t, c, _ in server.samples if t <= start]
    report["server"] = {
        "cpu_s": cpu1 - cpu0,
        # CPU from the bench's start to the end of its connect phase (sampled every 0.1 s)
        "connect_cpu_s": connecting[-1] - cpu0 if connecting and start else None,
        # CPU while messages flowed (first send to last delivery), sampled every 0.1 s
        "load_cpu_s": window[-1] - window[0] if len(window) > 1 else None,
        "rss_before": rss0,
        "rss_peak": max((s[2] for s in server.samples), default=rss0),
    }
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return report["summary"]  # type: ignore[no-any-return]


def fanout(
    kind: ServerKind, workdir: Path, n: int, load: list[str], duration: float, protocol: str
) -> dict[str, Any]:
    """Start a fresh ``kind`` server, run one fan-out scenario against it, stop it.

    ``load`` is the bench's load flags: ``["--rate", "20"]``, or ``["--rate", "0", "--senders",
    "4"]`` for closed-loop senders, as fast as the server answers.
    """
    server = start(kind, workdir)
    try:
        return bench(
            server, "-n", str(n), "--scenario", "fanout", *load,
            "--duration", str(duration), "--protocol", protocol,
        )  # fmt: skip
    finally:
        stop(server)


def connect(kind: ServerKind, workdir: Path, n: int, hold_s: float) -> dict[str, Any]:
    """Start a fresh ``kind`` server, open ``n`` plain chat sockets, hold them, stop it."""
    server = start(kind, workdir)
    try:
        return bench(server, "-n", str(n), "--scenario", "connect", "--duration", f"{hold_s:g}",
                     "--protocol", "plain", "--connect-timeout", "30")  # fmt: skip
    finally:
        stop(server)


def echo_run(kind: ServerKind, workdir: Path, n: int, duration: float) -> dict[str, Any]:
    """Start a fresh ``kind`` server, run ``n`` closed-loop echo clients on ``/ws``, stop it."""
    server = start(kind, workdir)
    try:
        return bench(server, "-n", str(n), "--scenario", "echo", "--rate", "0",
                     "--duration", str(duration))  # fmt: skip
    finally:
        stop(server)


def cpu_ms_per_connect(report: dict[str, Any]) -> float | None:
    """Return the server's CPU per opened connection (ms) of a ``connect`` run."""
    return _per(report["server"]["connect_cpu_s"], _summary(report)["connections"]["opened"], 1e3)


def cpu_us_per_echo(report: dict[str, Any]) -> float | None:
    """Return the server's CPU per echo round trip (µs) of an ``echo_run``."""
    return _per(report["server"]["load_cpu_s"], _summary(report)["messages"]["delivered"])


def _per(cpu: float | None, count: int, scale: float = 1e6) -> float | None:
    return cpu / count * scale if cpu is not None and count else None


def _median(values: list[float]) -> float | None:
    return median(values) if values else None


ROWS = ("fanout", "flood", "connect", "echo", "latency")  # --rows: groups of the table's rows


def measure(
    kind: ServerKind, sizes: Sizes, workdir: Path, rows: tuple[str, ...] = ROWS
) -> dict[str, Any]:
    """Run the scenarios of ``rows`` against one server kind; return the figures for the table."""
    figures: dict[str, Any] = {"limited": [], "fanout_lost": 0}
    n, duration = sizes.fanout_n, sizes.duration
    runs = []
    if "fanout" in rows:
        runs.append(("plain", ["--rate", str(sizes.fanout_rate)], "plain"))
        if kind.name == "wschat":
            runs.append(("v1", ["--rate", str(sizes.fanout_rate)], "v1"))
    if "flood" in rows:
        flood = ["--rate", "0", "--senders", str(sizes.flood_senders)]
        runs.append(("plain", flood, "flood"))
        # the same flood, the generator spread over processes: all receivers in one room
        processes = ["--processes", str(sizes.flood_processes)]
        runs.append(("plain", [*flood, *processes], "flood_processes"))
    same_latency = (sizes.latency_n, sizes.latency_rate) == (n, sizes.fanout_rate)
    p99s: list[float] = []
    for protocol, load, key in runs:
        per_delivery: list[float] = []
        per_s: list[float] = []
        for _ in range(sizes.repeats):
            run = fanout(kind, workdir, n, load, duration, protocol)
            messages = _summary(run)["messages"]
            if same_latency and key == "plain" and _summary(run)["latency_ms"]:
                p99s.append(_summary(run)["latency_ms"]["p99_ms"])
            cpu = _per(run["server"]["load_cpu_s"], messages["delivered"])
            if cpu is not None:  # None: the load was too short to sample
                per_delivery.append(cpu)
            per_s.append(_summary(run)["throughput"]["delivered_per_s"])
            figures["fanout_lost"] += messages["lost"]
            if _summary(run)["generator"]["limited"]:
                figures["limited"].append(f"fanout/{key}")
        figures[f"cpu_us_per_delivery_{key}"] = _median(per_delivery)
        figures[f"deliveries_per_s_{key}"] = _median(per_s)
    if "connect" in rows:
        _measure_connect(kind, sizes, workdir, figures)
    if "echo" in rows:
        _measure_echo(kind, sizes, workdir, figures)
    if "latency" in rows:
        rate = ["--rate", str(sizes.latency_rate)]
        for _ in range(0 if same_latency else sizes.repeats):
            lat = fanout(kind, workdir, sizes.latency_n, rate, duration, "plain")
            latency = _summary(lat)["latency_ms"]
            if latency:
                p99s.append(latency["p99_ms"])
            if _summary(lat)["generator"]["limited"]:
                figures["limited"].append(f"latency at {sizes.latency_rate:g}/s")
    figures["p99_ms"] = _median(p99s)
    figures["p99_all"] = p99s
    return figures


def _measure_connect(
    kind: ServerKind, sizes: Sizes, workdir: Path, figures: dict[str, Any]
) -> None:
    """Measure the connect rows (and the connections-held rows) into ``figures``."""
    duration = sizes.duration
    per_connect: list[float] = []
    connects: list[float] = []
    rss: list[float] = []
    for _ in range(sizes.repeats):
        idle = connect(kind, workdir, sizes.idle_n, min(3.0, duration))
        s, conns = idle["server"], _summary(idle)["connections"]
        opened = conns["opened"]
        rss.append((s["rss_peak"] - s["rss_before"]) / max(1, opened) / 1024)
        cpu = cpu_ms_per_connect(idle)
        if cpu is not None:
            per_connect.append(cpu)
        connects.append(opened / max(1e-9, conns["connect_s"]))
    figures["rss_kb_per_conn"] = _median(rss)
    figures["cpu_ms_per_connect"] = _median(per_connect)
    figures["connects_per_s"] = _median(connects)
    if sizes.many_n == sizes.idle_n:
        many = idle
    else:
        server = start(kind, workdir)
        try:
            many = bench(server, "-n", str(sizes.many_n), "--scenario", "connect", "--duration", "3",
                         "--protocol", "plain", "--connect-timeout", "30")  # fmt: skip
        finally:
            stop(server)
    conns = _summary(many)["connections"]
    figures["many_opened"] = conns["opened"]
    figures["many_failed"] = conns["attempted"] - conns["opened"]


def _measure_echo(kind: ServerKind, sizes: Sizes, workdir: Path, figures: dict[str, Any]) -> None:
    """Measure the echo row into ``figures``."""
    duration = sizes.duration
    per_trip: list[float] = []
    for _ in range(sizes.repeats):
        echo = echo_run(kind, workdir, sizes.echo_n, duration)
        trip = cpu_us_per_echo(echo)
        if trip is not None:
            per_trip.append(trip)
        if _summary(echo)["generator"]["limited"]:
            figures["limited"].append("echo")
    figures["cpu_us_per_echo"] = _median(per_trip)


def _commit() -> str:
    """Return the commit measured (and whether the tree had changes), or "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes" if dirty else "")


def fmt(value: Any, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def render(
    results: dict[str, dict[str, Any]],
    sizes: Sizes,
    command: str,
    took: float,
    floors: list[dict[str, Any]] | None = None,
    node: str = "not measured",
) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = cpu
    lines = [
        "# Performance",
        "",
        "Measured by `benchmarks/run.py`, which starts each server in turn on one machine and",
        "drives it with the same `wschat bench` scenarios; server CPU and RSS are sampled from",
        "outside (psutil). Medians of the repeats; loopback; one server process each.",
        "Its dependencies: `pip install -e '.[bench]'`.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {model}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        f"- Commit: {_commit()}",
        f"- Node reference: {node}",
        f"- Took {took / 60:.1f} min; repeats per figure: {sizes.repeats}",
        "",
        "| figure | target | " + " | ".join(k.label for k in SERVERS) + " |",
        "|---|---|" + "---|" * len(SERVERS),
    ]

    def row(title: str, target: str, key: str, spec: str = ".1f") -> None:
        cells = [fmt(results[k.name].get(key), spec) for k in SERVERS]
        lines.append(f"| {title} | {target} | " + " | ".join(cells) + " |")

    row(
        f"server CPU per delivered message, fan-out to {sizes.fanout_n} "
        f"at {sizes.fanout_rate:g} msg/s (µs)",
        "≤ 4",
        "cpu_us_per_delivery_plain",
        ".2f",
    )
    row("same, wschat.v1 JSON path (µs)", "within 20 % of plain", "cpu_us_per_delivery_v1", ".2f")
    flood = f"{sizes.fanout_n} receivers, {sizes.flood_senders} closed-loop senders"
    row(f"deliveries/s, {flood} (as fast as possible)", "≥ 2 x Node's",
        "deliveries_per_s_flood", ",.0f")  # fmt: skip
    row("server CPU per delivery, same (µs)", "≤ 0.5 x Node's", "cpu_us_per_delivery_flood", ".2f")
    spread = f"same, the generator in {sizes.flood_processes} processes (one shared room)"
    row(f"deliveries/s, {spread}", "≥ 2 x Node's", "deliveries_per_s_flood_processes", ",.0f")
    row("server CPU per delivery, same (µs)", "≤ 0.5 x Node's",
        "cpu_us_per_delivery_flood_processes", ".2f")  # fmt: skip
    row(f"server CPU per connect ({sizes.idle_n} connections) (ms)", "≤ Node's",
        "cpu_ms_per_connect", ".3f")  # fmt: skip
    row("connects/s, same", "—", "connects_per_s", ",.0f")
    row(f"RSS per idle connection at {sizes.idle_n} (KB)", "≤ Node's", "rss_kb_per_conn")
    row(f"server CPU per echo round trip ({sizes.echo_n} clients) (µs)", "≤ Node's",
        "cpu_us_per_echo", ".1f")  # fmt: skip
    row(
        f"p99 fan-out latency, {sizes.latency_n} receivers x {sizes.latency_rate:g} msg/s (ms)",
        "≤ 5",
        "p99_ms",
    )
    row(f"connections held of {sizes.many_n}", f"{sizes.many_n}", "many_opened", "d")
    row("connections failed", "0", "many_failed", "d")
    row("fan-out messages lost (all fan-out runs)", "0", "fanout_lost", "d")
    limited = {k.name: results[k.name]["limited"] for k in SERVERS}
    lines.append(
        "| load generator the bottleneck? | no | "
        + " | ".join(("yes: " + ", ".join(sorted(set(v)))) if v else "no" for v in limited.values())
        + " |"
    )
    if floors:
        at = "; ".join(
            f"**{f['us_per_send']:.2f} µs per send** at {f['rate']:g} times a second "
            f"({f['system_us_per_send']:.2f} µs of it in the kernel)"
            for f in floors
        )
        lines += [
            "",
            f"**The kernel's floor.** A bare Python loop that sends one 66-byte frame to each of "
            f"{floors[0]['n']} loopback sockets (`benchmarks/floor.py`: no WebSocket, no "
            f"framework; a reader process drains them) costs {at} on this machine (medians of "
            f"{sizes.repeats}). One `send()` per receiver per message is the least any of these "
            "servers can do, so that is the floor under the CPU rows.",
        ]
    lines += [
        "",
        SCALE_MARK,
        "",
        "All p99 samples (ms): "
        + "; ".join(
            f"{k.label}: " + ", ".join(f"{x:.1f}" for x in results[k.name].get("p99_all", []))
            for k in SERVERS
        ),
        "",
    ]
    notes = HERE / "notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for CI")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--only", choices=[k.name for k in SERVERS], action="append")
    parser.add_argument("--no-scale", action="store_true", help="leave out the scale rows")
    parser.add_argument(
        "--rows",
        choices=ROWS,
        action="append",
        help="measure only these groups of rows (repeatable; default all): fanout (the 20 msg/s "
        "rows and the kernel's floor), flood (as fast as possible, one and several generator "
        "processes), connect (connects, RSS, connections held), echo, latency; the scale rows "
        "only in a run of all",
    )
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3; 1 with --smoke)")
    parser.add_argument("--save", type=Path, help="write the four servers' figures (JSON) here")
    parser.add_argument(
        "--load", type=Path, help="take the figures from a --save file (re-render only)"
    )
    args = parser.parse_args()
    saved: dict[str, Any] = json.loads(args.load.read_text()) if args.load else {}
    sizes = SMOKE if args.smoke else Sizes()
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:])
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    node = node_ready() if not args.only or "node" in args.only else "not measured"
    with tempfile.TemporaryDirectory() as tmp:
        for kind in SERVERS:
            if args.load:
                results[kind.name] = saved["servers"][kind.name]
                continue
            if args.only and kind.name not in args.only:
                results[kind.name] = {"limited": []}
                continue
            print(f"measuring {kind.label} ...", file=sys.stderr, flush=True)
            results[kind.name] = measure(kind, sizes, Path(tmp), tuple(args.rows or ROWS))
            print(json.dumps(results[kind.name]), file=sys.stderr, flush=True)
    floors: list[dict[str, Any]] = saved.get("floors", [])
    if not args.only and not args.load and (not args.rows or "fanout" in args.rows):
        print("measuring the kernel's floor ...", file=sys.stderr, flush=True)
        for rate in (sizes.fanout_rate,):
            runs = [
                measure_floor(sizes.fanout_n, rate, sizes.duration) for _ in range(sizes.repeats)
            ]
            floors.append(sorted(runs, key=lambda f: float(f["us_per_send"]))[len(runs) // 2])
    if args.load:
        node = saved.get("node", node)
    scale_rows: dict[str, Any] = {}
    if args.load and "scale" in saved:
        scale_rows = {**saved["scale"], "sizes": ScaleSizes(**saved["scale"]["sizes"])}
    elif not args.no_scale and not args.rows:
        scale_rows = measure_scale(sizes)
    if args.save:
        to_save: dict[str, Any] = {
            "servers": results,
            "node": node,
            "floors": floors,
            "command": command,
            "took": time.monotonic() - started,
        }
        if scale_rows:  # not measured with --no-scale or --rows
            to_save["scale"] = {**scale_rows, "sizes": dataclasses.asdict(scale_rows["sizes"])}
        args.save.write_text(json.dumps(to_save))
    took = time.monotonic() - started
    if args.load:  # a re-render shows the run that measured
        command, took = saved.get("command", command), saved.get("took", took)
    report = render(results, sizes, command.strip(), took, floors, node)
    report = report.replace(SCALE_MARK, render_scale(scale_rows, sizes))
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
