"""Per-proxy xDS snapshots (LDS, RDS, CDS, EDS) built from the Model, versioned by their content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .model import Model, Pod
from .translate import common
from .translate.authz import rbac_filters
from .translate import dangling
from .translate.clusters import inbound_cluster, outbound_clusters
from .translate.endpoints import load_assignments
from .translate.gateway import gateway_resources
from .translate.listeners import app_port, inbound_listener, outbound_listener
from .translate.mtls import workload_mode
from .translate.routes import hop_fields, route_config_name, route_configuration
from .translate.serviceentry import entry_clusters, entry_load_assignments, entry_virtual_hosts

LISTENER_TYPE = common.LISTENER
ROUTE_TYPE = common.ROUTE_CONFIGURATION
CLUSTER_TYPE = common.CLUSTER
ENDPOINT_TYPE = common.CLUSTER_LOAD_ASSIGNMENT
SECRET_TYPE = common.SECRET
TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)  # Envoy's make-before-break order
PROVIDED_SECRETS = frozenset({common.SECRET_CERT, common.SECRET_ROOT})  # the ADS server serves these over SDS
NAME_FIELD = {ENDPOINT_TYPE: "cluster_name"}


def content_version(resources: dict, digests: dict | None = None) -> str:
    """A short hash of the content: unchanged resources keep their version. `digests` remembers each resource's
    own hash by identity, so a resource that many snapshots of one build share is serialised once."""
    outer = hashlib.sha256()
    for type_url in sorted(resources):
        for name in sorted(resources[type_url]):
            body = resources[type_url][name]
            known = digests.get(id(body)) if digests is not None else None
            digest = known[1] if known else hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
            if digests is not None and not known:
                digests[id(body)] = (body, digest)  # holding body keeps its id from being reused meanwhile
            outer.update(f"{type_url}\0{name}\0".encode() + digest)
    return outer.hexdigest()[:12]


@dataclass(frozen=True)
class Snapshot:
    """Everything one proxy gets: resources[type_url][name] in Envoy's proto3 JSON (nested Any with @type)."""
    version: str
    resources: dict
    closed: tuple[str, ...] = ()  # routes to undefined clusters sent to the BlackHoleCluster (answer 503)

    @classmethod
    def of(cls, resources: dict, closed=(), digests: dict | None = None) -> "Snapshot":
        """A snapshot whose version is its content hash."""
        return cls(content_version(resources, digests), resources, tuple(closed))

    def names(self, type_url: str) -> set[str]:
        """Names of the resources of one type."""
        return set(self.resources.get(type_url) or {})

    def consistent(self) -> list[str]:
        """Dangling references (RDS names, route clusters, EDS names, SDS secrets); empty when pushable."""
        problems = [f"{type_url.rsplit('.', 1)[-1]} {name}: named {body.get(NAME_FIELD.get(type_url, 'name'))!r} inside"
                    for type_url, items in self.resources.items() for name, body in items.items()
                    if body.get(NAME_FIELD.get(type_url, "name")) != name]
        routes, clusters, endpoints = self.names(ROUTE_TYPE), self.names(CLUSTER_TYPE), self.names(ENDPOINT_TYPE)
        secrets = PROVIDED_SECRETS | self.names(SECRET_TYPE)
        for name, listener in (self.resources.get(LISTENER_TYPE) or {}).items():
            for hcm in _connection_managers(listener):
                rds = (hcm.get("rds") or {}).get("route_config_name")
                if rds is not None and rds not in routes:
                    problems.append(f"listener {name}: route config {rds} (RDS) is not defined")
                if hcm.get("route_config"):
                    problems += _route_problems(f"listener {name}", hcm["route_config"], clusters)
        for name, config in (self.resources.get(ROUTE_TYPE) or {}).items():
            problems += _route_problems(f"route config {name}", config, clusters)
        for name, cluster in (self.resources.get(CLUSTER_TYPE) or {}).items():
            if cluster.get("type") == "EDS":
                service = (cluster.get("eds_cluster_config") or {}).get("service_name") or name
                if service not in endpoints:
                    problems.append(f"cluster {name}: endpoints {service} (EDS) are not defined")
        for type_url in (LISTENER_TYPE, CLUSTER_TYPE):
            for name, body in (self.resources.get(type_url) or {}).items():
                problems += [f"{type_url.rsplit('.', 1)[-1].lower()} {name}: secret {secret} (SDS) is not provided"
                             for secret in sorted(_secret_names(body) - secrets)]
        return problems


def _connection_managers(listener: dict) -> list[dict]:
    """The HttpConnectionManager configs of a listener's filter chains."""
    return [f.get("typed_config") or {} for chain in listener.get("filter_chains") or []
            for f in chain.get("filters") or [] if (f.get("typed_config") or {}).get("@type") == common.HCM]


def route_clusters(config: dict) -> list[tuple[str, str]]:
    """(virtual host, cluster) for every cluster a route config sends to, weighted ones included."""
    out = []
    for host in config.get("virtual_hosts") or []:
        for route in host.get("routes") or []:
            action = route.get("route") or {}
            names = [action["cluster"]] if action.get("cluster") else []
            names += [c["name"] for c in (action.get("weighted_clusters") or {}).get("clusters") or []]
            out += [(host.get("name", ""), n) for n in names]
    return out


def _route_problems(where: str, config: dict, clusters: set[str]) -> list[str]:
    return [dangling.problem(where, host, c) for host, c in route_clusters(config) if c not in clusters]


def _secret_names(value) -> set[str]:
    """Names of every SDS secret a resource refers to."""
    found = set()
    if isinstance(value, dict):
        for key, sub in value.items():
            if key == "tls_certificate_sds_secret_configs":
                found |= {s.get("name") for s in sub}
            elif key == "validation_context_sds_secret_config":
                found.add(sub.get("name"))
            else:
                found |= _secret_names(sub)
    elif isinstance(value, list):
        for item in value:
            found |= _secret_names(item)
    return found


def _by_name(items: list[dict], key: str = "name") -> dict:
    return {item[key]: item for item in items}


def build(model: Model, pod: Pod, shared: dict | None = None) -> Snapshot:
    """The LDS/RDS/CDS/EDS resources of one proxy: a sidecar, or an east-west gateway (SDS is the ADS server's)."""
    return build_gateway(model, pod) if pod.is_gateway else build_sidecar(model, pod, shared)


def build_sidecar(model: Model, pod: Pod, shared: dict | None = None) -> Snapshot:
    """A sidecar: outbound (Services, ServiceEntries) and inbound listeners, their routes, clusters and endpoints.
    `shared` holds what other sidecars of the same build can reuse (see shared_part)."""
    shared = {} if shared is None else shared
    outbound, routes, closed = shared_part(shared, ("outbound", pod.namespace), lambda: outbound_part(model, pod))
    assignments = shared_part(shared, ("endpoints", pod.namespace, pod.locality),
                              lambda: plain(load_assignments(model, pod) + entry_load_assignments(model, pod)))
    listeners = [outbound_listener(pod, route_config_name(model))]
    clusters = list(outbound)
    port = app_port(model, pod)
    if port:
        listeners.append(inbound_listener(pod, port, workload_mode(model, pod), rbac_filters(model, pod),
                                          hop_fields(model)))
        clusters.append(plain(inbound_cluster(pod, port)))
    return _snapshot(plain(listeners), [routes], clusters, assignments, closed, shared.setdefault("digests", {}))


def shared_part(shared: dict, key: tuple, make):
    """A part that depends only on `key` (the proxy's namespace, and its locality for endpoints), made once per
    build and shared read-only by every sidecar it fits, as Istio caches them: with N sidecars, the build is
    no longer N times the whole mesh."""
    if key not in shared:
        shared[key] = make()
    return shared[key]


def outbound_part(model: Model, pod: Pod) -> tuple[list[dict], dict, tuple[str, ...]]:
    """(outbound clusters, the outbound RouteConfiguration, routes closed to the BlackHoleCluster) of a namespace."""
    clusters = plain(outbound_clusters(model, pod) + entry_clusters(model, pod))
    routes, closed = dangling.close(plain(route_configuration(model, pod, entry_virtual_hosts(model, pod))),
                                    {c["name"] for c in clusters})
    return clusters + ([dangling.blackhole_cluster()] if closed else []), routes, tuple(closed)


def build_gateway(model: Model, pod: Pod) -> Snapshot:
    """An east-west gateway: the 15443 SNI passthrough listener, its clusters and this cluster's endpoints."""
    listeners, clusters, assignments = plain(gateway_resources(model, pod))
    return _snapshot(listeners, [], clusters, assignments)


def _snapshot(listeners: list[dict], routes: list[dict], clusters: list[dict], assignments: list[dict],
              closed=(), digests: dict | None = None) -> Snapshot:
    """A snapshot of plain resources (see plain); parts may be shared with other snapshots and are never changed."""
    resources = {LISTENER_TYPE: _by_name(listeners), ROUTE_TYPE: _by_name(routes), CLUSTER_TYPE: _by_name(clusters),
                 ENDPOINT_TYPE: _by_name(assignments, "cluster_name")}
    return Snapshot.of(resources, closed, digests)


def new_problems(before, after) -> list[str]:
    """What an apply would break in one proxy's config: inconsistencies, and routes it would newly close (a route
    already closed by an earlier delete does not block an unrelated apply)."""
    old = set(before.closed) if before is not None else set()
    return list(after.consistent()) + [p for p in after.closed if p not in old]


def refusal(before: dict, after: dict) -> str | None:
    """Why a change from one build ({node id: Snapshot}) to another must be refused, in one line, else None."""
    for node, snap in sorted(after.items()):
        problems = new_problems(before.get(node), snap)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return f"the config for {node.split('~')[2]} would be inconsistent: {problems[0]}{more}"
    return None


def plain(value):
    """A deep copy as plain JSON data (dicts and lists): no frozen model values."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def build_all(model: Model) -> dict[str, Snapshot]:
    """{node id: Snapshot} for every injected pod and east-west gateway with an IP (ready or not: a proxy starts first)."""
    shared: dict = {}
    return {pod.node_id: build(model, pod, shared) for pod in model.pods if (pod.injected or pod.is_gateway) and pod.ip}
