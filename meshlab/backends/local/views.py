"""What the local runtime shows: pods, nodes, proxies, Services, endpoints, DNS and the watch payload."""

from __future__ import annotations

import hmac

from ..base import NodeInfo, ProxyInfo
from . import ingress, inject, network, watch


class Views:
    """The read-only half of the Runtime (a mixin over its objects, pods and addresses)."""

    def pod_infos(self) -> list[dict]:
        return [p.info().to_dict() for p in sorted(self.pods.values(), key=lambda p: (p.node, p.name))]

    def node_infos(self) -> list[dict]:
        return [NodeInfo(n.name, n.ip, n.ready, self.identity.name).to_dict() for n in self.nodes.values()]

    def proxy_infos(self) -> list[dict]:
        out = []
        for pod in sorted(self.pods.values(), key=lambda p: (p.node, p.name)):
            for c in pod.containers:
                role = pod.proxy_role(c)
                if role:
                    out.append(ProxyInfo(self.proxy_name(pod, c), role, pod.name, pod.node, c.state(), c.admin,
                                         self.identity.name).to_dict())
        return out

    def review(self, token: str) -> dict | None:
        """Kubernetes' TokenReview: the pod (and service account) a token was issued to, or None."""
        for pod in self.pods.values():
            if token and hmac.compare_digest(pod.token.encode(), str(token).encode()):
                return {"namespace": pod.namespace, "name": pod.name,
                        "serviceAccount": pod.spec.get("serviceAccountName") or "default"}
        return None

    def entrypoint(self) -> str:
        """The edge when there is one, else the frontend Service's ClusterIP."""
        if ("Deployment", ingress.EDGE_NAMESPACE, ingress.EDGE_NAME) in self.objects:
            return f"http://{self.entry_ip}:{ingress.EDGE_PORT}"
        for (ns, name), ip in self.cluster_ips.items():
            if name == "frontend":
                svc = self.objects[("Service", ns, name)]
                return f"http://{ip}:{svc['spec']['ports'][0]['port']}"
        return ""

    def services(self) -> list[dict]:
        ips = {**self.cluster_ips, **{key: "None" for key in self.headless_ips()}}
        return [{"namespace": ns, "name": name, "cluster_ip": ip,
                 "endpoints": [f"{a}:{p}" for port in self.objects[("Service", ns, name)]["spec"].get("ports") or []
                               for a, p in self.endpoints(ns, name, port["port"])]}
                for (ns, name), ip in sorted(ips.items())]

    def endpoints(self, namespace: str, service: str, port_ref) -> list[tuple[str, int]]:
        """Ready pod addresses behind a Service port."""
        svc = self.objects.get(("Service", namespace, service))
        port = network.service_port(svc, port_ref) if svc else None
        if port is None:
            return []
        selector = svc["spec"].get("selector") or {}
        out = []
        for pod in sorted(self.pods.values(), key=lambda p: p.name):
            if pod.namespace == namespace and pod.ready and not pod.deleting and network.match_selector(selector, pod.labels):
                target = network.target_port(pod.spec, port.get("targetPort", port["port"]))
                if inject.is_injected(pod.annotations):
                    target = inject.INBOUND_PORT  # as Istio's iptables: inbound traffic enters the sidecar
                if target:
                    out.append((pod.ip, target))
        return out

    def host_port_backends(self, node: str, host_port) -> list[tuple[str, int]]:
        """The ready pod on a node that claims a hostPort."""
        for pod in self.pods.values():
            if pod.node != node or not pod.ready:
                continue
            for container in pod.spec.get("containers") or []:
                for port in container.get("ports") or []:
                    if str(port.get("hostPort")) == str(host_port):
                        return [(pod.ip, int(port["containerPort"]))]
        return []

    def resolve(self, name: str) -> list[str]:
        """Cluster DNS for the lab DNS server."""
        return network.resolve(name, self.cluster_ips, {n.name: n.ip for n in self.nodes.values()}, self.headless_ips())

    def headless_ips(self) -> dict[tuple, list[str]]:
        """(namespace, name) -> ready pod IPs of every headless Service."""
        out = {}
        for svc in self.of_kind("Service"):
            if network.is_headless(svc):
                ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
                selector = svc["spec"].get("selector") or {}
                out[(ns, name)] = [p.ip for p in sorted(self.pods.values(), key=lambda p: p.name)
                                   if p.namespace == ns and p.ready and not p.deleting
                                   and network.match_selector(selector, p.labels)]
        return out

    def watch_payload(self) -> dict:
        """The watch API's answer for the current revision (docs/controlplane.md)."""
        return watch.payload(self.revisions.revision, self.objects, self.pods.values(), self.identity, self.nodes.values())
