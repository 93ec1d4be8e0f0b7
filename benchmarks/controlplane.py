"""Stage 5's control plane measured: convergence at 10, 20 and 50 sidecars, memory, CPU per push, mTLS cost.

    .venv/bin/python benchmarks/controlplane.py [--sizes 10 20 50] [--applies 30] [-n 300]

Each apply of a VirtualService is measured in two parts: admission (schema, translation, Envoy's own validation,
before anything is stored) and convergence: from the stored object to the last affected sidecar's ACK of the
new version (the control plane's ACK times, cross-checked with each Envoy's admin config_dump), over `--applies`
applies per size. mTLS latency is measured against plaintext (DestinationRule tls DISABLE) in the same run.
"""

from __future__ import annotations

import argparse
import statistics

from _common import machine, private_state, ratio, table

import meshlab
from meshlab import compare
from meshlab.stages import controlplane
from meshlab.traffic import percentile

SUBSETS = controlplane.subsets_yaml(versions=("v1", "v3"))
SHOP_PODS_BUT_RATINGS = 5  # frontend, catalog, reviews v1-v3; ratings-v1 is scaled to reach a size


def route(v1: int) -> str:
    """A VirtualService splitting reviews v1/v3; every sidecar gets it (each knows every service)."""
    return controlplane.split_yaml({"v1": v1, "v3": 100 - v1})


def tls(mode: str) -> str:
    """A DestinationRule per service with one tls mode (DISABLE: plaintext between sidecars)."""
    docs = [f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tls-{s}}}
spec: {{host: {s}, trafficPolicy: {{tls: {{mode: {mode}}}}}}}""" for s in ("catalog", "ratings", "frontend")]
    return "\n---\n".join(docs)


def scale_ratings(lab, sidecars: int) -> None:
    """Scale ratings-v1 so the lab runs `sidecars` injected pods."""
    doc = next(d for d in meshlab.stage_documents("control-plane") if d["metadata"]["name"] == "ratings-v1")
    doc["spec"]["replicas"] = sidecars - SHOP_PODS_BUT_RATINGS
    lab.apply(meshlab.manifests.dump([doc]), "ratings-v1", wait=180)


def weight(i: int) -> int:
    """A new split on every apply (v1 share 1..99), so no apply repeats content any cache has seen."""
    return 1 + (i * 37) % 99


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def control_plane(lab):
    """(pid of the control plane process, its pod)."""
    pod = next(p for p in lab.pods() if p.labels.get("app") == "meshlab-controlplane")
    return pod.containers[0].pid, pod


def measure_size(sidecars: int, applies: int) -> dict:
    """Convergence p50/p99, sidecar and control-plane memory, CPU per push, at one size."""
    import os

    with meshlab.Lab(f"bench-cp-{sidecars}") as lab:
        lab.up(stage="control-plane", quiet=True, wait=300)
        if sidecars != len(lab.proxy_status()):
            scale_ratings(lab, sidecars)
        lab.apply(SUBSETS)
        lab.convergence(route(50))  # warm-up, not counted
        pid, _ = control_plane(lab)
        ticks = cpu_ticks(pid)
        runs = [lab.convergence(route(weight(i))) for i in range(applies)]
        times = [r.seconds * 1000 for r in runs]
        admission = sorted(r.admission * 1000 for r in runs)
        cpu_ms = (cpu_ticks(pid) - ticks) * 1000 / os.sysconf("SC_CLK_TCK") / applies
        sidecar_rss = [compare.rss_mb(c.pid) for p in lab.pods() for c in p.containers if c.name == "istio-proxy"]
        times.sort()
        return {"sidecars": len(sidecar_rss), "p50": percentile(times, 50), "p99": percentile(times, 99),
                "admission_p50": percentile(admission, 50), "admission_p99": percentile(admission, 99),
                "max": times[-1], "sidecar_mb": statistics.median(sidecar_rss), "sidecars_mb": sum(sidecar_rss),
                "cp_mb": compare.rss_mb(pid), "cpu_ms": cpu_ms}


def measure_mtls(n: int, rounds: int = 3) -> tuple[list[float], list[float]]:
    """p50/p99 of the shop with plaintext between sidecars (baseline) and with mTLS, interleaved."""
    plain, mtls = {"p50": [], "p99": []}, {"p50": [], "p99": []}
    with meshlab.Lab("bench-cp-mtls") as lab:
        lab.up(stage="control-plane", quiet=True)
        lab.traffic(n=50)  # warm-up
        for _ in range(rounds):
            for mode, sink in (("DISABLE", plain), ("ISTIO_MUTUAL", mtls)):
                lab.convergence(tls(mode))
                result = lab.traffic(n=n, concurrency=4)
                assert result.ok == n, str(result)
                sink["p50"].append(result.latency_ms["p50"])
                sink["p99"].append(result.latency_ms["p99"])
    med = statistics.median
    return [med(plain["p50"]), med(plain["p99"])], [med(mtls["p50"]), med(mtls["p99"])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--applies", type=int, default=30)
    parser.add_argument("-n", type=int, default=300, help="requests per traffic run (mTLS comparison)")
    args = parser.parse_args()
    print(machine())
    with private_state():
        sizes = [measure_size(s, args.applies) for s in args.sizes]
        plain, mtls = measure_mtls(args.n)
    print(f"\nA VirtualService applied {args.applies} times (a new split each time). Admission: schema, translation "
          "and Envoy's own validation before the object is stored. Convergence: stored -> every affected sidecar "
          "ACKed and serving it (Istio's convergence time).\n")
    base = sizes[0]
    print(table(["sidecars", "admission p50 ms", "admission p99 ms", "convergence p50 ms", "convergence p99 ms",
                 "max ms", "p99 vs smallest", "sidecar RSS MiB (median)", "all sidecars MiB", "control plane MiB",
                 "control plane CPU ms/push"],
                [[s["sidecars"], f"{s['admission_p50']:.0f}", f"{s['admission_p99']:.0f}", f"{s['p50']:.0f}",
                  f"{s['p99']:.0f}", f"{s['max']:.0f}", ratio(s["p99"], base["p99"]),
                  f"{s['sidecar_mb']:.0f}", f"{s['sidecars_mb']:.0f}", f"{s['cp_mb']:.0f}", f"{s['cpu_ms']:.0f}"]
                 for s in sizes]))
    print("\nmTLS between sidecars vs plaintext (same lab, interleaved, GET / of the shop)\n")
    print(table(["", "p50 ms", "p99 ms", "p50 vs plaintext", "p99 vs plaintext"],
                [["plaintext (baseline)", f"{plain[0]:.1f}", f"{plain[1]:.1f}", "1.00x", "1.00x"],
                 ["mTLS (ISTIO_MUTUAL)", f"{mtls[0]:.1f}", f"{mtls[1]:.1f}", ratio(mtls[0], plain[0]),
                  ratio(mtls[1], plain[1])]]))


if __name__ == "__main__":
    main()
