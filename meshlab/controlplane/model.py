"""Immutable inputs of the control plane (services, pods, Istio policies), built from the runtime's watch payload."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import is_istio

ROOT_NAMESPACE = "mesh-system"
TRUST_DOMAIN = "cluster.local"
SERVICE_SUFFIX = "svc.cluster.local"
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006


class Frozen(dict):
    """A dict that refuses changes (JSON-serialisable, unlike MappingProxyType)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("model data is immutable")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self):
        return hash(tuple(sorted(self.items(), key=repr)))


def freeze(value):
    """A deep immutable copy of JSON-like data: dicts become Frozen, lists become tuples."""
    if isinstance(value, dict):
        return Frozen({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def fqdn(name: str, namespace: str) -> str:
    """A Service's cluster name: reviews.default.svc.cluster.local."""
    return f"{name}.{namespace}.{SERVICE_SUFFIX}"


def resolve_host(host: str, namespace: str) -> str:
    """A VirtualService/DestinationRule host as Istio reads it: a short name (no dot) is in the rule's namespace."""
    return fqdn(host, namespace) if "." not in host and host != "*" else host


def spiffe_id(namespace: str, service_account: str) -> str:
    """The SPIFFE identity of a workload: spiffe://cluster.local/ns/NS/sa/SA."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account or 'default'}"


def format_node_id(ip: str, pod: str, namespace: str) -> str:
    """Istio's sidecar node id: sidecar~IP~POD.NS~NS.svc.cluster.local."""
    return f"sidecar~{ip}~{pod}.{namespace}~{namespace}.{SERVICE_SUFFIX}"


def parse_node_id(node_id: str) -> tuple[str, str, str]:
    """(ip, pod, namespace) from a sidecar node id; ValueError when it is not one."""
    parts = node_id.split("~")
    if len(parts) != 4 or parts[0] != "sidecar" or "." not in parts[2]:
        raise ValueError(f"not a sidecar node id: {node_id!r}")
    pod, namespace = parts[2].rsplit(".", 1)
    if not pod or parts[3] != f"{namespace}.{SERVICE_SUFFIX}":
        raise ValueError(f"not a sidecar node id: {node_id!r}")
    return parts[1], pod, namespace


def selects(selector, labels) -> bool:
    """Whether a label selector (matchLabels form) matches labels; an empty selector matches nothing here."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


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


@dataclass(frozen=True)
class Pod:
    """A pod from the watch payload."""
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

    @property
    def identity(self) -> str:
        """The pod's SPIFFE id (from its service account)."""
        return spiffe_id(self.namespace, self.service_account)

    @property
    def node_id(self) -> str:
        """The node id injection gives the pod's sidecar."""
        return format_node_id(self.ip, self.name, self.namespace)

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
    """Everything the control plane translates, at one runtime revision."""
    revision: int
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    policies: tuple[Policy, ...]

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
        _, name, namespace = parse_node_id(node_id)
        return self.pod(name, namespace)


def _service(doc: dict) -> Service:
    meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    ports = tuple(ServicePort(str(p.get("name") or ""), int(p["port"]), p.get("targetPort", p["port"]))
                  for p in spec.get("ports") or [])
    return Service(meta["name"], meta.get("namespace") or "default", freeze(spec.get("selector") or {}), ports)


def _pod(data: dict) -> Pod:
    return Pod(name=data["name"], namespace=data.get("namespace") or "default", ip=data.get("ip") or "",
               node=data.get("node") or "", labels=freeze(data.get("labels") or {}),
               annotations=freeze(data.get("annotations") or {}),
               service_account=data.get("service_account") or "default", ready=bool(data.get("ready")),
               injected=bool(data.get("injected")), ports=freeze(data.get("ports") or {}))


def _policy(doc: dict) -> Policy:
    meta = doc.get("metadata") or {}
    return Policy(doc["kind"], meta["name"], meta.get("namespace") or "default", freeze(doc.get("spec") or {}),
                  str(meta.get("creationTimestamp") or ""))


def from_watch(payload: dict) -> Model:
    """The Model of one watch answer ({"revision", "objects", "pods"}; docs/controlplane.md)."""
    objects = [o for o in payload.get("objects") or [] if isinstance(o, dict)]
    services = tuple(sorted((_service(o) for o in objects if o.get("kind") == "Service" and o.get("apiVersion") == "v1"),
                            key=lambda s: (s.namespace, s.name)))
    policies = tuple(sorted((_policy(o) for o in objects if is_istio(o)),
                            key=lambda p: (p.kind, p.created, p.namespace, p.name)))
    pods = tuple(sorted((_pod(p) for p in payload.get("pods") or []), key=lambda p: (p.namespace, p.name)))
    return Model(int(payload.get("revision") or 0), services, pods, policies)
