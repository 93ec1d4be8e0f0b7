"""Stages 0-6 measured in one run: proxies, their memory, latency, config objects, blast radius; for stage 6 also
calls that cross to cluster-2 against calls that stay in cluster-1, and the locality failover.

    .venv/bin/python benchmarks/stages.py [-n 300] [--stages 0,6]

Ratios are against stage 0 (the shop with no proxy), or the first stage measured, in the same run; stage 6's
crossing calls against its calls that stay in cluster-1, in the same run.
"""

from __future__ import annotations

import argparse

from _common import private_state

import meshlab
from meshlab import compare, compare_multicluster, stages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300, help="requests per traffic run (stage 6: also in-pod calls)")
    parser.add_argument("--stages", help="comma-separated stage numbers, e.g. 0,6 (default: every deployable stage)")
    args = parser.parse_args()
    numbers = [stages.number(s.strip()) for s in args.stages.split(",")] if args.stages else stages.deployable()
    rows = []
    with private_state():
        for stage in numbers:
            with meshlab.Lab(f"bench-stage{stage}") as lab:
                lab.up(stage=stage, quiet=True)
                rows.append(compare.measure(lab, n=args.n))
    base = rows[0]
    print(compare.table(rows))
    print()
    print(f"| stage | p50 vs stage {base.stage} | p99 vs stage {base.stage} | blast radius of that one failure |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r.stage} {r.key} | {r.p50_ms / base.p50_ms:.2f}x | {r.p99_ms / base.p99_ms:.2f}x | {r.blast} |")
    if any(r.cross is not None for r in rows):
        print()
        print(compare_multicluster.table(rows))


if __name__ == "__main__":
    main()
