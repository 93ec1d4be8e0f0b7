"""Stages 0-5 measured in one run: proxies, their memory, latency, config objects, blast radius.

    .venv/bin/python benchmarks/stages.py [-n 300]

Ratios are against stage 0 (the shop with no proxy), measured in the same run.
"""

from __future__ import annotations

import argparse

from _common import private_state

import meshlab
from meshlab import compare, stages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300, help="requests per traffic run")
    args = parser.parse_args()
    rows = []
    with private_state():
        for stage in stages.deployable():
            with meshlab.Lab(f"bench-stage{stage}") as lab:
                lab.up(stage=stage, quiet=True)
                rows.append(compare.measure(lab, n=args.n))
    base = rows[0]
    print(compare.table(rows))
    print()
    print("| stage | p50 vs stage 0 | p99 vs stage 0 | blast radius of that one failure |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r.stage} {r.key} | {r.p50_ms / base.p50_ms:.2f}x | {r.p99_ms / base.p99_ms:.2f}x | {r.blast} |")


if __name__ == "__main__":
    main()
