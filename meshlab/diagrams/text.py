"""A Topology as plain text: the headless fallback of every diagram."""

from __future__ import annotations

from meshlab.diagrams import style
from meshlab.diagrams.model import Pod, Topology


def _item(item, sidecars) -> str:
    """One pod or proxy in a node's line."""
    down = " [DOWN]" if item.down else ""
    if isinstance(item, Pod):
        extra = " (+ sidecar)" if item.id in sidecars else ""
        return f"{item.name}{extra}{down}"
    return f"{item.name} <{style.role_name(item.role)}>{down}"


def to_text(topo: Topology) -> str:
    """Clusters, nodes and their pods, then the calls with what was observed."""
    lines = [topo.title] if topo.title else []
    sidecars = topo.sidecars()
    standalone = [p for p in topo.proxies if p.role != "sidecar" or p not in sidecars.values()]
    for cluster in topo.clusters():
        lines.append(f"{topo.cluster_label(cluster)}:")
        members = [x for x in topo.pods + standalone if x.cluster == cluster]
        node_names = [n.name for n in topo.nodes if n.cluster == cluster]
        for node in [n for n in topo.nodes if n.cluster == cluster]:
            here = [_item(x, sidecars) for x in members if x.node == node.name]
            lines.append(f"  {node.name}{' [DOWN]' if node.down else ''}: {', '.join(here) or '(no pods)'}")
        loose = [_item(x, sidecars) for x in members if x.node not in node_names]
        if loose:
            lines.append(f"  (no node): {', '.join(loose)}")
    names = topo.names()
    calls = [e for e in topo.edges if e.kind == "call"]
    if calls:
        lines.append("calls:")
    for e in calls:
        info = " · ".join(filter(None, ["only after failover" if e.failover else "", e.describe()]))
        lines.append(f"  {names.get(e.src, e.src)} -> {names.get(e.dst, e.dst)}" + (f"  ({info})" if info else ""))
    pushes: dict[str, int] = {}
    for e in topo.edges:
        if e.kind == "config":
            pushes[e.src] = pushes.get(e.src, 0) + 1
    if pushes:
        lines.append("config pushes: " + ", ".join(f"{names.get(src, src)} -> {n} prox{'y' if n == 1 else 'ies'}"
                                                   for src, n in pushes.items()))
    lines += topo.notes
    return "\n".join(lines)
