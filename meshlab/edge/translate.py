"""meshlab's ingress controller, the pure part: Ingress objects + endpoints -> the edge Envoy's LDS/CDS files.

One translator for every backend: the local runtime (backends/local/ingress.py) and the controller program that
runs in the edge pod on kind and kube (edge/controller.py) both call dynamic_files(). Standard library only,
since the edge pod runs this very file (shipped in a ConfigMap, backends/edge.py) on a stock python image.
"""

from __future__ import annotations

import hashlib
import json

EDGE_NAMESPACE = "meshlab-system"
EDGE_NAME = "edge"
EDGE_CLASS = "edge"
EDGE_PORT = 8080
ADMIN_PORT = 15000
CONFIG_DIR = "/etc/envoy"  # where the edge Envoy finds lds.json and cds.json (a watched directory)
TRACE_HOP = "kind=proxy;role=edge;name=%ENVIRONMENT(POD_NAME)%;node=%ENVIRONMENT(NODE_NAME)%"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def serves(ingress: dict) -> bool:
    """The controller serves Ingresses of class `edge` only. One without a class is ignored, as a controller whose
    class is not the cluster's default ignores it: the same YAML works the same on every backend."""
    return (ingress.get("spec") or {}).get("ingressClassName") == EDGE_CLASS


def cluster_name(namespace: str, service: str, port) -> str:
    """One Envoy cluster per Service port."""
    return f"{namespace}/{service}:{port}"


def backend_cluster(namespace: str, backend: dict) -> str:
    """The cluster an Ingress backend points at."""
    svc = backend.get("service") or {}
    port = svc.get("port") or {}
    return cluster_name(namespace, svc.get("name"), port.get("number", port.get("name")))


def path_match(path: dict) -> dict:
    """Ingress pathType -> Envoy route match (Prefix is element-wise, as Kubernetes defines it)."""
    value = path.get("path") or "/"
    kind = path.get("pathType", "Prefix")
    if kind == "Exact":
        return {"path": value}
    if value.rstrip("/") == "":
        return {"prefix": "/"}
    return {"path_separated_prefix": value.rstrip("/")}


def _route(namespace: str, path: dict) -> dict:
    return {"match": path_match(path), "route": {"cluster": backend_cluster(namespace, path["backend"]), "timeout": "15s"}}


def _precedence(item) -> tuple:
    """Exact before Prefix, longer paths first (the Ingress precedence rules)."""
    path = item[1]
    return (path.get("pathType") != "Exact", -len(path.get("path") or "/"))


def virtual_hosts(ingresses: list[dict]) -> list[dict]:
    """Every host rule becomes a virtual host; rules without a host and default backends go to '*'."""
    hosts: dict[str, list] = {}
    defaults = []
    for ing in sorted(ingresses, key=lambda i: (i["metadata"].get("namespace", "default"), i["metadata"]["name"])):
        ns = ing["metadata"].get("namespace", "default")
        spec = ing.get("spec") or {}
        for rule in spec.get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                hosts.setdefault(rule.get("host") or "*", []).append((ns, path))
        if spec.get("defaultBackend"):
            defaults.append({"match": {"prefix": "/"}, "route": {"cluster": backend_cluster(ns, spec["defaultBackend"]),
                                                                 "timeout": "15s"}})
    not_found = {"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no ingress rule matches\n"}}}
    result = []
    for host in sorted(hosts, key=lambda h: h == "*"):
        routes = [_route(ns, path) for ns, path in sorted(hosts[host], key=_precedence)]
        domains = ["*"] if host == "*" else [host, f"{host}:*"]
        result.append({"name": host, "domains": domains, "routes": routes + (defaults if host == "*" else [])})
    if "*" not in hosts:
        result.append({"name": "default", "domains": ["*"], "routes": defaults or [not_found]})
    else:
        result[-1]["routes"].append(not_found)
    return result


def listener(entry_ip: str, ingresses: list[dict]) -> dict:
    """The edge listener on the lab's entry address."""
    return {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "edge", "address": {"socket_address": {"address": entry_ip, "port_value": EDGE_PORT}},
        "enable_reuse_port": False,  # a second Envoy on the same address must fail, not share the traffic
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": HCM, "stat_prefix": "edge", "strip_any_host_port": True,
            "route_config": {"name": "edge", "virtual_hosts": virtual_hosts(ingresses), "validate_clusters": False,
                             "request_headers_to_add": [{"header": {"key": "x-meshlab-trace", "value": TRACE_HOP},
                                                         "append_action": "APPEND_IF_EXISTS_OR_ADD"}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}}]}],
    }


def clusters(ingresses: list[dict], endpoints) -> list[dict]:
    """One STATIC cluster per referenced Service port, endpoints = its ready pods (as real controllers do)."""
    names = set()
    for ing in ingresses:
        ns = ing["metadata"].get("namespace", "default")
        spec = ing.get("spec") or {}
        backends = [p["backend"] for r in spec.get("rules") or [] for p in (r.get("http") or {}).get("paths") or []]
        backends += [spec["defaultBackend"]] if spec.get("defaultBackend") else []
        for b in backends:
            svc = b.get("service") or {}
            port = svc.get("port") or {}
            names.add((ns, svc.get("name"), port.get("number", port.get("name"))))
    out = []
    for ns, svc, port in sorted(names, key=str):
        lb = [{"endpoint": {"address": {"socket_address": {"address": ip, "port_value": p}}}} for ip, p in endpoints(ns, svc, port)]
        out.append({"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": cluster_name(ns, svc, port),
                    "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": cluster_name(ns, svc, port), "endpoints": [{"lb_endpoints": lb}]}})
    return out


def bootstrap() -> dict:
    """The edge Envoy's bootstrap: admin, and LDS/CDS from files the controller rewrites."""
    def source(name):
        return {"path_config_source": {"path": f"{CONFIG_DIR}/{name}.json", "watched_directory": {"path": CONFIG_DIR}},
                "resource_api_version": "V3"}
    return {"node": {"id": "edge", "cluster": "edge"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}},  # pod-local
            "dynamic_resources": {"lds_config": source("lds"), "cds_config": source("cds")}}


def dynamic_files(entry_ip: str, ingresses: list[dict], endpoints) -> dict[str, str]:
    """lds.json and cds.json as the edge Envoy reads them, for the Ingresses this controller serves (others are
    ignored); `endpoints(namespace, service, port)` gives the ready (ip, port) pairs behind a Service port."""
    served = [i for i in ingresses if serves(i)]
    lds, cds = [listener(entry_ip, served)], clusters(served, endpoints)
    version = hashlib.sha1(json.dumps([lds, cds], sort_keys=True).encode()).hexdigest()[:12]  # lets a client see it loaded
    return {"lds.json": json.dumps({"version_info": version, "resources": lds}, indent=1),
            "cds.json": json.dumps({"version_info": version, "resources": cds}, indent=1)}
