"""Several clusters in one diagram, each with its east-west gateway on the side facing the next one.

Graphviz ranks left to right, so the clusters stack top to bottom, each later one starting where calls enter it:
at its gateway. The first cluster's gateway goes in its last column, every later cluster's in its first, each
with its control plane in the same column (a short config push); what runs outside every cluster (a legacy host)
goes in the first column, with the client, where the first cluster ends and the second starts. These are ranks,
fixed by invisible edges. Graphviz orders the node boxes within a rank itself; the edges chosen here (checked on
stage 6 with graphviz-pure) leave the first cluster's gateway in its lowest node box and a later cluster's in its
highest, facing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshlab.diagrams.model import CLIENT, Topology

GATEWAY = "gateway"
CONTROL_PLANE = "control-plane"


@dataclass
class Hints:
    """What dot.py adds to a drawing of several clusters (nothing for one)."""

    columns: list[list[str]] = field(default_factory=list)  # element ids drawn in one rank
    invisible: list[tuple[str, str]] = field(default_factory=list)  # edges that only rank their ends
    free: set[tuple[str, str]] = field(default_factory=set)  # call edges that must not rank their ends


def hints(topo: Topology) -> Hints:
    """The layout hints of a topology with two or more named clusters, for those with an east-west gateway."""
    out = Hints()
    gateways = {}
    for proxy in topo.proxies:
        if proxy.role == GATEWAY and proxy.cluster:
            gateways.setdefault(proxy.cluster, proxy.id)
    stacked = [c for c in topo.clusters() if c in gateways]
    if len([c for c in topo.clusters() if c]) < 2 or not stacked:
        return out
    calls = [e for e in topo.edges if e.kind == "call"]
    first = gateways[stacked[0]]
    out.free = {(e.src, e.dst) for e in calls if first in (e.src, e.dst)}  # calls into cluster 1 run backwards
    for index, cluster in enumerate(stacked):
        gateway = gateways[cluster]
        planes = [p.id for p in topo.proxies if p.role == CONTROL_PLANE and p.cluster == cluster][:1]
        out.columns.append([gateway] + planes)
        members = [x.id for x in (*topo.pods, *topo.proxies)
                   if x.cluster == cluster and x.id != gateway and x.id not in planes]
        if index == 0:  # after everything that ends a call in the cluster
            inside = {e.src for e in calls if (e.src, e.dst) not in out.free and e.dst in members and e.src != e.dst}
            out.invisible += [(m, gateway) for m in members if m not in inside]
        else:  # before everything in the cluster
            out.invisible += [(gateway, m) for m in members]
    outside = [x.id for x in (*topo.pods, *topo.proxies) if not x.cluster]
    if outside:
        out.columns.append([CLIENT] + outside)
        out.free |= {(e.src, e.dst) for e in calls if e.dst in outside}
    return out
