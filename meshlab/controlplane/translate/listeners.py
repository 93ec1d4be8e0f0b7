"""A sidecar's two listeners: virtualOutbound (the app's HTTP_PROXY, 15001) and virtualInbound (callers, 15006)."""

from __future__ import annotations

from ...stages.envoyconf import trace_hop
from ..model import INBOUND_PORT, OUTBOUND_PORT, Model, Pod
from .common import ADS, DOWNSTREAM_TLS, FAULT, FAULT_FILTER, HCM, ROUTER, TLS_INSPECTOR, TLS_SOCKET, \
    common_tls_context, inbound_cluster_name

OUTBOUND = "virtualOutbound"
INBOUND = "virtualInbound"
PEER = "%DOWNSTREAM_PEER_URI_SAN%"
ROUTER_FILTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}


def http_connection_manager(stat_prefix: str, routes: dict, http_filters: list[dict], **options) -> dict:
    """The HCM network filter; `routes` is {"rds": ...} or {"route_config": ...}."""
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": stat_prefix, "codec_type": "AUTO", **routes, **options,
        "http_filters": http_filters + [ROUTER_FILTER]}}


def socket(ip: str, port: int) -> dict:
    """A listener address on the pod's own IP."""
    return {"socket_address": {"address": ip, "port_value": port}}


def outbound_listener(pod: Pod, route_name: str) -> dict:
    """15001: absolute-form requests from the app, routed by Host via RDS; faults injected here, as Istio does."""
    hcm = http_connection_manager(
        "outbound_0.0.0.0_15001", {"rds": {"config_source": ADS, "route_config_name": route_name}},
        [{"name": FAULT_FILTER, "typed_config": {"@type": FAULT}}],
        strip_any_host_port=True, http_protocol_options={"allow_absolute_url": True})
    return {"name": OUTBOUND, "address": socket(pod.ip, OUTBOUND_PORT), "traffic_direction": "OUTBOUND",
            "filter_chains": [{"name": OUTBOUND, "filters": [hcm]}]}


def inbound_route_config(app_port: int, tls: bool, hop: dict | None = None) -> dict:
    """Everything to the app beside the sidecar, stamping the callee-side hop (caller's SPIFFE id on mTLS, then `hop`)."""
    header = trace_hop("sidecar", dir="in", **({"peer": PEER} if tls else {}), **(hop or {}))
    name = inbound_cluster_name(app_port)
    return {"name": name, "request_headers_to_add": [header], "validate_clusters": False, "virtual_hosts": [{
        "name": f"inbound|http|{app_port}", "domains": ["*"],
        "routes": [{"name": "default", "match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "0s"}}]}]}


def downstream_tls() -> dict:
    """Istio mutual TLS for callers: present `default`, require a client cert that chains to `ROOTCA`."""
    return {"name": TLS_SOCKET, "typed_config": {"@type": DOWNSTREAM_TLS, "common_tls_context": common_tls_context(),
                                                 "require_client_certificate": True}}


def inbound_chain(app_port: int, tls: bool, rbac: list[dict], hop: dict | None = None) -> dict:
    """One inbound filter chain: mTLS (transport_protocol tls) or plaintext (raw_buffer)."""
    hcm = http_connection_manager(f"inbound_0.0.0.0_{app_port}",
                                  {"route_config": inbound_route_config(app_port, tls, hop)},
                                  list(rbac), normalize_path=True, forward_client_cert_details="APPEND_FORWARD",
                                  set_current_client_cert_details={"uri": True})
    chain = {"name": "inbound-mtls" if tls else "inbound-plaintext",
             "filter_chain_match": {"transport_protocol": "tls" if tls else "raw_buffer"}, "filters": [hcm]}
    if tls:
        chain["transport_socket"] = downstream_tls()
    return chain


def inbound_listener(pod: Pod, app_port: int, mode: str, rbac: list[dict], hop: dict | None = None) -> dict:
    """15006: mTLS unless DISABLE, plaintext unless STRICT; RBAC (DENY, then ALLOW) before the router; `hop` extra fields."""
    chains = ([inbound_chain(app_port, True, rbac, hop)] if mode != "DISABLE" else []) + \
             ([inbound_chain(app_port, False, rbac, hop)] if mode != "STRICT" else [])
    return {"name": INBOUND, "address": socket(pod.ip, INBOUND_PORT), "traffic_direction": "INBOUND",
            "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                                  "typed_config": {"@type": TLS_INSPECTOR}}],
            "filter_chains": chains}


def app_port(model: Model, pod: Pod) -> int | None:
    """The app's port behind the sidecar: what the pod's Services target, else its first container port."""
    for service in model.services_of(pod):
        for port in service.ports:
            target = pod.target(port)
            if target:
                return int(target)
    ports = [int(p) for p in pod.ports.values() if str(p).isdigit()]
    return ports[0] if ports else None
