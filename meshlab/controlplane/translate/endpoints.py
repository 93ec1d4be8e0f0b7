"""Ready pods -> ClusterLoadAssignments: sidecar pods at their inbound port, marked for mTLS; others at targetPort;
pods of other networks behind their network's east-west gateway (one endpoint per gateway); grouped by locality."""

from __future__ import annotations

from collections import defaultdict

from ..model import INBOUND_PORT, Locality, Model, Pod, Service, ServicePort, selects
from .clusters import subsets_of
from .common import TLS_MODE_KEY, outbound_cluster_name
from .locality import apply_locality_lb, group_weight, locality_lb_in_effect
from .mtls import workload_mode

ISTIO_TLS = {"filter_metadata": {TLS_MODE_KEY: {"tlsMode": "istio"}}}


def socket_endpoint(address: str, port: int) -> dict:
    """An lb endpoint at address:port."""
    return {"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}


def lb_endpoint(pod: Pod, port: ServicePort, mode: str) -> dict | None:
    """One pod as an endpoint of a Service port, or None when the pod has no such port."""
    if pod.injected:
        endpoint = socket_endpoint(pod.ip, INBOUND_PORT)
        if mode != "DISABLE":  # a workload that refuses mTLS is called in plaintext, as Istio's endpoint builder does
            endpoint["metadata"] = ISTIO_TLS
        return endpoint
    target = pod.target(port)
    if target is None:
        return None
    return socket_endpoint(pod.ip, int(target))


def gateway_endpoints(model: Model, network: str, count: int) -> list[dict]:
    """`count` remote endpoints of one network as its gateways (weights split evenly, the rest to the first)."""
    gateways = model.gateways(network)
    out = []
    for index, gateway in enumerate(gateways):
        weight = count // len(gateways) + (1 if index < count % len(gateways) else 0)
        if weight:
            endpoint = socket_endpoint(*gateway.gateway_address)
            out.append({**endpoint, "metadata": ISTIO_TLS, "load_balancing_weight": weight})
    return out


def shared_locality(localities) -> Locality:
    """The most specific locality all of them are in: their region, zone and subzone as far as they agree."""
    localities = list(localities)
    parts = []
    for level in ("region", "zone", "subzone"):
        values = {getattr(loc, level) for loc in localities}
        if len(values) != 1:
            break
        parts.append(values.pop())
    return Locality(*parts)


def remote_endpoints(model: Model, pods, port: ServicePort, modes: dict) -> list[tuple[Locality, dict]]:
    """(locality, endpoint) for other clusters' ready injected pods: direct in our network, else via gateways.

    Behind a gateway, a network's pods become one endpoint per gateway, weighted by how many pods it stands for,
    in the locality they all share: Envoy keeps only the first of several endpoints with one address in a
    ClusterLoadAssignment (envoyproxy/envoy#22417), so one copy per remote locality would lose the others' weight
    (istio/istio#56355)."""
    out, behind = [], defaultdict(list)
    for pod in pods:
        if not (pod.ready and pod.ip and pod.injected):
            continue
        if pod.network == model.network:
            out.append((pod.locality, lb_endpoint(pod, port, modes.get(pod, "PERMISSIVE"))))
        else:
            behind[pod.network].append(pod.locality)
    for network in sorted(behind):
        locality = shared_locality(behind[network])
        out += [(locality, e) for e in gateway_endpoints(model, network, len(behind[network]))]
    return out


def local_endpoints(pods, port: ServicePort, modes: dict) -> list[tuple[Locality, dict]]:
    """(locality, endpoint) for this cluster's ready pods with an IP."""
    return [(p.locality, e) for p in pods if p.ready and p.ip for e in [lb_endpoint(p, port, modes[p])] if e]


def locality_groups(items: list[tuple[Locality, dict]], weighted: bool) -> list[dict]:
    """LocalityLbEndpoints, one per locality (sorted); each with its total weight when `weighted`."""
    by_locality: dict[Locality, list[dict]] = {}
    for locality, endpoint in items:
        by_locality.setdefault(locality, []).append(endpoint)
    groups = []
    for locality in sorted(by_locality):
        group = {"locality": locality.envoy()} if locality.envoy() else {}
        group["lb_endpoints"] = by_locality[locality]
        if weighted:
            group["load_balancing_weight"] = group_weight(group)
        groups.append(group)
    return groups


def load_assignment(name: str, groups: list[dict]) -> dict:
    """The ClusterLoadAssignment of one cluster from its locality groups."""
    return {"cluster_name": name, "endpoints": groups}


def service_load_assignments(model: Model, service: Service, proxy: Pod) -> list[dict]:
    """Assignments for every port x subset of one Service, as seen from one proxy (its locality)."""
    pods, remote = model.pods_of(service), model.remote_pods_of(service)
    modes = {p: workload_mode(model, p) for p in pods + remote}
    out = []
    for subset, labels, policy in subsets_of(model, service, proxy.namespace):
        members = [p for p in pods if not labels or selects(labels, p.labels)]
        remote_members = [p for p in remote if not labels or selects(labels, p.labels)]
        weighted = model.multicluster or locality_lb_in_effect(policy)
        for port in service.ports:
            items = local_endpoints(members, port, modes) + remote_endpoints(model, remote_members, port, modes)
            groups = apply_locality_lb(proxy.locality, locality_groups(items, weighted), policy)
            out.append(load_assignment(outbound_cluster_name(port.port, subset, service.fqdn), groups))
    return out


def load_assignments(model: Model, proxy: Pod) -> list[dict]:
    """Every EDS resource a sidecar's outbound clusters name."""
    return [cla for service in model.services for cla in service_load_assignments(model, service, proxy)]
