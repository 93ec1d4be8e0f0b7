"""Build a Topology from a stage's schematic in meshlab.stages.info (no cluster needed); its pods and their
nodes come from the stage's manifests (placement.py), in each of its clusters, the calls from the schematic."""

from __future__ import annotations

from collections import Counter

from meshlab.stages import info
from meshlab.diagrams import placement
from meshlab.diagrams.model import CLIENT, Edge, Node, Pod, Proxy, Topology


def from_stage(stage: int | str | info.StageInfo) -> Topology:
    """The typical topology of a stage, with its calls, the calls it makes only after a failover, and its
    control-plane pushes: every pod the stage deploys, on the node the local lab runs it on."""
    stage = info.get(stage)
    sch = stage.schematic
    topo = Topology(title=stage.label)
    if placement.derivable(stage.number):
        parts = placement.parts(stage.number, tuple(sch.parts))
        where = placement.clusters(stage.number)
        node_keys = [(cluster, n) for cluster in where for n in placement.node_names(stage.number)]
        node_keys += list(dict.fromkeys((p.cluster, p.node) for p in parts if p.cluster not in where))  # outside
    else:  # a stage that cannot be deployed yet: drawn as sketched
        parts = sch.parts
        node_keys = list(sch.nodes) or list(dict.fromkeys((p.cluster, p.node) for p in parts))
    topo.nodes = [Node(name, cluster) for cluster, name in node_keys]
    ids = _Refs(Counter(part.name for part in parts))
    for part in parts:
        if part.role:
            proxy = Proxy(part.name, part.role, part.name, part.node, part.cluster)
            topo.proxies.append(proxy)
            ids.add(part, "", proxy.id)
            continue
        pod = Pod(part.name, part.service, part.version, part.node, part.cluster, containers=[part.service])
        topo.pods.append(pod)
        ids.add(part, "", pod.id)
        if part.sidecar:
            sidecar = Proxy(f"{part.name}-envoy", "sidecar", part.name, part.node, part.cluster)
            pod.containers.append("envoy")
            topo.proxies.append(sidecar)
            ids.add(part, "/sidecar", sidecar.id)
    topo.services = list(dict.fromkeys(p.service for p in topo.pods))
    for calls, failover in ((sch.calls, False), (sch.failover, True)):
        for src, dst, *label in calls:
            topo.edges.append(Edge(ids.ref(src, stage), ids.ref(dst, stage), label=label[0] if label else "",
                                   failover=failover))
    for src, dst in sch.config:
        topo.edges.append(Edge(ids.ref(src, stage), ids.ref(dst, stage), label="", kind="config"))
    return topo


class _Refs:
    """What a schematic's calls may name: `reviews-v1` (`reviews-v1/sidecar`) where one cluster has that name,
    `cluster-2/reviews-v1` always."""

    def __init__(self, homes: Counter):
        self.homes = homes
        self.ids = {CLIENT: CLIENT}

    def add(self, part: info.Part, suffix: str, element: str) -> None:
        """Register an element under its part's names (with `/sidecar` for the sidecar in an app pod)."""
        self.ids[f"{part.cluster}/{part.name}{suffix}"] = element
        if self.homes[part.name] == 1:
            self.ids[f"{part.name}{suffix}"] = element

    def ref(self, name: str, stage: info.StageInfo) -> str:
        """The element id a schematic name refers to."""
        try:
            return self.ids[name]
        except KeyError:
            hint = f" (in several clusters: write cluster/{name})" if self.homes[name.split("/")[0]] > 1 else ""
            raise KeyError(f"stage {stage.number} schematic: call names unknown part {name!r}{hint}") from None
