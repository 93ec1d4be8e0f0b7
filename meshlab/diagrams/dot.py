"""Topology -> graphviz DOT source: clusters and nodes as boxes, pods inside, proxies by role."""

from __future__ import annotations

import graphviz

from meshlab.diagrams import borders, style
from meshlab.diagrams.model import CLIENT, Pod, Proxy, Topology, pod_id, service_id


class _Ids:
    """Short, DOT-safe ids for element ids ('pod:cluster/x' would read as a port)."""

    def __init__(self):
        self.map: dict[str, str] = {}

    def __call__(self, element: str) -> str:
        return self.map.setdefault(element, f"n{len(self.map)}")


def _placement(topo: Topology) -> dict[tuple[str, str], list]:
    """Pods and stand-alone proxies by (cluster, node); node '' when the node is unknown."""
    known = {(n.cluster, n.name) for n in topo.nodes}
    pods = {p.id for p in topo.pods}
    loose = [p for p in topo.proxies if p.role != "sidecar" or pod_id(p.cluster, p.pod) not in pods]
    out: dict[tuple[str, str], list] = {}
    for item in topo.pods + loose:
        key = (item.cluster, item.node if (item.cluster, item.node) in known else "")
        out.setdefault(key, []).append(item)
    return out


def _down(attrs: dict, down: bool) -> dict:
    """Attributes redrawn in red for a part that is down."""
    if down:
        attrs.update(color=style.DOWN, fontcolor=style.DOWN, fillcolor=style.DOWN_FILL, penwidth="2")
    return attrs


def _pod_label(pod: Pod) -> str:
    """'reviews v2' over the pod name (just the name when that says it all)."""
    title = pod.name if pod.name in (pod.service, f"{pod.service}-{pod.version}") or not pod.service \
        else f"{pod.service} {pod.version}".strip() + f"\\n{pod.name}"
    return title + ("\\nDOWN" if pod.down else "")


def _proxy_label(proxy: Proxy) -> str:
    """The proxy's name (or 'envoy') over its role."""
    role = style.role_name(proxy.role)
    head = "envoy" if proxy.name in (proxy.role, "") or proxy.role == "sidecar" else proxy.name
    return f"{head}\\n{role}" + ("\\nDOWN" if proxy.down else "")


def _draw_proxy(g, ids: _Ids, proxy: Proxy) -> None:
    """A proxy filled with its role's colour; the control plane as a component."""
    shape = "component" if proxy.role == "control-plane" else "box"
    attrs = dict(shape=shape, style="filled,rounded,bold", fillcolor=style.role_fill(proxy.role), tooltip=proxy.name)
    g.node(ids(proxy.id), _proxy_label(proxy), **_down(attrs, proxy.down))


def _draw_pod(g, ids: _Ids, pod: Pod, sidecar: Proxy | None, index: str) -> None:
    """A plain pod as one box; a pod with a sidecar as a dashed box holding app and envoy."""
    app = dict(fillcolor=style.APP_FILL, tooltip=pod.name)
    if sidecar is None:
        g.node(ids(pod.id), _pod_label(pod), **_down(app, pod.down))
        return
    with g.subgraph(name=f"cluster_pod_{index}") as box:
        box.attr(label=pod.name + (" DOWN" if pod.down else ""), style="rounded,dashed", color="#777777",
                 fontcolor=style.DOWN if pod.down else "#333333", fontsize="9")
        if pod.down:
            box.attr(color=style.DOWN, style="rounded,filled", fillcolor=style.DOWN_FILL)
        version = pod.version if pod.version and pod.version in pod.name else ""
        label = f"{pod.service or pod.name} {version}".strip() + "\\napp"
        box.node(ids(pod.id), label, **_down(app, pod.down))
        _draw_proxy(box, ids, sidecar)


def _draw_members(g, ids: _Ids, topo: Topology, members: list, prefix: str) -> None:
    """The pods and proxies placed in one box."""
    sidecars = topo.sidecars()
    for i, item in enumerate(members):
        if isinstance(item, Pod):
            _draw_pod(g, ids, item, sidecars.get(item.id), f"{prefix}_{i}")
        else:
            _draw_proxy(g, ids, item)


def _draw_edges(g, ids: _Ids, topo: Topology, free: set = frozenset()) -> None:
    """Calls (thicker with more traffic, red with failures, dashed blue when made only after failover) and dashed
    config pushes; calls in `free` do not rank their ends."""
    top = max([e.count or 0 for e in topo.edges] + [1])
    for e in topo.edges:
        if e.kind == "config":
            g.edge(ids(e.src), ids(e.dst), style="dashed", color=style.DOWN if e.failed else style.CONFIG,
                   arrowhead="vee", constraint="false",
                   tooltip="no config push: the control plane is down" if e.failed else "config push (xDS)")
            continue
        attrs = dict(label=e.describe(), tooltip=e.describe() or "call")
        if e.failover:
            attrs.update(style="dashed", color=style.FAILOVER, fontcolor=style.FAILOVER,
                         tooltip=" · ".join(filter(None, ["only after failover", e.describe()])))
        if e.count:
            attrs["penwidth"] = f"{1 + 2.5 * e.count / top:.2f}"
        if e.failed:
            attrs.update(color=style.DOWN, fontcolor=style.DOWN)
        if (e.src, e.dst) in free:
            attrs["constraint"] = "false"
        g.edge(ids(e.src), ids(e.dst), **attrs)


def _draw_hints(g, ids: _Ids, hints: borders.Hints) -> None:
    """The invisible edges that put several clusters' gateways on their facing borders (borders.py)."""
    for column in hints.columns:
        with g.subgraph() as same:
            same.attr(rank="same")
            for element in column:
                same.node(ids(element))
    for src, dst in hints.invisible:
        g.edge(ids(src), ids(dst), style="invis", weight="0")


def _legend(topo: Topology) -> str:
    """What the dashed lines mean, under the title."""
    lines = []
    reached = {e.dst for e in topo.edges if e.kind == "config"}
    if reached:
        note = ""
        if any(p.role == "sidecar" and p.id not in reached for p in topo.proxies):  # a schematic drawing only some
            roles = sorted({style.role_name(p.role) for p in topo.proxies if p.id in reached})
            note = f" to every proxy (drawn: to each {' and '.join(roles)})"
        lines.append("dashed: config pushed by the control plane" + note)
    if any(e.failover for e in topo.edges):
        lines.append("dashed blue: calls made only after failover")
    return "".join(f"\\n{line}" for line in lines)


def to_dot(topo: Topology) -> str:
    """The DOT source of a topology."""
    ids = _Ids()
    legend = _legend(topo)
    g = graphviz.Digraph(
        "mesh",
        graph_attr=dict(rankdir="LR", label=topo.title + legend, labelloc="t", fontname=style.FONT,
                        fontsize="13", newrank="true", nodesep="0.2", ranksep="0.45", bgcolor="white"),
        node_attr=dict(fontname=style.FONT, fontsize="10", shape="box", style="filled,rounded",
                       color="#666666", margin="0.12,0.05", height="0.4"),
        edge_attr=dict(fontname=style.FONT, fontsize="9", color=style.LINE, arrowsize="0.7", fontcolor="#333333"),
    )
    g.node(ids(CLIENT), "client", shape="oval", style="filled", fillcolor="#ffffff")
    placed = _placement(topo)
    referenced = {e.dst for e in topo.edges} | {e.src for e in topo.edges}
    services = [s for s in topo.services if service_id(s) in referenced]
    clusters = topo.clusters()
    hints = borders.hints(topo)
    for ci, cluster in enumerate(clusters):
        with g.subgraph(name=f"cluster_{ci}") as box:
            box.attr(label=topo.cluster_label(cluster), style="rounded", color="#888888", fontsize="11", labeljust="l")
            for ni, node in enumerate(n for n in topo.nodes if n.cluster == cluster):
                with box.subgraph(name=f"cluster_{ci}_{ni}") as nbox:
                    nbox.attr(label=node.name + (" DOWN" if node.down else ""), style="filled,rounded",
                              fillcolor=style.DOWN_FILL if node.down else style.NODE_FILL,
                              color=style.DOWN if node.down else "#aaaaaa",
                              fontcolor=style.DOWN if node.down else "#333333", fontsize="10")
                    members = placed.get((cluster, node.name), [])
                    _draw_members(nbox, ids, topo, members, f"{ci}_{ni}")
                    if not members:
                        nbox.node(ids(f"empty:{ci}/{ni}"), "(no pods)", shape="plaintext", style="")
            _draw_members(box, ids, topo, placed.get((cluster, ""), []), f"{ci}")
            if len(clusters) == 1:
                _draw_services(box, ids, services)
    if len(clusters) != 1:
        _draw_services(g, ids, services)
    _draw_edges(g, ids, topo, hints.free)
    _draw_hints(g, ids, hints)
    return g.source


def _draw_services(g, ids: _Ids, services: list[str]) -> None:
    """Services that calls reached without reaching a pod."""
    for s in services:
        g.node(ids(service_id(s)), f"service {s}", shape="oval", style="dashed", tooltip=f"service {s}")
