"""Measure the stages side by side, each in a lab of its own, all up at once: proxies and their memory,
latency in interleaved rounds, the proxies on a request's path, one policy change (objects a person edits,
seconds until every proxy concerned runs it), and the blast radius of one typical failure. Stage 6 adds its own
figures (calls that cross to cluster-2 against calls that stay, and the failover): meshlab/compare_multicluster.py.

Every figure comes from the run: traffic and traces, /proc, the proxies' admin APIs, the control plane's ACKs.
"""

from __future__ import annotations

import html
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from . import compare_multicluster as multi
from . import manifests, settle, stages
from .backends.local.pods import is_envoy

STAGES = (0, 1, 2, 3, 4, 5)  # one cluster each: every backend runs them
MULTICLUSTER = 6  # two clusters: only beside the others on the local backend (kube cannot; kind, 8 kind clusters)
RETRIES = 3  # the one policy change: calls to ratings are retried up to three times (the stages start at 2 or 0)

# The one failure each stage is judged by: its most typical proxy dying (stage 0 has none: a pod).
FAILURE = {
    0: dict(pod="ratings"),
    1: dict(proxy="edge"),
    2: dict(proxy="router"),
    3: dict(proxy="node"),
    4: dict(proxy="sidecar", pod="reviews-v2"),
    5: dict(proxy="sidecar", pod="reviews-v2"),
    6: multi.KILL,  # every reviews pod of cluster-1, with lesson 06's locality failover in place
}


def failure_for(lab, stage: int) -> dict:
    """The stage's typical failure; a node proxy is picked on a node without the entry pod,
    so the table shows what one node's loss does to the others."""
    kill = dict(FAILURE[stage])
    if kill.get("proxy") == "node":
        entry_nodes = {p.node for p in lab.pods() if p.service == "frontend"}
        nodes = [n.name for n in lab.nodes() if n.name not in entry_nodes]
        kill["node"] = nodes[-1] if nodes else lab.nodes()[-1].name
    return kill


@dataclass
class StageRow:
    """One stage, measured."""

    stage: int
    key: str
    pods: int
    proxies: int
    proxy_memory_mb: float
    p50_ms: float
    p99_ms: float
    success_rate: float
    config_objects: int
    failure: str
    calls_failed: str
    blast: str
    hops: int = 0  # proxies on the longest path of a request (the edge included)
    change_objects: int | None = None  # objects a person edits for the one policy change (None: not possible)
    change_seconds: float | None = None  # from the edit until every proxy concerned runs it
    change: str = ""
    out_of_reach: int = 0  # app pods that no longer worked after the failure: cut off, or no longer reached
    app_pods: int = 0
    cross: Any = None  # stage 6: compare_multicluster.CrossCluster

    def to_dict(self) -> dict:
        return asdict(self)


# ---- memory, config, hops -------------------------------------------------------------------------------

def rss_mb(pid: int | None) -> float:
    """Resident memory of a process in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return 0.0


def proxy_memory_mb(lab) -> float:
    """Total resident memory of the lab's Envoy processes (local backend: from /proc)."""
    return round(sum(rss_mb(c.pid) for p in lab.pods() for c in p.containers if c.image.startswith("envoyproxy/")), 1)


def config_objects(stage: int) -> int:
    """Objects that configure the stage's proxies: Envoy ConfigMaps, Ingresses at the edge, and with a control
    plane the one VirtualService that reroutes a service for every sidecar."""
    docs = stages.documents(stage)
    envoy_maps = set()
    for doc in docs:
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        names = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes") or [] if v.get("configMap")}
        for container in spec.get("containers") or []:
            if is_envoy(container):
                envoy_maps |= {names[m["name"]] for m in container.get("volumeMounts") or [] if m["name"] in names}
    return len(envoy_maps) + sum(1 for d in docs if d["kind"] == "Ingress") + int(stages.needs_mesh(stage))


def most_proxies(result) -> int:
    """The most proxy hops on one path of a traffic result (entry to leaf), counting the east-west gateway of
    every call between two clusters (it stamps no hop)."""
    return max((sum(h.get("kind") == "proxy" for h in p["hops"]) + multi.crossings(p["hops"]) for p in result.paths),
               default=0)


# ---- the labs ------------------------------------------------------------------------------------------

def default_stages() -> tuple[int, ...]:
    """The stages start() brings up by default: 0-5, and 6 on the local backend."""
    local = (os.environ.get("MESHLAB_BACKEND") or "local") == "local"  # Lab()'s default backend
    return STAGES + ((MULTICLUSTER,) if local else ())


def start(numbers=None, prefix: str = "compare") -> dict:
    """One lab per stage (default: default_stages()), all brought up at once (a few threads); every one is torn
    down if one fails."""
    import meshlab

    numbers = default_stages() if numbers is None else numbers
    labs = {n: meshlab.Lab(f"{prefix}-{n}") for n in numbers}
    with ThreadPoolExecutor(len(labs)) as pool:
        futures = [pool.submit(lab.up, stage=n, quiet=True) for n, lab in labs.items()]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        stop(labs)
        raise errors[0]
    return labs


def stop(labs: dict) -> None:
    """Tear every lab down, at once."""
    with ThreadPoolExecutor(max(1, len(labs))) as pool:
        list(pool.map(lambda lab: lab.down(), labs.values()))


def latency(labs: dict, rounds: int = 3, n: int = 40) -> dict:
    """stage -> {p50_ms, p99_ms, success_rate, hops}: `rounds` runs of n requests one at a time per stage,
    taken in turn (stage 0, 1, ..., then again), so a busy moment of the machine hits every stage alike; the
    figures are the medians over the rounds. Stage 6 also makes n calls from frontend's pod to ratings per round
    ("calls": local against crossing, over all rounds)."""
    runs: dict[int, list] = {s: [] for s in labs}
    calls: dict[int, list] = {s: [] for s, lab in labs.items() if stages.is_multicluster(lab.stage)}
    for lab in labs.values():
        lab.traffic(n=5, concurrency=1, progress=False)  # connections and caches warm, as for the others
    for _ in range(rounds):
        for stage, lab in labs.items():
            runs[stage].append(lab.traffic(n=n, concurrency=1, progress=False))
            if stage in calls:
                calls[stage] += multi.calls(lab, n)
    out = {s: {"p50_ms": round(statistics.median(r.latency_ms["p50"] for r in rs), 2),
               "p99_ms": round(statistics.median(r.latency_ms["p99"] for r in rs), 2),
               "success_rate": round(sum(r.ok for r in rs) / max(1, sum(r.requests for r in rs)), 4),
               "hops": max(most_proxies(r) for r in rs)} for s, rs in runs.items()}
    for stage, samples in calls.items():
        out[stage]["calls"] = multi.call_stats(samples)
    return out


def service_hop(lab, service: str = "ratings", port: int = 9080, n: int = 100) -> dict:
    """Median ms of one GET to a pod of `service`, straight to the pod's IP and through the Service's ClusterIP
    (kube-proxy's job; locally one Envoy per lab does it, see MESHLAB_CLUSTERIP), taken in turn: what that hop
    costs here."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    pod = next(p for p in lab.pods() if p.service == service and p.ready)
    targets = {"direct": f"http://{pod.ip}:{port}/", "cluster_ip": lab.backend.service_url(service, port) + "/"}
    times: dict[str, list[float]] = {k: [] for k in targets}
    for _ in range(n):
        for key, url in targets.items():
            started = time.perf_counter()
            opener.open(url, timeout=5).read()
            times[key].append((time.perf_counter() - started) * 1000)
    return {f"{k}_ms": round(statistics.median(v), 2) for k, v in times.items()}


# ---- one policy change ---------------------------------------------------------------------------------

@dataclass
class Change:
    """One policy change made the stage's way: what was edited, and how long until every proxy ran it."""

    objects: int | None
    seconds: float | None
    what: str


def _retry_route(**options) -> dict:
    from .stages import envoyconf

    return envoyconf.route_action("ratings", retries=RETRIES, **options)


def _applied(lab, docs: list[dict], wait) -> float:
    """Seconds from applying `docs` until wait() holds."""
    started = time.monotonic()
    lab.apply(manifests.dump(docs), source="policy change")
    if not wait():
        raise TimeoutError("the proxies did not pick the change up in time")
    return time.monotonic() - started


def policy_change(lab) -> Change:
    """Retry calls to ratings up to RETRIES times, the way the lab's stage does it, and time it."""
    from .checks.lab02 import with_routes
    from .stages import pernode, router, shop, sidecar

    has = f'"num_retries": {RETRIES}'
    stage = lab.stage
    callers = [(s, v) for s, v, _, upstreams in shop.SHOP if "ratings" in upstreams]
    if stage == 0:  # the policy lives in the callers' code: change it, redeploy them
        started = time.monotonic()
        for service, version in callers:
            lab.restart(f"deployment/{service}-{version}")
        return Change(len(callers), time.monotonic() - started,
                      "the code of " + " and ".join(f"{s} {v}" for s, v in callers) + ", redeployed")
    if stage == 1:
        return Change(None, None, "not possible: the edge never sees a call to ratings")
    if stage == 2:
        doc = with_routes(router.config_map(), "router", {"ratings": _retry_route()})
        return Change(1, _applied(lab, [doc], lambda: settle.wait_config(lab, has=has, role="router")),
                      f"ConfigMap {router.CONFIGMAP}, reloaded by every router")
    if stage == 3:
        doc = with_routes(pernode.config_map(), "outgoing", {"ratings": _retry_route(name_version=True)})
        return Change(1, _applied(lab, [doc], lambda: settle.wait_config(lab, has=has, role="node")),
                      f"ConfigMap {pernode.CONFIGMAP}, reloaded by every node proxy")
    if stage == 4:
        docs = [with_routes(sidecar.config_map(s, v), "outbound", {"ratings": _retry_route()}) for s, v in callers]
        return Change(len(docs), _applied(lab, docs, lambda: all(
            settle.wait_config(lab, has=has, pod=f"{s}-{v}") for s, v in callers)),
            "the sidecar ConfigMaps of " + " and ".join(f"{s} {v}" for s, v in callers))
    if stage in (5, 6):
        service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "ratings-retries"},
                   "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}],
                                                            "retries": {"attempts": RETRIES, "retryOn": "5xx"}}]}}
        done = lab.convergence(manifests.dump([service]), source="policy change")
        if stage == 6:  # the same object applied to each cluster; the slowest cluster's time counts
            return Change(1, done.seconds, "one VirtualService, applied to both clusters, each control plane "
                                           "pushing it to its own sidecars")
        return Change(1, done.seconds, "one VirtualService, pushed to every sidecar by the control plane")
    return Change(None, None, f"stage {stage} is not measured here")


# ---- the whole comparison ------------------------------------------------------------------------------

def failure(lab, n: int = 60, concurrency: int = 4):
    """(the kill, its BlastRadius): the stage's typical failure, measured with real traffic and restored (stage 6:
    the locality failover, compare_multicluster.failure)."""
    if stages.is_multicluster(lab.stage):
        return multi.failure(lab, n, concurrency)
    kill = failure_for(lab, lab.stage)
    return kill, lab.blast_radius(kill=kill, n=n, concurrency=concurrency)


def row(lab, timing: dict, change: Change | None = None, failed=None) -> StageRow:
    """One stage's row from its measurements: `timing` (latency()), its policy change, (kill, BlastRadius)."""
    stage, pods = lab.stage, lab.pods()
    out = StageRow(stage=stage, key=stages.info.get(stage).key, pods=len(pods), proxies=len(lab.proxies()),
                   proxy_memory_mb=proxy_memory_mb(lab), p50_ms=timing["p50_ms"], p99_ms=timing["p99_ms"],
                   success_rate=timing["success_rate"], config_objects=config_objects(stage), failure="",
                   calls_failed="", blast="", hops=timing["hops"],
                   app_pods=sum(1 for p in pods if p.labels.get("version")))
    if change is not None:
        out.change_objects, out.change_seconds, out.change = change.objects, change.seconds, change.what
    if failed is not None:
        kill, blast = failed
        out.failure = ", ".join(f"{k}={v}" for k, v in kill.items())
        out.calls_failed = (f"{blast.after.failed}/{blast.after.requests} requests, "
                            f"{blast.failed_after}/{blast.calls_after} calls")
        out.out_of_reach, out.blast = len(blast.out_of_reach), blast.verdict
    if stages.is_multicluster(stage):
        out.cross = multi.cross(lab, timing.get("calls"), failed[1] if failed is not None else None)
    return out


def measure(lab, n: int = 300, concurrency: int = 4) -> StageRow:
    """Measure the stage that is up on `lab` on its own: a traffic run (stage 6: and n calls from frontend's pod
    to ratings, in cluster-1 or across), then its typical failure."""
    result = lab.traffic(n=n, concurrency=concurrency)
    timing = {"p50_ms": result.latency_ms["p50"], "p99_ms": result.latency_ms["p99"],
              "success_rate": round(result.success_rate, 4), "hops": most_proxies(result)}
    if stages.is_multicluster(lab.stage):
        timing["calls"] = multi.call_stats(multi.calls(lab, n))
    return row(lab, timing, failed=failure(lab, n, concurrency))


def measure_all(labs: dict, rounds: int = 3, n: int = 40, blast_n: int = 60) -> list[StageRow]:
    """Every stage of `labs` (from start()): latency in interleaved rounds, then per stage its policy change
    and its typical failure."""
    timing = latency(labs, rounds, n)
    return [row(lab, timing[stage], policy_change(lab), failure(lab, blast_n)) for stage, lab in labs.items()]


# ---- output --------------------------------------------------------------------------------------------

def _change(r: StageRow) -> str:
    if r.change_objects is None:
        return "not possible" if r.change else "not measured"
    return f"{r.change_objects} in {r.change_seconds:.1f} s"


def table(rows: list[StageRow]) -> str:
    """The comparison as a Markdown table."""
    head = ["stage", "pods", "proxies", "proxy MiB", "p50 ms", "p99 ms", "proxies on a path", "edits for one change",
            "one failure", "failed after it", "pods out of reach"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.stage} {r.key} | {r.pods} | {r.proxies} | {r.proxy_memory_mb:.0f} | {r.p50_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.hops} | {_change(r)} | {r.failure} | {r.calls_failed} | "
                     f"{r.out_of_reach} of {r.app_pods} |")
    return "\n".join(lines)


CHART = (("proxies", "proxies", ""), ("proxy_memory_mb", "proxy memory", " MiB"), ("p50_ms", "latency p50", " ms"),
         ("hops", "proxies on a path", ""), ("change_seconds", "one change reaches every proxy", " s"),
         ("out_of_reach", "pods out of reach after one failure", ""))


def chart(rows: list[StageRow], fields=CHART) -> str:
    """HTML bars, one group per measure, one bar per stage (no plotting library needed)."""
    parts = ["<div style='display:flex;flex-wrap:wrap;gap:18px;font:12px sans-serif'>"]
    for field, title, unit in fields:
        values = [(r, getattr(r, field)) for r in rows]
        top = max((v for _, v in values if v is not None), default=0) or 1
        bars = "".join(
            f"<div style='display:flex;align-items:center;gap:4px'><span style='width:92px'>{r.stage} "
            f"{html.escape(r.key)}</span><span style='display:inline-block;height:10px;background:#4c78a8;"
            f"width:{0 if v is None else 140 * v / top:.0f}px'></span><span>"
            f"{'n/a' if v is None else (f'{v:.1f}' if isinstance(v, float) else v)}{unit if v is not None else ''}"
            f"</span></div>" for r, v in values)
        parts.append(f"<div><b>{html.escape(title)}</b>{bars}</div>")
    return "".join(parts) + "</div>"
