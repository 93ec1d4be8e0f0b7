"""Automatic sidecar injection, as Istio's mutating webhook: the pod is changed at creation, never its Deployment."""

from __future__ import annotations

import copy
import json

INJECT_KEY = "sidecar.istio.io/inject"
STATUS_KEY = "sidecar.istio.io/status"
NAMESPACE_LABEL = "istio-injection"
PROXY_NAME = "istio-proxy"
OUTBOUND_PORT, INBOUND_PORT, ADMIN_PORT = 15001, 15006, 15000
XDS_HOST = "meshlab-controlplane.mesh-system.svc.cluster.local"
XDS_PORT = 15010
APP_PROXY_URL = f"http://127.0.0.1:{OUTBOUND_PORT}"  # local-only: the app reaches its sidecar through HTTP_PROXY
# The app still resolves the callee's name before sending through HTTP_PROXY, as it would before iptables captured it.
CAPTURED_ENV = {"name": "MESHLAB_CAPTURED", "value": "1"}
NODE_ID = "sidecar~$(POD_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local"
# A listener change (a new authorization or mTLS policy) must reach connections already open, not only new ones:
# drain the old filter chains within a second instead of Envoy's default 10 minutes.
DRAIN = ("--drain-time-s", "1", "--drain-strategy", "immediate")
IDENTITY = (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("POD_IP", "status.podIP"),
            ("NODE_NAME", "spec.nodeName"), ("SERVICE_ACCOUNT", "spec.serviceAccountName"))


def wants_injection(pod_meta: dict, namespace_labels: dict) -> bool:
    """Istio's rule: a pod label/annotation "true"/"false" decides, else the namespace label istio-injection=enabled."""
    for where in (pod_meta.get("labels") or {}, pod_meta.get("annotations") or {}):
        value = str(where.get(INJECT_KEY, "")).lower()
        if value in ("true", "false"):
            return value == "true"
    return (namespace_labels or {}).get(NAMESPACE_LABEL) == "enabled"


def is_injected(annotations: dict) -> bool:
    """True when the injection marker is on the pod."""
    return STATUS_KEY in (annotations or {})


def xds_cluster() -> dict:
    """The strict-DNS cluster of the control plane (Envoy's DNS cluster extension, successor of type STRICT_DNS,
    so the 1 s re-resolution is not a deprecated field): HTTP/2, short connect timeout."""
    return {"name": "xds-grpc", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
            "cluster_type": {"name": "envoy.clusters.dns", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
                "dns_refresh_rate": "1s", "respect_dns_ttl": False}},
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": XDS_HOST, "port_value": XDS_PORT}}}}]}]}}


def bootstrap(cluster: str, node_id: str = NODE_ID) -> dict:
    """A proxy's bootstrap: its node id (expanded by the kubelet), admin, and ADS for everything else."""
    ads = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}  # no config, never ready
    return {
        "node": {"id": node_id, "cluster": cluster or "unknown"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc", "retry_policy": {
                               "retry_back_off": {"base_interval": "0.2s", "max_interval": "1s"}}}}]},
            "lds_config": ads, "cds_config": ads},
        "static_resources": {"clusters": [xds_cluster()]},
    }


def proxy_container(cluster: str) -> dict:
    """The injected istio-proxy container."""
    from ...stages.envoyconf import ENVOY_IMAGE

    return {"name": PROXY_NAME, "image": ENVOY_IMAGE,
            "args": ["--config-yaml", json.dumps(bootstrap(cluster), separators=(",", ":")),
                     "--concurrency", "1", "-l", "warning", *DRAIN],
            "env": [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in IDENTITY],
            "ports": [{"containerPort": OUTBOUND_PORT, "name": "outbound"}, {"containerPort": INBOUND_PORT, "name": "inbound"},
                      {"containerPort": ADMIN_PORT, "name": "proxy-admin"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": ADMIN_PORT}, "periodSeconds": 1}}


def with_app_proxy(container: dict) -> dict:
    """An app container that sends its outbound HTTP through the sidecar (local-only; Istio uses iptables)."""
    env = list(container.get("env") or [])
    if not any(item.get("name") in ("HTTP_PROXY", "http_proxy") for item in env):
        env += [{"name": "HTTP_PROXY", "value": APP_PROXY_URL}, CAPTURED_ENV]
    return {**container, "env": env}


def inject(pod_meta: dict, pod_spec: dict, namespace_labels: dict) -> tuple[dict, dict]:
    """(metadata, spec) of the pod as admitted: unchanged, or with istio-proxy, HTTP_PROXY and the marker."""
    if not wants_injection(pod_meta, namespace_labels) or is_injected(pod_meta.get("annotations")):
        return pod_meta, pod_spec
    if any(c.get("name") == PROXY_NAME for c in pod_spec.get("containers") or []):
        return pod_meta, pod_spec
    meta, spec = copy.deepcopy(pod_meta), copy.deepcopy(pod_spec)
    cluster = (meta.get("labels") or {}).get("app", "")
    spec["containers"] = [with_app_proxy(c) for c in spec.get("containers") or []] + [proxy_container(cluster)]
    status = {"containers": [PROXY_NAME], "initContainers": None, "volumes": None, "revision": "default"}
    meta["annotations"] = {**(meta.get("annotations") or {}), STATUS_KEY: json.dumps(status)}
    return meta, spec


def app_ports(pod_spec: dict) -> dict[str, int]:
    """{port name: containerPort} of the app containers (every container but istio-proxy)."""
    out = {}
    for container in pod_spec.get("containers") or []:
        if container.get("name") == PROXY_NAME:
            continue
        for port in container.get("ports") or []:
            out[port.get("name") or str(port["containerPort"])] = int(port["containerPort"])
    return out
