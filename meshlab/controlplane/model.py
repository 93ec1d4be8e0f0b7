"""Immutable inputs of the control plane (services, pods, Istio policies), built from the runtime's watch payload."""

from __future__ import annotations

from dataclasses import dataclass

from .names import (  # noqa: F401  (re-exported: model.fqdn, model.parse_node_id, ... as before)
    ROOT_NAMESPACE, TRUST_DOMAIN, SERVICE_SUFFIX, OUTBOUND_PORT, INBOUND_PORT, GATEWAY_PORT, GATEWAY_LABEL,
    REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL, PROXY_KINDS, Frozen, freeze, fqdn,
    resolve_host, spiffe_id, format_node_id, parse_proxy_id, parse_node_id, selects)
from .schema import is_istio


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service; target_port is a number or the name of a container port."""
    name: str
    port: int
    target_port: int | str


@dataclass(frozen=True)
class Service:
    """A Kubernetes Service as the mesh sees it."""
    name: str
    namespace: str
    selector: Frozen
    ports: tuple[ServicePort, ...]

    @property
    def fqdn(self) -> str:
        """reviews.default.svc.cluster.local"""
        return fqdn(self.name, self.namespace)


@dataclass(frozen=True, order=True)
class Locality:
    """Where a workload runs: its node's region / zone / subzone (all empty when unknown)."""
    region: str = ""
    zone: str = ""
    subzone: str = ""

    def envoy(self) -> dict:
        """Envoy's core.Locality (empty fields left out)."""
        return {k: v for k, v in (("region", self.region), ("zone", self.zone), ("sub_zone", self.subzone)) if v}


@dataclass(frozen=True)
class Pod:
    """A pod from the watch payload; cluster/network/locality tell where it runs in a multi-cluster lab."""
    name: str
    namespace: str
    ip: str
    node: str
    labels: Frozen
    annotations: Frozen
    service_account: str
    ready: bool
    injected: bool
    ports: Frozen
    cluster: str = ""
    network: str = ""
    locality: Locality = Locality()
    host_ip: str = ""
    host_ports: Frozen = Frozen()

    @property
    def identity(self) -> str:
        """The pod's SPIFFE id (from its service account)."""
        return spiffe_id(self.namespace, self.service_account)

    @property
    def is_gateway(self) -> bool:
        """Whether the pod is an east-west gateway (label istio: eastwestgateway)."""
        return self.labels.get(GATEWAY_LABEL[0]) == GATEWAY_LABEL[1]

    @property
    def node_id(self) -> str:
        """The node id injection gives the pod's sidecar (a gateway's: router~...)."""
        return format_node_id(self.ip, self.name, self.namespace, "router" if self.is_gateway else "sidecar")

    @property
    def gateway_address(self) -> tuple[str, int]:
        """Where other networks reach this gateway: host_ip:hostPort of its 15443 port, else ip:15443."""
        names = [name for name, port in self.ports.items() if str(port) == str(GATEWAY_PORT)]
        host_port = next((self.host_ports[n] for n in names if n in self.host_ports), None)
        if host_port and self.host_ip:
            return self.host_ip, int(host_port)
        return self.ip, GATEWAY_PORT

    def target(self, port: ServicePort) -> int | None:
        """The pod port a Service port sends to (a named targetPort looked up in the pod's ports)."""
        if isinstance(port.target_port, int):
            return port.target_port
        if str(port.target_port).isdigit():
            return int(port.target_port)
        return self.ports.get(port.target_port)


@dataclass(frozen=True)
class Policy:
    """One Istio object: kind, where it lives, its spec; `created` orders conflicts (oldest wins, as Istio)."""
    kind: str
    name: str
    namespace: str
    spec: Frozen
    created: str = ""

    @property
    def selector(self) -> Frozen:
        """spec.selector.matchLabels (empty: the whole namespace, or the mesh from the root namespace)."""
        return (self.spec.get("selector") or {}).get("matchLabels") or Frozen()

    def applies_to(self, pod: Pod) -> bool:
        """AuthorizationPolicy scope: its own namespace, or every namespace from the root one; then its selector."""
        in_scope = self.namespace in (pod.namespace, ROOT_NAMESPACE)
        return in_scope and (not self.selector or selects(self.selector, pod.labels))


@dataclass(frozen=True)
class Model:
    """Everything the control plane translates, at one runtime revision; remote_pods are other clusters' pods."""
    revision: int
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    policies: tuple[Policy, ...]
    cluster: str = ""
    network: str = ""
    remote_pods: tuple[Pod, ...] = ()

    @property
    def multicluster(self) -> bool:
        """Whether this lab spans clusters (the local payload names its cluster)."""
        return bool(self.cluster)

    def remote_pods_of(self, service: Service) -> tuple[Pod, ...]:
        """Pods of other clusters a Service selects (namespace sameness: same namespace, same selector)."""
        return tuple(p for p in self.remote_pods if p.namespace == service.namespace
                     and selects(service.selector, p.labels))

    def gateways(self, network: str) -> tuple[Pod, ...]:
        """Ready east-west gateways of a network with an address, from any cluster, by name."""
        return tuple(p for p in self.pods + self.remote_pods
                     if p.is_gateway and p.network == network and p.ready and p.ip)

    def of_kind(self, kind: str) -> tuple[Policy, ...]:
        """Policies of one kind, oldest first (Istio's order for conflicts)."""
        return tuple(p for p in self.policies if p.kind == kind)

    def service(self, host: str) -> Service | None:
        """The Service whose FQDN is host."""
        return next((s for s in self.services if s.fqdn == host), None)

    def pod(self, name: str, namespace: str) -> Pod | None:
        """A pod by name and namespace."""
        return next((p for p in self.pods if p.name == name and p.namespace == namespace), None)

    def pods_of(self, service: Service) -> tuple[Pod, ...]:
        """Pods (ready or not) a Service selects."""
        return tuple(p for p in self.pods if p.namespace == service.namespace and selects(service.selector, p.labels))

    def services_of(self, pod: Pod) -> tuple[Service, ...]:
        """Services that select a pod."""
        return tuple(s for s in self.services if s.namespace == pod.namespace and selects(s.selector, pod.labels))

    def by_node_id(self, node_id: str) -> Pod | None:
        """The pod a proxy's node id names (by name + namespace, never trusting anything else)."""
        _, _, name, namespace = parse_proxy_id(node_id)
        return self.pod(name, namespace)


def _service(doc: dict) -> Service:
    meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    ports = tuple(ServicePort(str(p.get("name") or ""), int(p["port"]), p.get("targetPort", p["port"]))
                  for p in spec.get("ports") or [])
    return Service(meta["name"], meta.get("namespace") or "default", freeze(spec.get("selector") or {}), ports)


def node_localities(nodes) -> dict[str, Locality]:
    """{node name: Locality} from the payload's nodes and their topology labels."""
    out = {}
    for node in nodes or ():
        labels = node.get("labels") or {}
        out[node.get("name") or ""] = Locality(labels.get(REGION_LABEL) or "", labels.get(ZONE_LABEL) or "",
                                               labels.get(SUBZONE_LABEL) or "")
    return out


def pod_locality(data: dict, nodes: dict[str, Locality]) -> Locality:
    """A pod's locality: its own `locality` field, else its node's topology labels, else unknown."""
    own = data.get("locality") or {}
    if own:
        return Locality(own.get("region") or "", own.get("zone") or "", own.get("subzone") or "")
    return nodes.get(data.get("node") or "", Locality())


def _pod(data: dict, payload: dict, nodes: dict[str, Locality]) -> Pod:
    return Pod(name=data["name"], namespace=data.get("namespace") or "default", ip=data.get("ip") or "",
               node=data.get("node") or "", labels=freeze(data.get("labels") or {}),
               annotations=freeze(data.get("annotations") or {}),
               service_account=data.get("service_account") or "default", ready=bool(data.get("ready")),
               injected=bool(data.get("injected")), ports=freeze(data.get("ports") or {}),
               cluster=payload.get("cluster") or "", network=payload.get("network") or "",
               locality=pod_locality(data, nodes), host_ip=data.get("host_ip") or "",
               host_ports=freeze(data.get("host_ports") or {}))


def pods_of_payload(payload: dict) -> tuple[Pod, ...]:
    """Every pod of one watch payload, with its cluster, network and locality, by namespace and name."""
    nodes = node_localities(payload.get("nodes"))
    return tuple(sorted((_pod(p, payload, nodes) for p in payload.get("pods") or []),
                        key=lambda p: (p.namespace, p.name)))


def services_of_payload(payload: dict) -> tuple[Service, ...]:
    """Every v1 Service of one watch payload, by namespace and name."""
    objects = [o for o in payload.get("objects") or [] if isinstance(o, dict)]
    return tuple(sorted((_service(o) for o in objects if o.get("kind") == "Service" and o.get("apiVersion") == "v1"),
                        key=lambda s: (s.namespace, s.name)))


def _policy(doc: dict) -> Policy:
    meta = doc.get("metadata") or {}
    return Policy(doc["kind"], meta["name"], meta.get("namespace") or "default", freeze(doc.get("spec") or {}),
                  str(meta.get("creationTimestamp") or ""))


def from_watch(payload: dict) -> Model:
    """The Model of one watch answer ({"revision", "objects", "pods"}; docs/controlplane.md)."""
    objects = [o for o in payload.get("objects") or [] if isinstance(o, dict)]
    policies = tuple(sorted((_policy(o) for o in objects if is_istio(o)),
                            key=lambda p: (p.kind, p.created, p.namespace, p.name)))
    return Model(int(payload.get("revision") or 0), services_of_payload(payload), pods_of_payload(payload), policies,
                 cluster=payload.get("cluster") or "", network=payload.get("network") or "")


def from_watches(local: dict, remotes: list[dict]) -> Model:
    """The local cluster's Model plus its peers' Services (local wins) and pods (endpoints); config stays local."""
    base = from_watch(local)
    peers = [r for r in remotes or () if r and (r.get("cluster") or "") not in ("", base.cluster)]
    services = {(s.namespace, s.name): s for peer in reversed(peers) for s in services_of_payload(peer)}
    services.update({(s.namespace, s.name): s for s in base.services})
    remote_pods = tuple(p for peer in sorted(peers, key=lambda r: r["cluster"]) for p in pods_of_payload(peer))
    return Model(base.revision, tuple(services[k] for k in sorted(services)), base.pods, base.policies,
                 cluster=base.cluster, network=base.network, remote_pods=remote_pods)


merge = from_watches  # the name docs/multicluster.md also gives it
