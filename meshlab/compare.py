"""Measure the stages side by side: proxies, their memory, latency, config to touch, blast radius."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import stages
from .backends.local.pods import is_envoy

# The one failure each stage is judged by: its most typical proxy dying (stage 0 has none: a pod).
FAILURE = {
    0: dict(pod="ratings"),
    1: dict(proxy="edge"),
    2: dict(proxy="router"),
    3: dict(proxy="node"),
    4: dict(proxy="sidecar", pod="reviews-v2"),
    5: dict(proxy="sidecar", pod="reviews-v2"),
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

    def to_dict(self) -> dict:
        return asdict(self)


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
    """Objects a person edits to change routing: Envoy ConfigMaps, Ingresses at the edge, and with a control
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


def measure(lab, n: int = 300, concurrency: int = 4) -> StageRow:
    """Measure the stage that is up on `lab`: a traffic run, then its typical failure."""
    stage = lab.stage
    result = lab.traffic(n=n, concurrency=concurrency)
    row = StageRow(stage=stage, key=stages.info.get(stage).key, pods=len(lab.pods()), proxies=len(lab.proxies()),
                   proxy_memory_mb=proxy_memory_mb(lab), p50_ms=result.latency_ms["p50"],
                   p99_ms=result.latency_ms["p99"], success_rate=round(result.success_rate, 4),
                   config_objects=config_objects(stage), failure="", calls_failed="", blast="")
    kill = failure_for(lab, stage)
    blast = lab.blast_radius(kill=kill, n=n, concurrency=concurrency)
    row.failure = ", ".join(f"{k}={v}" for k, v in kill.items())
    row.calls_failed = f"{blast.after.failed}/{blast.after.requests} requests, {blast.failed_after}/{blast.calls_after} calls"
    row.blast = blast.verdict
    return row


def table(rows: list[StageRow]) -> str:
    """The comparison as a Markdown table."""
    head = ["stage", "pods", "proxies", "proxy MiB", "p50 ms", "p99 ms", "configs", "one failure", "failed after it"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.stage} {r.key} | {r.pods} | {r.proxies} | {r.proxy_memory_mb:.0f} | {r.p50_ms:.1f} | "
                     f"{r.p99_ms:.1f} | {r.config_objects} | {r.failure} | {r.calls_failed} |")
    return "\n".join(lines)
