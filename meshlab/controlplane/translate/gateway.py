"""The east-west gateway (AUTO_PASSTHROUGH): SNI outbound_.PORT_.SUBSET_.FQDN -> tcp_proxy to local pods at 15006."""

from __future__ import annotations

from ..model import GATEWAY_PORT, INBOUND_PORT, Model, Pod, Service, selects
from .clusters import eds_cluster, sni, subsets_of
from .common import TCP_PROXY, TLS_INSPECTOR, outbound_cluster_name
from .endpoints import load_assignment, locality_groups, socket_endpoint
from .listeners import socket

LISTENER_NAME = f"0.0.0.0_{GATEWAY_PORT}"  # Istio's name for the gateway's 15443 listener


def passthrough_targets(model: Model, proxy: Pod) -> list[tuple[str, Service, dict, dict]]:
    """(SNI cluster name, Service, subset labels, trafficPolicy) for every local Service x subset x port."""
    return [(sni(outbound_cluster_name(port.port, subset, service.fqdn)), service, labels, policy)
            for service in model.services for subset, labels, policy in subsets_of(model, service, proxy.namespace)
            for port in service.ports]


def passthrough_cluster(name: str, policy: dict) -> dict:
    """An EDS cluster that forwards still-encrypted bytes: the DestinationRule's LB and ejection, never TLS."""
    cluster = eds_cluster(name, {k: v for k, v in policy.items() if k != "tls"}, ())
    cluster.pop("transport_socket_matches", None)
    return cluster


def passthrough_chain(name: str) -> dict:
    """One filter chain: a TLS ClientHello with SNI `name` -> tcp_proxy to the cluster of that name."""
    return {"name": name, "filter_chain_match": {"server_names": [name]},
            "filters": [{"name": "envoy.filters.network.tcp_proxy",
                         "typed_config": {"@type": TCP_PROXY, "stat_prefix": name, "cluster": name}}]}


def gateway_listener(proxy: Pod, names: list[str]) -> dict:
    """15443 on the gateway pod's IP: tls_inspector reads the SNI, one chain per name; unknown SNI is closed."""
    return {"name": LISTENER_NAME, "address": socket(proxy.ip, GATEWAY_PORT), "traffic_direction": "INBOUND",
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                                  "typed_config": {"@type": TLS_INSPECTOR}}],
            "filter_chains": [passthrough_chain(n) for n in names]}


def passthrough_load_assignment(model: Model, name: str, service: Service, labels) -> dict:
    """This cluster's ready injected pods of a Service (subset) at their inbound port, by locality."""
    pods = [p for p in model.pods_of(service) if p.ready and p.ip and p.injected
            and (not labels or selects(labels, p.labels))]
    items = [(p.locality, socket_endpoint(p.ip, INBOUND_PORT)) for p in pods]
    return load_assignment(name, locality_groups(items, weighted=True))


def gateway_resources(model: Model, proxy: Pod) -> tuple[list[dict], list[dict], list[dict]]:
    """(listeners, clusters, load assignments) of an east-west gateway."""
    targets = passthrough_targets(model, proxy)
    clusters = [passthrough_cluster(name, policy) for name, _, _, policy in targets]
    assignments = [passthrough_load_assignment(model, name, service, labels) for name, service, labels, _ in targets]
    listeners = [gateway_listener(proxy, [t[0] for t in targets])] if targets else []  # Envoy needs a chain
    return listeners, clusters, assignments
