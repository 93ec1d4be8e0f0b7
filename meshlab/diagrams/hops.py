"""Map trace hops (docs/internals.md) to the elements of a Topology, adding what the trace reveals."""

from __future__ import annotations

from meshlab.diagrams.model import Node, Pod, Proxy, Topology, service_id


def parse_hop(hop: dict | str) -> dict:
    """A hop as a dict, from a dict or from its 'k=v;k=v' header form."""
    if isinstance(hop, dict):
        return hop
    pairs = (part.split("=", 1) for part in str(hop).split(";") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}


def service_of(hop: dict) -> str | None:
    """The service an app or error hop belongs to; None for a proxy hop."""
    kind = hop.get("kind", "app")
    if kind == "error":
        return hop.get("target") or hop.get("service") or "?"
    if kind == "proxy":
        return None
    return hop.get("service") or hop.get("pod") or "?"


class Resolver:
    """Finds (or adds) the element a hop stands for."""

    def __init__(self, topo: Topology):
        self.topo = topo
        self.pods = {p.name: p for p in topo.pods}
        self.proxies = {p.name: p for p in topo.proxies}
        self.by_pod = {(p.pod, p.role): p for p in topo.proxies}

    def __call__(self, hop: dict) -> str:
        """The element id of one hop."""
        kind = hop.get("kind", "app")
        if kind == "proxy":
            return self._proxy(hop).id
        if kind == "error":
            if hop.get("pod") in self.pods:
                return self.pods[hop["pod"]].id
            return self.service(service_of(hop))
        return self._pod(hop).id

    def service(self, name: str) -> str:
        """The id of a service element, listed in the topology."""
        if name not in self.topo.services:
            self.topo.services.append(name)
        return service_id(name)

    def _pod(self, hop: dict) -> Pod:
        """The pod of an app hop."""
        name = hop.get("pod") or hop.get("name") or hop.get("service") or "?"
        if name not in self.pods:
            pod = Pod(name, hop.get("service", ""), hop.get("version", ""), hop.get("node", ""),
                      hop.get("cluster", ""))
            self._place(pod.cluster, pod.node)
            self.topo.pods.append(pod)
            self.pods[name] = pod
        return self.pods[name]

    def _proxy(self, hop: dict) -> Proxy:
        """The proxy of a proxy hop (a sidecar hop names its pod)."""
        name, role = hop.get("name", "?"), hop.get("role", "")
        found = self.proxies.get(name) or self.by_pod.get((name, role))
        if found is None and role == "sidecar" and name in self.pods:
            pod = self.pods[name]
            found = Proxy(f"{name}-envoy", role, name, pod.node, pod.cluster)
        if found is None:
            found = Proxy(name, role or "proxy", name, hop.get("node", ""), hop.get("cluster", ""))
            self._place(found.cluster, found.node)
        if found not in self.topo.proxies:
            self.topo.proxies.append(found)
            self.proxies[found.name] = found
            self.by_pod[(found.pod, found.role)] = found
        return found

    def _place(self, cluster: str, node: str) -> None:
        """Add a node the trace mentions but the facts did not."""
        if node and all((n.cluster, n.name) != (cluster, node) for n in self.topo.nodes):
            self.topo.nodes.append(Node(node, cluster))
