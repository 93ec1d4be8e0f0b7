"""Names and small pure helpers of the mesh: constants, immutable data, FQDNs, SPIFFE ids, node ids, selectors."""

from __future__ import annotations

ROOT_NAMESPACE = "mesh-system"
TRUST_DOMAIN = "cluster.local"
SERVICE_SUFFIX = "svc.cluster.local"
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
GATEWAY_PORT = 15443  # the east-west gateway's SNI passthrough port
GATEWAY_LABEL = ("istio", "eastwestgateway")
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
PROXY_KINDS = ("sidecar", "router")


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


def format_node_id(ip: str, pod: str, namespace: str, kind: str = "sidecar") -> str:
    """Istio's node id: sidecar~IP~POD.NS~NS.svc.cluster.local (`router~...` for a gateway)."""
    return f"{kind}~{ip}~{pod}.{namespace}~{namespace}.{SERVICE_SUFFIX}"


def parse_proxy_id(node_id: str) -> tuple[str, str, str, str]:
    """(kind, ip, pod, namespace) from a sidecar or router node id; ValueError when it is neither."""
    parts = node_id.split("~")
    if len(parts) != 4 or parts[0] not in PROXY_KINDS or "." not in parts[2]:
        raise ValueError(f"not a proxy node id: {node_id!r}")
    pod, namespace = parts[2].rsplit(".", 1)
    if not pod or parts[3] != f"{namespace}.{SERVICE_SUFFIX}":
        raise ValueError(f"not a proxy node id: {node_id!r}")
    return parts[0], parts[1], pod, namespace


def parse_node_id(node_id: str) -> tuple[str, str, str]:
    """(ip, pod, namespace) from a sidecar node id; ValueError when it is not one."""
    kind, ip, pod, namespace = parse_proxy_id(node_id) if node_id.startswith("sidecar~") else ("", "", "", "")
    if kind != "sidecar":
        raise ValueError(f"not a sidecar node id: {node_id!r}")
    return ip, pod, namespace


def selects(selector, labels) -> bool:
    """Whether a label selector (matchLabels form) matches labels; an empty selector matches nothing here."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
