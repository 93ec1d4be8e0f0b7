"""The topology a diagram draws: clusters -> nodes -> pods and proxies, and the calls between them."""

from __future__ import annotations

from dataclasses import dataclass, field

CLIENT = "client"  # the element id of the world outside the cluster(s)


def pod_id(cluster: str, name: str) -> str:
    """Element id of a pod's app container."""
    return f"pod:{cluster}/{name}"


def proxy_id(cluster: str, name: str) -> str:
    """Element id of a proxy (a sidecar's id differs from its pod's)."""
    return f"proxy:{cluster}/{name}"


def service_id(name: str) -> str:
    """Element id of a service drawn on its own (the target of a call that found no pod)."""
    return f"svc:{name}"


@dataclass
class Node:
    """A Kubernetes node."""

    name: str
    cluster: str = ""
    down: bool = False


@dataclass
class Pod:
    """An app pod; its sidecar, if any, is a Proxy whose `pod` names it."""

    name: str
    service: str = ""
    version: str = ""
    node: str = ""
    cluster: str = ""
    down: bool = False
    containers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Element id."""
        return pod_id(self.cluster, self.name)


@dataclass
class Proxy:
    """A proxy by role: edge, router, node, sidecar, gateway, or the control plane."""

    name: str
    role: str
    pod: str = ""
    node: str = ""
    cluster: str = ""
    down: bool = False

    @property
    def id(self) -> str:
        """Element id."""
        return proxy_id(self.cluster, self.name)


@dataclass
class Edge:
    """A call edge (with observed counts when known) or a control-plane config push."""

    src: str
    dst: str
    count: int | None = None
    failed: int = 0
    p50_ms: float | None = None
    label: str = ""
    kind: str = "call"  # call | config
    failover: bool = False  # a call made only after failover (a schematic's standby path, drawn dashed)

    @property
    def error_rate(self) -> float:
        """Failed share of the observed calls."""
        return self.failed / self.count if self.count else 0.0

    def describe(self) -> str:
        """'120 req · 5% err · p50 3.1 ms', or the static label."""
        parts = [self.label] if self.label else []
        if self.count is not None:
            parts.append(f"{self.count} req")
            if self.failed:
                parts.append(f"{self.error_rate:.0%} err")
        if self.p50_ms is not None:
            parts.append(f"p50 {self.p50_ms:.3g} ms")
        return " · ".join(parts)


@dataclass
class Topology:
    """Everything one diagram shows."""

    title: str = ""
    nodes: list[Node] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    proxies: list[Proxy] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def clusters(self) -> list[str]:
        """Cluster names in order of first appearance."""
        names = [x.cluster for x in (*self.nodes, *self.pods, *self.proxies)]
        return list(dict.fromkeys(names))

    def cluster_label(self, cluster: str) -> str:
        """A cluster's box title; with several clusters, what has none runs outside them (a legacy host)."""
        if cluster:
            return cluster
        return "outside the clusters" if any(self.clusters()) else "cluster"

    def sidecars(self) -> dict[str, Proxy]:
        """Sidecar proxies by the id of the pod they sit in."""
        return {pod_id(p.cluster, p.pod): p for p in self.proxies if p.role == "sidecar" and p.pod}

    def edge(self, src: str, dst: str, kind: str = "call") -> Edge:
        """The edge src -> dst, added if missing."""
        for e in self.edges:
            if (e.src, e.dst, e.kind) == (src, dst, kind):
                return e
        self.edges.append(Edge(src, dst, kind=kind))
        return self.edges[-1]

    def names(self) -> dict[str, str]:
        """A short display name for every element id; `cluster-2/reviews-v1` where two clusters share a name."""
        short = {p.id: (p.name, p.cluster) for p in self.pods}
        short.update({p.id: (f"{p.pod} sidecar" if p.role == "sidecar" else p.name, p.cluster) for p in self.proxies})
        homes: dict[str, set] = {}
        for name, cluster in short.values():
            homes.setdefault(name, set()).add(cluster)
        out = {CLIENT: "client"}
        out.update({i: f"{cluster}/{name}" if len(homes[name]) > 1 and cluster else name
                    for i, (name, cluster) in short.items()})
        out.update({service_id(s): f"service {s}" for s in self.services})
        return out
