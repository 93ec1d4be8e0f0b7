"""Local bring-up time of stages 0 and 1 (median of 3), against the bare runtime as baseline.

    .venv/bin/python benchmarks/bringup.py [--repeat 3]
"""

from __future__ import annotations

import argparse

import _common as c

import meshlab

CASES = (("runtime only (supervisor, DNS, no objects)", None), ("stage 0: the shop, no proxy", 0),
         ("stage 1: the shop behind the edge Envoy", 1))


def bring_up(stage) -> tuple[float, float, int]:
    """(seconds until up() returns with every pod ready, seconds for down(), processes started)."""
    lab = meshlab.Lab("bench-up")
    try:
        up = c.timed(lambda: lab.backend.up(nodes=3) if stage is None else lab.up(stage=stage, quiet=True))
        processes = len(lab.backend.status()["pods"]) + 1 if stage is not None else 1
    finally:
        down = c.timed(lab.down)
    return up, down, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with c.private_state():
        bring_up(1)  # warm-up, not counted: first imports, page cache
        times = {stage: [] for _, stage in CASES}
        for _ in range(args.repeat):  # interleaved, so drift hits every case alike
            for _, stage in CASES:
                times[stage].append(bring_up(stage))
    base = c.median([t[0] for t in times[0]])
    rows = []
    for label, stage in CASES:
        ups, downs = [t[0] for t in times[stage]], [t[1] for t in times[stage]]
        rows.append([label, times[stage][0][2], f"{c.median(ups):.2f}", f"{min(ups):.2f}", f"{max(ups):.2f}",
                     f"{c.median(downs):.2f}", c.ratio(c.median(ups), base)])
    print(f"Local bring-up, median of {args.repeat} ({c.machine()})\n")
    print(c.table(["what", "processes", "up s (median)", "min", "max", "down s", "up vs stage 0"], rows))


if __name__ == "__main__":
    main()
