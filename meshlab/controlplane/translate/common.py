"""Names, type URLs and value conversions every translator shares."""

from __future__ import annotations

from ..schema_rules import seconds

ADS = {"ads": {}, "resource_api_version": "V3"}
SECRET_CERT = "default"
SECRET_ROOT = "ROOTCA"
TLS_SOCKET = "envoy.transport_sockets.tls"
TLS_MODE_KEY = "envoy.transport_socket_match"

_T = "type.googleapis.com/envoy."
LISTENER = _T + "config.listener.v3.Listener"
ROUTE_CONFIGURATION = _T + "config.route.v3.RouteConfiguration"
CLUSTER = _T + "config.cluster.v3.Cluster"
CLUSTER_LOAD_ASSIGNMENT = _T + "config.endpoint.v3.ClusterLoadAssignment"
SECRET = _T + "extensions.transport_sockets.tls.v3.Secret"
HCM = _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = _T + "extensions.filters.http.router.v3.Router"
FAULT = _T + "extensions.filters.http.fault.v3.HTTPFault"
RBAC = _T + "extensions.filters.http.rbac.v3.RBAC"
DNS_CLUSTER = _T + "extensions.clusters.dns.v3.DnsCluster"
TCP_PROXY = _T + "extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = _T + "extensions.filters.listener.tls_inspector.v3.TlsInspector"
UPSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext"
RAW_BUFFER = _T + "extensions.transport_sockets.raw_buffer.v3.RawBuffer"
HTTP_OPTIONS = _T + "extensions.upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS = _T + "extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
FAULT_FILTER = "envoy.filters.http.fault"
RBAC_FILTER = "envoy.filters.http.rbac"


def outbound_cluster_name(port: int, subset: str, host: str) -> str:
    """Istio's outbound cluster name: outbound|9080|v2|reviews.default.svc.cluster.local."""
    return f"outbound|{port}|{subset or ''}|{host}"


def inbound_cluster_name(port: int) -> str:
    """Istio's inbound cluster name: inbound|9080||."""
    return f"inbound|{port}||"


def envoy_duration(text: str) -> str:
    """An Istio duration ("250ms", "1m") as protobuf JSON ("0.25s", "60s")."""
    return f"{seconds(text):.3f}".rstrip("0").rstrip(".") + "s"


def fractional_percent(percentage) -> dict:
    """Istio's `percentage: {value: 12.5}` as an Envoy FractionalPercent (per million); absent means none, as Istio."""
    value = 0.0 if percentage is None or percentage.get("value") is None else float(percentage["value"])
    return {"numerator": int(round(value * 10000)), "denominator": "MILLION"}


def sds(name: str) -> dict:
    """An SDS secret reference served over ADS."""
    return {"name": name, "sds_config": ADS}


def common_tls_context(sans: tuple[str, ...] = ()) -> dict:
    """Workload cert `default` and trust bundle `ROOTCA` over SDS; peers must present one of `sans` when given."""
    default_validation = {"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": san}}
                                                            for san in sans]} if sans else {}
    return {"tls_certificate_sds_secret_configs": [sds(SECRET_CERT)],
            "combined_validation_context": {"default_validation_context": default_validation,
                                            "validation_context_sds_secret_config": sds(SECRET_ROOT)}}


def host_matches(pattern: str, host: str) -> bool:
    """Whether an Istio host (maybe `*.ns.svc.cluster.local` or `*`) covers a Service FQDN."""
    if pattern == "*":
        return True
    return host.endswith(pattern[1:]) if pattern.startswith("*.") else pattern == host
