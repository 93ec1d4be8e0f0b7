"""Build a Topology from a running lab's facts (PodInfo, NodeInfo, ProxyInfo) and its last traffic run."""

from __future__ import annotations

from meshlab.diagrams.model import Node, Pod, Proxy, Topology
from meshlab.diagrams.observed import add_traffic

ROLE_LABELS = ("meshlab.io/proxy-role", "meshlab.io/role")
CONTROL_PLANE_APPS = ("istiod", "meshlab-controlplane", "control-plane")
_UP = ("running", "ready", "live", "ok", "up", "")
_DEAD = ("killed", "exited", "terminated", "crashed", "failed", "oomkilled")


def pod_down(pod) -> bool:
    """A pod counts as down when it is not ready (and not merely starting) or a container died."""
    if any(str(c.state).lower() in _DEAD for c in getattr(pod, "containers", [])):
        return True
    return not pod.ready and str(pod.phase).lower() != "pending"


def pod_role(pod) -> str:
    """The proxy role a pod carries in its labels ('' for an app pod)."""
    for key in ROLE_LABELS:
        if pod.labels.get(key):
            return pod.labels[key]
    return "control-plane" if pod.labels.get("app") in CONTROL_PLANE_APPS else ""


def from_facts(pods=(), nodes=(), proxies=(), traffic=None, title: str = "Live lab") -> Topology:
    """The lab as it is now, with the edges of the last traffic run (if given)."""
    topo = Topology(title=title)
    topo.nodes = [Node(n.name, n.cluster, down=not n.ready) for n in nodes]
    down_nodes = {(n.cluster, n.name) for n in topo.nodes if n.down}
    proxy_pods = {p.pod for p in proxies if p.role != "sidecar"}
    by_name = {}
    for info in pods:
        down = pod_down(info) or (info.cluster, info.node) in down_nodes
        role = pod_role(info)
        if info.name in proxy_pods:
            by_name[info.name] = (info, down)
            continue
        if role and role != "sidecar":
            topo.proxies.append(Proxy(info.name, role, info.name, info.node, info.cluster, down))
            continue
        topo.pods.append(Pod(info.name, info.service, info.version, info.node, info.cluster, down,
                             [c.name for c in info.containers]))
        by_name[info.name] = (info, down)
    for p in proxies:
        host = by_name.get(p.pod)
        cluster = host[0].cluster if host else p.cluster
        down = str(p.state).lower() not in _UP or (host is not None and host[1] and p.role != "sidecar")
        topo.proxies.append(Proxy(p.name, p.role, p.pod, p.node, cluster, down))
    topo.services = list(dict.fromkeys(p.service for p in topo.pods if p.service))
    _config_pushes(topo)
    if traffic is not None:
        add_traffic(topo, traffic)
    return topo


def _config_pushes(topo: Topology) -> None:
    """A dashed push from each cluster's control plane to every sidecar and gateway it configures (red while it
    is down)."""
    for cp in (p for p in topo.proxies if p.role == "control-plane"):
        for sidecar in (p for p in topo.proxies if p.role in ("sidecar", "gateway") and p.cluster == cp.cluster):
            topo.edge(cp.id, sidecar.id, kind="config").failed = int(cp.down)


def from_lab(lab, traffic=None, title: str = "Live lab") -> Topology:
    """The same, asking a lab (anything with pods(), nodes(), proxies()) for its facts."""
    return from_facts(lab.pods(), lab.nodes(), lab.proxies(), traffic, title)
