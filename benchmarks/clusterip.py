"""What a Service's ClusterIP costs locally: straight to a pod, through the Python userspace forwarder, and
through the lab's Envoy kube-proxy, in one run (two stage-0 labs, one per MESHLAB_CLUSTERIP mode).

    .venv/bin/python benchmarks/clusterip.py [-n 600] [--path /healthz]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import urllib.request

import _common as c

import meshlab

MODES = (("python", "via the ClusterIP: Python forwarder"), ("envoy", "via the ClusterIP: Envoy kube-proxy"))
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def up(mode: str) -> meshlab.Lab:
    """A stage-0 lab whose supervisor serves ClusterIPs the given way (the mode is read when it starts)."""
    os.environ["MESHLAB_CLUSTERIP"] = mode
    lab = meshlab.Lab(f"bench-clusterip-{mode}")
    lab.up(stage=0, quiet=True)
    return lab


def targets(labs: dict, service: str, port: int) -> list[tuple[str, str]]:
    """(label, URL): a pod of `service` directly (the baseline), then its ClusterIP in every lab."""
    pod = next(p for p in labs["envoy"].pods() if p.service == service and p.ready)
    rows = [("direct to the pod IP (baseline)", f"http://{pod.ip}:{port}")]
    return rows + [(label, labs[mode].backend.service_url(service, port)) for mode, label in MODES]


def sample(url: str) -> float:
    """Milliseconds of one GET on a new connection (as meshlab.traffic and the shop's apps make them)."""
    started = time.perf_counter()
    with _DIRECT.open(url, timeout=5) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def measure(rows: list[tuple[str, str]], path: str, n: int) -> dict[str, list[float]]:
    """n GETs per row, one at a time, the rows taken in turn (rotated every round) so drift hits all alike."""
    for _, url in rows:
        for _ in range(20):
            sample(url + path)  # warm-up: caches, Envoy's first connections
    times: dict[str, list[float]] = {label: [] for label, _ in rows}
    for index in range(n):
        order = rows[index % len(rows):] + rows[:index % len(rows)]
        for label, url in order:
            times[label].append(sample(url + path))
    return times


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(times: dict[str, list[float]], versus: str = "direct") -> str:
    """A table of p50/p99 per row, with ratios and the difference against the first row (measured alongside)."""
    rows, base = [], None
    for label, values in times.items():
        p50, p99 = statistics.median(values), percentile(values, 99)
        base = base or (p50, p99)
        rows.append([label, f"{p50:.2f}", c.ratio(p50, base[0]), f"{p99:.2f}", c.ratio(p99, base[1]),
                     f"{p50 - base[0]:+.2f}"])
    return c.table(["target", "p50 ms", f"p50 vs {versus}", "p99 ms", f"p99 vs {versus}", f"p50 - {versus} ms"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=600, help="requests per target")
    parser.add_argument("--path", default="/healthz", help="path on ratings (/healthz: the app's cheapest answer)")
    args = parser.parse_args()
    if args.n < 8:
        parser.error("-n must be at least 8 (a p99 needs samples)")
    with c.private_state():
        labs = {}
        try:
            for mode, _ in MODES:
                labs[mode] = up(mode)
            hop = measure(targets(labs, "ratings", 9080), args.path, args.n)
            shop = measure([(label, labs[mode].url) for mode, label in MODES], "/", args.n // 4)
        finally:
            for lab in labs.values():
                lab.down()
    print(f"ClusterIP cost: {args.n} GETs of ratings {args.path} per row, one at a time, a new connection each, "
          f"rows interleaved ({c.machine()})\n")
    print(report(hop))
    print(f"\nThe whole stage-0 shop request (GET / of the frontend Service: 4 ClusterIP hops, 3 on the longest "
          f"path), {args.n // 4} per row:\n")
    print(report(shop, versus="Python"))


if __name__ == "__main__":
    main()
