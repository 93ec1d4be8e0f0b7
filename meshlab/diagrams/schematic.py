"""Build a Topology from a stage's schematic in meshlab.stages.info (no cluster needed); its pods and their
nodes come from the stage's manifests (placement.py), the calls from the schematic."""

from __future__ import annotations

from meshlab.stages import info
from meshlab.diagrams import placement
from meshlab.diagrams.model import CLIENT, Edge, Node, Pod, Proxy, Topology


def from_stage(stage: int | str | info.StageInfo) -> Topology:
    """The typical topology of a stage, with its calls and control-plane pushes: every pod the stage deploys,
    on the node the local lab runs it on."""
    stage = info.get(stage)
    sch = stage.schematic
    topo = Topology(title=stage.label)
    if placement.derivable(stage.number):
        parts = placement.parts(stage.number, tuple(sch.parts))
        cluster = next((p.cluster for p in parts), "")
        node_keys = [(cluster, n) for n in placement.node_names(stage.number)]
    else:  # a sketch of several clusters
        parts = sch.parts
        node_keys = list(sch.nodes) or list(dict.fromkeys((p.cluster, p.node) for p in parts))
    topo.nodes = [Node(name, cluster) for cluster, name in node_keys]
    ids = {CLIENT: CLIENT}
    for part in parts:
        if part.role:
            proxy = Proxy(part.name, part.role, part.name, part.node, part.cluster)
            topo.proxies.append(proxy)
            ids[part.name] = proxy.id
            continue
        pod = Pod(part.name, part.service, part.version, part.node, part.cluster, containers=[part.service])
        topo.pods.append(pod)
        ids[part.name] = pod.id
        if part.sidecar:
            sidecar = Proxy(f"{part.name}-envoy", "sidecar", part.name, part.node, part.cluster)
            pod.containers.append("envoy")
            topo.proxies.append(sidecar)
            ids[f"{part.name}/sidecar"] = sidecar.id
    topo.services = list(dict.fromkeys(p.service for p in topo.pods))
    for src, dst, *label in sch.calls:
        topo.edges.append(Edge(_ref(ids, src, stage), _ref(ids, dst, stage), label=label[0] if label else ""))
    for src, dst in sch.config:
        topo.edges.append(Edge(_ref(ids, src, stage), _ref(ids, dst, stage), label="", kind="config"))
    return topo


def _ref(ids: dict[str, str], name: str, stage: info.StageInfo) -> str:
    """The element id a schematic name refers to."""
    try:
        return ids[name]
    except KeyError:
        raise KeyError(f"stage {stage.number} schematic: call names unknown part {name!r}") from None
