"""Compare server CPU per delivery of two checkouts of wschat, interleaved, in one run.

A single run of ``run.py`` per version is at the mercy of whatever else the machine does in
those minutes; alternating the two versions round by round spreads that noise over both. Each
round runs the same ``run.py`` fan-out (1000 receivers, ``--rate`` msg/s for 10 s) against
``wschat serve`` from ``--before`` and then from ``--after`` (each put first on PYTHONPATH of
the server and bench processes), and prints the median µs per delivered message of each.

    git worktree add /tmp/before 030c968
    python benchmarks/ab.py --before /tmp/before --after . --rounds 4
    python benchmarks/ab.py --before /tmp/before --after . --rate 100 --rounds 3

Every run is bounded (``run.py``'s limits); everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from statistics import median

import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of wschat")
    parser.add_argument("--after", type=Path, required=True, help="another checkout")
    parser.add_argument("--protocol", choices=["plain", "v1"], default="plain")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s of the sender")
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    kind = next(k for k in run.SERVERS if k.name == "wschat")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    figures: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, tree in trees.items():
                os.environ["PYTHONPATH"] = str(tree)
                result = run.fanout(
                    kind,
                    Path(tmp),
                    args.receivers,
                    ["--rate", str(args.rate)],
                    10.0,
                    args.protocol,
                )
                delivered = run._summary(result)["messages"]["delivered"]
                cpu = result["server"]["load_cpu_s"]
                if delivered and cpu is not None:
                    figures[name].append(cpu / delivered * 1e6)
                    print(f"{name}: {figures[name][-1]:.2f} µs", file=sys.stderr, flush=True)
    for name, values in figures.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name}: median {median(values):.2f} µs per delivery ({shown})")
    ratio = median(figures["after"]) / median(figures["before"])
    print(f"after / before: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
