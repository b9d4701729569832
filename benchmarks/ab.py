"""Compare server CPU of two checkouts of wschat, interleaved, in one run.

A single run of ``run.py`` per version is at the mercy of whatever else the machine does in
those minutes; alternating the two versions round by round spreads that noise over both. Each
round runs the same ``run.py`` scenario against ``wschat serve`` from ``--before`` and then
from ``--after`` (each put first on PYTHONPATH of the server and bench processes), and prints
the median of each:

- ``fanout`` (the default): 1000 receivers, ``--rate`` msg/s for 10 s; µs per delivery;
- ``connect``: ``--connections`` plain chat sockets (``run.py``'s idle row); ms per connect;
- ``echo``: ``--clients`` closed-loop echo clients on ``/ws`` for 10 s; µs per round trip.

With ``--node`` each round also measures Node's ``ws`` (``benchmarks/node``) in the same
scenario, the reference of issue 19.

    git worktree add /tmp/before 030c968
    python benchmarks/ab.py --before /tmp/before --after . --rounds 4
    python benchmarks/ab.py --before /tmp/before --after . --rate 100 --rounds 3
    python benchmarks/ab.py --before /tmp/before --after . --scenario connect --node

Every run is bounded (``run.py``'s limits); everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

import run

UNITS = {"fanout": "µs per delivery", "connect": "ms per connect", "echo": "µs per round trip"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of wschat")
    parser.add_argument("--after", type=Path, required=True, help="another checkout")
    parser.add_argument("--scenario", choices=list(UNITS), default="fanout")
    parser.add_argument("--protocol", choices=["plain", "v1"], default="plain", help="fanout")
    parser.add_argument("--rate", type=float, default=20.0, help="fanout: messages/s of the sender")
    parser.add_argument("--receivers", type=int, default=1000, help="fanout")
    parser.add_argument("--connections", type=int, default=5000, help="connect")
    parser.add_argument("--clients", type=int, default=50, help="echo")
    parser.add_argument("--duration", type=float, default=10.0, help="fanout, echo: seconds")
    parser.add_argument("--node", action="store_true", help="measure Node's ws too each round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    wschat = next(k for k in run.SERVERS if k.name == "wschat")
    node = next(k for k in run.SERVERS if k.name == "node")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    names = [*trees, "node"] if args.node else list(trees)
    if args.node:
        print(run.node_ready(), file=sys.stderr)
    figures: dict[str, list[float]] = {name: [] for name in names}
    unit = UNITS[args.scenario]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in names:
                if name in trees:
                    os.environ["PYTHONPATH"] = str(trees[name])
                kind = node if name == "node" else wschat
                figure = measure(kind, Path(tmp), args)
                if figure is not None:
                    figures[name].append(figure)
                    print(f"{name}: {figure:.3f} {unit}", file=sys.stderr, flush=True)
    for name, values in figures.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"{name}: median {median(values):.3f} {unit} ({shown})")
    ratio = median(figures["after"]) / median(figures["before"])
    print(f"after / before: {ratio:.3f}")
    if args.node:
        print(f"after / node: {median(figures['after']) / median(figures['node']):.3f}")
    return 0


def measure(kind: run.ServerKind, workdir: Path, args: argparse.Namespace) -> float | None:
    """Run one scenario against a fresh server of ``kind``; return its CPU figure."""
    result: dict[str, Any]
    if args.scenario == "connect":
        result = run.connect(kind, workdir, args.connections, 3.0)
        return run.cpu_ms_per_connect(result)
    if args.scenario == "echo":
        result = run.echo_run(kind, workdir, args.clients, args.duration)
        return run.cpu_us_per_echo(result)
    result = run.fanout(
        kind, workdir, args.receivers, ["--rate", str(args.rate)], args.duration, args.protocol
    )
    delivered = run._summary(result)["messages"]["delivered"]
    cpu = result["server"]["load_cpu_s"]
    return cpu / delivered * 1e6 if delivered and cpu is not None else None


if __name__ == "__main__":
    sys.exit(main())
