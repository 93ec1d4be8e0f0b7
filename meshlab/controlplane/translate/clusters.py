"""Services and DestinationRules -> Envoy clusters: one EDS cluster per Service port and per subset."""

from __future__ import annotations

from ...stages.envoyconf import static_cluster
from ..model import ROOT_NAMESPACE, Model, Pod, Service, resolve_host, selects
from .common import ADS, HTTP_OPTIONS, RAW_BUFFER, TLS_SOCKET, UPSTREAM_TLS, common_tls_context, \
    envoy_duration, host_matches, inbound_cluster_name, outbound_cluster_name
from .locality import locality_lb_config

CONNECT_TIMEOUT = "10s"  # Istio's default connectTimeout
UNLIMITED = 4294967295  # Istio's circuit-breaker defaults: no limit unless connectionPool says so
LB_POLICIES = {"ROUND_ROBIN": "ROUND_ROBIN", "LEAST_REQUEST": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST",
               "RANDOM": "RANDOM", "UNSPECIFIED": "LEAST_REQUEST"}
DEFAULT_LB = "LEAST_REQUEST"  # Istio's default load balancer
POLICY_PARTS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")


def destination_rule_for(model: Model, host: str, proxy_namespace: str):
    """The DestinationRule for a host: the proxy's namespace first, then the Service's, then the root's; oldest wins."""
    rules = [dr for dr in model.of_kind("DestinationRule")
             if host_matches(resolve_host(dr.spec.get("host") or "", dr.namespace), host)]
    service_namespace = host.split(".")[1] if host.count(".") >= 2 else ""
    for namespace in (proxy_namespace, service_namespace, ROOT_NAMESPACE):
        for dr in rules:
            if dr.namespace == namespace:
                return dr
    return None


def merge_policy(top, subset) -> dict:
    """A subset's trafficPolicy over the rule's, part by part (as Istio merges them)."""
    merged = {k: v for k, v in (top or {}).items() if k in POLICY_PARTS}
    merged.update({k: v for k, v in (subset or {}).items() if k in POLICY_PARTS})
    return merged


def translate_lb_policy(load_balancer) -> str:
    """loadBalancer.simple -> Envoy lb_policy (Istio defaults to LEAST_REQUEST)."""
    return LB_POLICIES.get((load_balancer or {}).get("simple") or "UNSPECIFIED", DEFAULT_LB)


def translate_circuit_breakers(pool) -> dict:
    """connectionPool -> circuit_breakers thresholds (unset limits stay unlimited, as Istio)."""
    tcp, http = (pool or {}).get("tcp") or {}, (pool or {}).get("http") or {}
    return {"thresholds": [{"max_connections": tcp.get("maxConnections") or UNLIMITED,
                            "max_pending_requests": http.get("http1MaxPendingRequests") or UNLIMITED,
                            "max_requests": http.get("http2MaxRequests") or UNLIMITED,
                            "max_retries": http.get("maxRetries") or UNLIMITED,
                            "track_remaining": True}]}


def translate_protocol_options(pool) -> dict | None:
    """connectionPool.http.maxRequestsPerConnection -> upstream HttpProtocolOptions, or None."""
    per_connection = ((pool or {}).get("http") or {}).get("maxRequestsPerConnection")
    if not per_connection:
        return None
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": HTTP_OPTIONS, "common_http_protocol_options": {"max_requests_per_connection": per_connection},
        "explicit_http_config": {"http_protocol_options": {}}}}


def translate_outlier_detection(outlier) -> dict | None:
    """outlierDetection -> Envoy outlier_detection (only the consecutive-error detectors, as Istio)."""
    if not outlier:
        return None
    out = {"enforcing_success_rate": 0}
    if "consecutive5xxErrors" in outlier:
        out["consecutive_5xx"] = outlier["consecutive5xxErrors"]
        out["enforcing_consecutive_5xx"] = 100 if outlier["consecutive5xxErrors"] else 0
    if "consecutiveGatewayErrors" in outlier:
        out["consecutive_gateway_failure"] = outlier["consecutiveGatewayErrors"]
        out["enforcing_consecutive_gateway_failure"] = 100 if outlier["consecutiveGatewayErrors"] else 0
    for istio, envoy in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        if outlier.get(istio):
            out[envoy] = envoy_duration(outlier[istio])
    if "maxEjectionPercent" in outlier:
        out["max_ejection_percent"] = outlier["maxEjectionPercent"]
    return out


def common_lb_config(outlier) -> dict:
    """With ejection on, every host health change reaches the load balancer at once (`update_merge_window: 0s`).

    Envoy's default merges health changes for 1 s after the first one, so when several local hosts fail while
    ready, the second and later ejections wait up to 1 s and calls keep going to them (Istio keeps that default;
    a lab cluster is small, so the merging saves nothing here)."""
    return {"update_merge_window": "0s"} if outlier else {}


def sni(name: str) -> str:
    """Istio's SNI for a cluster: outbound_.9080_.v2_.reviews.default.svc.cluster.local."""
    return "_.".join(name.split("|"))


def tls_socket(name: str, sans: tuple[str, ...]) -> dict:
    """Istio mutual TLS to the upstream sidecar: our cert `default`, its cert checked against `ROOTCA` and its SANs."""
    return {"name": TLS_SOCKET, "typed_config": {"@type": UPSTREAM_TLS, "common_tls_context": common_tls_context(sans),
                                                 "sni": sni(name)}}


def translate_tls(tls, name: str, sans: tuple[str, ...]) -> dict:
    """tls.mode -> the cluster's transport socket fields: ISTIO_MUTUAL forces TLS, DISABLE plaintext, unset = auto mTLS."""
    mode = (tls or {}).get("mode")
    if mode == "ISTIO_MUTUAL":
        return {"transport_socket": tls_socket(name, sans)}
    if mode == "DISABLE":
        return {}
    return {"transport_socket_matches": [
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": tls_socket(name, sans)},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": {
            "name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": RAW_BUFFER}}}]}


def eds_cluster(name: str, policy, sans: tuple[str, ...]) -> dict:
    """One EDS cluster (endpoints over ADS) shaped by a trafficPolicy."""
    cluster = {"name": name, "type": "EDS", "eds_cluster_config": {"eds_config": ADS, "service_name": name},
               "connect_timeout": CONNECT_TIMEOUT, "lb_policy": translate_lb_policy(policy.get("loadBalancer")),
               "circuit_breakers": translate_circuit_breakers(policy.get("connectionPool"))}
    options = translate_protocol_options(policy.get("connectionPool"))
    if options:
        cluster["typed_extension_protocol_options"] = options
    outlier = translate_outlier_detection(policy.get("outlierDetection"))
    if outlier:
        cluster["outlier_detection"] = outlier
    common = {**common_lb_config(outlier), **locality_lb_config(policy).get("common_lb_config", {})}
    if common:
        cluster["common_lb_config"] = common
    cluster.update(translate_tls(policy.get("tls"), name, sans))
    return cluster


def subsets_of(model: Model, service: Service, proxy_namespace: str):
    """[(subset name, labels, merged trafficPolicy)] for a Service, the service-wide one first with name ''."""
    dr = destination_rule_for(model, service.fqdn, proxy_namespace)
    top = (dr.spec.get("trafficPolicy") if dr else None) or {}
    out = [("", {}, merge_policy(top, None))]
    for subset in (dr.spec.get("subsets") or ()) if dr else ():
        out.append((subset["name"], subset.get("labels") or {}, merge_policy(top, subset.get("trafficPolicy"))))
    return out


def service_identities(model: Model, service: Service, subset_labels) -> tuple[str, ...]:
    """SPIFFE ids of the Service's injected pods in every cluster (of one subset): the SANs a client accepts."""
    return tuple(sorted({p.identity for p in model.pods_of(service) + model.remote_pods_of(service) if p.injected
                         and (not subset_labels or selects(subset_labels, p.labels))}))


def outbound_clusters(model: Model, proxy: Pod) -> list[dict]:
    """Every outbound cluster a sidecar needs: per Service port, and per subset of its DestinationRule."""
    out = []
    for service in model.services:
        for subset, labels, policy in subsets_of(model, service, proxy.namespace):
            sans = service_identities(model, service, labels)
            for port in service.ports:
                out.append(eds_cluster(outbound_cluster_name(port.port, subset, service.fqdn), policy, sans))
    return out


def inbound_cluster(proxy: Pod, app_port: int) -> dict:
    """`inbound|9080||`: the app beside the sidecar, at POD_IP:app port."""
    cluster = static_cluster(inbound_cluster_name(app_port), proxy.ip, app_port)
    cluster.pop("@type", None)
    return cluster
