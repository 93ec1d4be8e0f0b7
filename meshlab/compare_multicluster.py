"""Stage 6 in the stage comparison: proxies and their memory per cluster, calls that stay in cluster-1 against
calls that cross to cluster-2, and the locality failover when cluster-1's reviews pods die.

Crossing: one call, frontend -> ratings (a leaf, so it crosses at most once), made from inside frontend's pod
through its sidecar as `lab.call` makes it, with no locality rule: Envoy spreads it over cluster-1's pods and
cluster-2's gateway, so both kinds are taken in the same moments, and each call is classified by its trace (the
`cluster=` of its two app hops). Failover: lesson 06's DestinationRule in both clusters, then meshlab/failover.py.
Every figure comes from the run (local backend: pod addresses reached from this machine, memory from /proc).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from . import failover
from .backends.base import MeshlabError
from .blast import BlastRadius
from .stages.multicluster import FAILOVER_RULE
from .traffic import percentile

HOME, OTHER = "cluster-1", "cluster-2"
SOURCE, TARGET, APP_PORT = "frontend", "http://ratings:9080/", 9080  # the shop's apps listen on 9080
KILL = {"pod": "reviews", "cluster": HOME}  # every reviews pod of cluster-1 (the stage's typical failure)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---- which calls crossed ---------------------------------------------------------------------------------

def crossings(hops) -> int:
    """Calls of one traced path whose caller and callee ran in two clusters: each passed the callee's east-west
    gateway, which forwards TLS untouched and so stamps no hop (a host outside both clusters names none)."""
    apps = failover.app_hops(hops)
    return sum(1 for a, b in zip(apps, apps[1:]) if a.get("cluster") and b.get("cluster")
               and a["cluster"] != b["cluster"])


def side(hops) -> str | None:
    """'local' when every call of a traced path stayed in one cluster, 'cross' when one crossed, None when the path
    does not tell (no callee, or a hop without cluster=)."""
    apps = failover.app_hops(hops)
    if len(apps) < 2 or not all(h.get("cluster") for h in apps):
        return None
    return "cross" if crossings(hops) else "local"


def call_stats(samples: list[tuple[str | None, float]]) -> dict:
    """{'local': {calls, p50_ms, p99_ms}, 'cross': {...}, 'failed': n} from (side, ms) samples (side None: the call
    failed or its trace did not tell)."""
    out: dict = {"failed": sum(1 for s, _ in samples if s is None)}
    for kind in ("local", "cross"):
        times = sorted(ms for s, ms in samples if s == kind)
        out[kind] = {"calls": len(times), "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
    return out


def calls(lab, n: int, source: str = SOURCE, url: str = TARGET) -> list[tuple[str | None, float]]:
    """n calls of `url` made one at a time from inside a pod of `source` (its app's /_meshlab/call, as lab.call,
    through its sidecar), each (side of its trace, ms timed around it). The way into the pod costs the same for
    both sides; the difference is the crossing."""
    pod = next((p for p in lab.pods() if p.service == source and p.ready), None)
    if pod is None:
        raise MeshlabError(f"compare: no ready pod of {source} to call from", "see lab.pods()")
    address = f"http://{pod.ip}:{APP_PORT}/_meshlab/call?" + urllib.parse.urlencode({"url": url})
    out = []
    for _ in range(n):
        started = time.perf_counter()
        try:
            answer = json.loads(_DIRECT.open(address, timeout=10).read())
        except (OSError, ValueError):
            answer = {}
        ms = (time.perf_counter() - started) * 1000
        ok = isinstance(answer, dict) and 200 <= int(answer.get("status") or 0) < 300
        out.append((side((answer.get("paths") or [[]])[0]) if ok else None, ms))
    return out


# ---- the failover ----------------------------------------------------------------------------------------

@dataclass(repr=False)
class FailoverRadius(BlastRadius):
    """A blast radius whose kill moved calls to the other cluster: the traffic before and after, and the switch."""

    failover: failover.Failover | None = None


def failure(lab, n: int = 60, concurrency: int = 4) -> tuple[dict, FailoverRadius]:
    """(the kill, what it cost): with lesson 06's DestinationRule in both clusters, traffic; every reviews pod of
    cluster-1 killed under load until cluster-2 answers; traffic again; then restore and the rule deleted."""
    pods = {p.name: p for p in lab.pods()}
    lab.convergence(FAILOVER_RULE, source="compare: locality failover")  # every sidecar of both clusters runs it
    try:
        before = lab.traffic(n=n, concurrency=concurrency, progress=False)
        away = failover.cluster_counts(before).get(OTHER, 0)
        if away:
            raise MeshlabError(f"compare: {away} of {before.requests} requests had reviews answered in {OTHER} with "
                               "the locality rule in place, so a failover cannot be timed", "see lab.proxy_status()")
        try:
            switch = failover.measure(lab, "reviews", HOME, OTHER)
            after = lab.traffic(n=n, concurrency=concurrency, progress=False)
        finally:
            lab.restore()
    finally:
        lab.delete(FAILOVER_RULE, source="compare: locality failover")
    killed = {name: pods[name].node for name in switch.killed if name in pods}
    return dict(KILL), FailoverRadius(dict(KILL), list(switch.killed), "pod", killed, ["reviews"], before, after,
                                      failover=switch)


# ---- the row ---------------------------------------------------------------------------------------------

@dataclass
class CrossCluster:
    """Stage 6's own figures: per cluster, calls in and across, the failover."""

    clusters: dict = field(default_factory=dict)  # cluster -> {proxies, gateways, proxy_memory_mb}
    calls: dict = field(default_factory=dict)  # call_stats()
    killed: int = 0
    failover_requests: int = 0
    failover_failed: int = 0
    failover_s: float | None = None  # from the first kill until cluster-2 answered


def per_cluster(lab) -> dict:
    """cluster -> proxies, east-west gateways, and their Envoys' resident memory (MiB)."""
    from .compare import rss_mb

    out: dict = {}
    for proxy in lab.proxies():
        entry = out.setdefault(proxy.cluster, {"proxies": 0, "gateways": 0, "proxy_memory_mb": 0.0})
        entry["proxies"] += 1
        entry["gateways"] += proxy.role == "gateway"
    for pod in lab.pods():
        memory = sum(rss_mb(c.pid) for c in pod.containers if c.image.startswith("envoyproxy/"))
        if pod.cluster in out:
            out[pod.cluster]["proxy_memory_mb"] = round(out[pod.cluster]["proxy_memory_mb"] + memory, 1)
    return dict(sorted(out.items()))


def cross(lab, stats: dict | None, radius=None) -> CrossCluster:
    """Stage 6's figures from the lab, the calls' statistics and the failure (a FailoverRadius, or None)."""
    out = CrossCluster(clusters=per_cluster(lab), calls=stats or {})
    switch = getattr(radius, "failover", None)
    if switch is not None:
        out.killed, out.failover_requests, out.failover_failed = len(switch.killed), switch.requests, switch.failed
        out.failover_s = None if switch.switch_s is None else round(switch.switch_s, 2)
    return out


# ---- output ----------------------------------------------------------------------------------------------

def _ratio(value, base) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _calls(entry: dict) -> str:
    return f"{entry['p50_ms']:.1f} / {entry['p99_ms']:.1f} ({entry['calls']})" if entry.get("calls") else "none"


def table(rows) -> str:
    """Stage 6's own figures as a Markdown table: crossing against staying in cluster-1, and the failover."""
    head = ["stage", "proxies (gateways)", "proxy MiB", "in cluster-1: p50 / p99 ms (calls)",
            "to cluster-2: p50 / p99 ms (calls)", "p50 crossing vs in", "p99 crossing vs in", "failover: failed",
            "switch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r.cross
        if c is None:
            continue
        where = c.clusters.values()
        proxies = " + ".join(f"{e['proxies']} ({e['gateways']})" for e in where)
        memory = " + ".join(f"{e['proxy_memory_mb']:.0f}" for e in where)
        local, crossing = c.calls.get("local", {}), c.calls.get("cross", {})
        failed = (f"{c.failover_failed} of {c.failover_requests} requests ({c.killed} pods killed)"
                  if c.failover_requests else "not measured")
        switch = f"{c.failover_s:.2f} s" if c.failover_s is not None else ("never" if c.failover_requests else "-")
        lines.append(f"| {r.stage} {r.key} | {proxies} | {memory} | {_calls(local)} | {_calls(crossing)} | "
                     f"{_ratio(crossing.get('p50_ms'), local.get('p50_ms'))} | "
                     f"{_ratio(crossing.get('p99_ms'), local.get('p99_ms'))} | {failed} | {switch} |")
    return "\n".join(lines)
