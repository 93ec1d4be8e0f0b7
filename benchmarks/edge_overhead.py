"""What the edge proxy costs: latency and throughput straight to the frontend pod, via the frontend
Service's ClusterIP, and through the edge Envoy, all in one stage-1 lab in one run.

    .venv/bin/python benchmarks/edge_overhead.py [-n 400] [-c 4] [--rounds 3] [--keepalive]
"""

from __future__ import annotations

import argparse

import _common as c

import meshlab
from meshlab import traffic

PATHS = (("/", "shop request (frontend fans out to catalog, reviews, ratings)"),
         ("/healthz", "frontend only (no fan-out): the hop cost stands out"))


def targets(lab) -> list[tuple[str, str]]:
    status = lab.backend.status()
    pod_ip = next(p["ip"] for p in status["pods"] if p["labels"].get("app") == "frontend")
    cluster_ip = next(s["cluster_ip"] for s in status["services"] if s["name"] == "frontend")
    return [("direct to the pod IP (baseline)", f"http://{pod_ip}:9080"),
            ("via the Service ClusterIP", f"http://{cluster_ip}:9080"),
            ("through the edge Envoy", lab.url)]


def measure(lab, n: int, concurrency: int, rounds: int, keepalive: bool) -> dict:
    """{(path, target label): [TrafficResult per round]}, targets interleaved round by round."""
    results: dict = {}
    for path, _ in PATHS:
        for label, url in targets(lab):  # warm-up: connections, caches, Envoy's first requests
            traffic.run(url, n=50, concurrency=concurrency, path=path, keepalive=keepalive)
        for index in range(rounds):
            order = targets(lab)
            order = order[index % 3:] + order[:index % 3]  # rotate who goes first
            for label, url in order:
                result = traffic.run(url, n=n, concurrency=concurrency, path=path, keepalive=keepalive)
                if result.failed:
                    raise SystemExit(f"{label} {path}: {result.failed} requests failed: {result.errors[:1]}")
                results.setdefault((path, label), []).append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="requests per target per round")
    parser.add_argument("-c", type=int, default=4, help="concurrency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keepalive", action="store_true",
                        help="reuse connections (default: one per request, as meshlab.traffic does)")
    args = parser.parse_args()
    with c.private_state():
        with meshlab.Lab("bench-edge") as lab:
            lab.up(stage="edge", quiet=True)
            results = measure(lab, args.n, args.c, args.rounds, args.keepalive)
            labels = [label for label, _ in targets(lab)]
    mode = "keep-alive" if args.keepalive else "a new connection per request"
    print(f"Edge overhead: {args.n} requests x {args.rounds} rounds per row, concurrency {args.c}, {mode}; "
          f"medians over rounds ({c.machine()})")
    for path, title in PATHS:
        rows, base = [], None
        for label in labels:
            runs = results[(path, label)]
            p50 = c.median([r.latency_ms["p50"] for r in runs])
            p99 = c.median([r.latency_ms["p99"] for r in runs])
            rps = c.median([r.requests / r.duration_s for r in runs])
            base = base or (p50, p99, rps)
            rows.append([label, f"{p50:.1f}", c.ratio(p50, base[0]), f"{p99:.1f}", c.ratio(p99, base[1]),
                         f"{rps:.0f}", c.ratio(rps, base[2])])
        print(f"\nGET {path}: {title}\n")
        headers = ["target", "p50 ms", "p50 vs direct", "p99 ms", "p99 vs direct", "req/s", "req/s vs direct"]
        print(c.table(headers, rows))


if __name__ == "__main__":
    main()
