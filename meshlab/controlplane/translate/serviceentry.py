"""ServiceEntry -> outbound virtual hosts, clusters and endpoints for hosts outside the Service registry."""

from __future__ import annotations

from ..model import Locality, Model, Policy, Pod
from .clusters import destination_rule_for, eds_cluster, merge_policy, translate_tls
from .common import DNS_CLUSTER, outbound_cluster_name
from .endpoints import load_assignment, locality_groups, socket_endpoint
from .routes import domains, host_routes

DNS_LOOKUP = "V4_ONLY"  # local pods and the legacy service live on IPv4 loopback
DNS_REFRESH = "5s"  # Envoy's default


def entry_ports(entry: Policy, protocol: str | None = None) -> list[dict]:
    """The entry's ports (only those of one protocol when given)."""
    return [p for p in entry.spec.get("ports") or () if protocol is None or (p.get("protocol") or "").upper() == protocol]


def entry_hosts(model: Model, proxy_namespace: str) -> list[tuple[str, Policy]]:
    """(host, ServiceEntry) pairs: oldest entry first, hosts that already name a Service or an older entry skipped."""
    taken = {d for s in model.services if s.ports for d in domains(s, proxy_namespace)}
    out = []
    for entry in model.of_kind("ServiceEntry"):
        for host in entry.spec.get("hosts") or ():
            if host not in taken:
                taken.add(host)
                out.append((host, entry))
    return out


def endpoint_port(endpoint, port: dict) -> int:
    """An entry endpoint's port for one entry port: its `ports[name]`, else the port number."""
    return int((endpoint.get("ports") or {}).get(port.get("name") or "") or port["number"])


def entry_endpoints(entry: Policy, host: str, port: dict) -> list[dict]:
    """The lb endpoints of one host:port: the entry's endpoints, or (DNS without endpoints) the host itself."""
    listed = entry.spec.get("endpoints") or ()
    if not listed and entry.spec.get("resolution") == "DNS":
        return [socket_endpoint(host, int(port["number"]))]
    return [socket_endpoint(e["address"], endpoint_port(e, port)) for e in listed]


def entry_policy(model: Model, host: str, proxy_namespace: str) -> dict:
    """The trafficPolicy a DestinationRule gives the entry's host (no subsets for entries)."""
    dr = destination_rule_for(model, host, proxy_namespace)
    return merge_policy((dr.spec.get("trafficPolicy") if dr else None) or {}, None)


def entry_tls(entry: Policy, policy: dict, name: str) -> dict:
    """MESH_EXTERNAL: plaintext unless a DestinationRule sets tls; MESH_INTERNAL: the usual auto mTLS."""
    if entry.spec.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL" and not policy.get("tls"):
        return {}
    return translate_tls(policy.get("tls"), name, ())


def entry_cluster(model: Model, entry: Policy, host: str, port: dict, proxy_namespace: str) -> dict:
    """outbound|PORT||HOST: EDS of the entry's endpoints (STATIC), or STRICT_DNS (DNS); DestinationRule applied."""
    name = outbound_cluster_name(int(port["number"]), "", host)
    policy = entry_policy(model, host, proxy_namespace)
    cluster = eds_cluster(name, {k: v for k, v in policy.items() if k != "tls"}, ())
    cluster.pop("transport_socket_matches", None)
    cluster.update(entry_tls(entry, policy, name))
    if entry.spec.get("resolution") == "DNS":
        cluster.pop("eds_cluster_config")
        cluster.pop("type")
        cluster.update({"cluster_type": dns_cluster_type(), "load_assignment": entry_load_assignment(entry, host, port)})
    return cluster


def dns_cluster_type() -> dict:
    """Strict DNS as Envoy's cluster extension (the `STRICT_DNS` type's current form): every address, re-resolved."""
    return {"name": "envoy.cluster.dns", "typed_config": {"@type": DNS_CLUSTER, "dns_refresh_rate": DNS_REFRESH,
                                                          "dns_lookup_family": DNS_LOOKUP}}


def entry_load_assignment(entry: Policy, host: str, port: dict) -> dict:
    """The ClusterLoadAssignment of one host:port of an entry."""
    groups = locality_groups([(Locality(), e) for e in entry_endpoints(entry, host, port)], weighted=False)
    return load_assignment(outbound_cluster_name(int(port["number"]), "", host), groups)


def entry_clusters(model: Model, proxy: Pod) -> list[dict]:
    """Every ServiceEntry cluster a sidecar needs (each host x port)."""
    return [entry_cluster(model, entry, host, port, proxy.namespace)
            for host, entry in entry_hosts(model, proxy.namespace) for port in entry_ports(entry)]


def entry_load_assignments(model: Model, proxy: Pod) -> list[dict]:
    """The EDS resources of the STATIC entries' clusters."""
    return [entry_load_assignment(entry, host, port) for host, entry in entry_hosts(model, proxy.namespace)
            if entry.spec.get("resolution") != "DNS" for port in entry_ports(entry)]


def entry_virtual_hosts(model: Model, proxy: Pod) -> list[dict]:
    """One virtual host per entry host with an HTTP port (its first), routed like any host (VirtualServices apply)."""
    out = []
    for host, entry in entry_hosts(model, proxy.namespace):
        http = entry_ports(entry, "HTTP")
        if http:
            port = int(http[0]["number"])
            out.append({"name": f"{host}:{port}", "domains": [host], "routes": host_routes(model, host, port)})
    return out
