"""VirtualService -> Envoy virtual hosts and routes (match, weighted subsets, timeout, retries, fault)."""

from __future__ import annotations

from collections import Counter

from ...stages.envoyconf import trace_hop
from ..model import SERVICE_SUFFIX, Model, Policy, Pod, Service, resolve_host
from .common import FAULT, FAULT_FILTER, PREVIOUS_HOSTS, envoy_duration, fractional_percent, host_matches, \
    outbound_cluster_name

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_ATTEMPTS = 2
NO_TIMEOUT = "0s"  # Istio disables Envoy's 15 s default route timeout unless `timeout` is set
DEFAULT_ROUTE_PORT = 80
CLUSTER_NAME = "%ENVIRONMENT(CLUSTER_NAME)%"  # the runtime injects CLUSTER_NAME in a multi-cluster lab


def string_match(match) -> dict:
    """Istio StringMatch {exact|prefix|regex} -> Envoy StringMatcher."""
    if "exact" in match:
        return {"exact": match["exact"]}
    if "prefix" in match:
        return {"prefix": match["prefix"]}
    return {"safe_regex": {"regex": match["regex"]}}


def translate_match(match) -> dict:
    """One HTTPMatchRequest (uri + headers) -> Envoy RouteMatch; none means every path."""
    match = match or {}
    uri = match.get("uri")
    if not uri:
        out = {"prefix": "/"}
    elif "exact" in uri:
        out = {"path": uri["exact"]}
    else:
        out = string_match(uri)
    headers = match.get("headers") or {}
    if headers:
        out["headers"] = [{"name": name.lower(), "string_match": string_match(value)}
                          for name, value in sorted(headers.items())]
    return out


def destination_cluster(destination, namespace: str, model: Model, default_port: int) -> str:
    """An Istio Destination -> its outbound cluster name (short hosts read in the rule's namespace)."""
    host = resolve_host(destination["host"], namespace)
    port = (destination.get("port") or {}).get("number")
    if port is None:
        service = model.service(host)
        port = service.ports[0].port if service and service.ports else default_port
    return outbound_cluster_name(port, destination.get("subset") or "", host)


def translate_destinations(route, namespace: str, model: Model, default_port: int) -> dict:
    """HTTPRouteDestination list -> `cluster`, or `weighted_clusters` when traffic is split (weight 0 dropped)."""
    weights: dict[str, int] = {}
    for item in route:
        name = destination_cluster(item["destination"], namespace, model, default_port)
        weights[name] = weights.get(name, 0) + int(item.get("weight", 0) or 0)
    if len(weights) == 1:
        return {"cluster": next(iter(weights))}
    split = [{"name": name, "weight": weight} for name, weight in weights.items() if weight > 0]
    if len(split) <= 1:  # one destination left (or no weights at all: the first, as Envoy needs some weight)
        return {"cluster": split[0]["name"] if split else next(iter(weights))}
    return {"weighted_clusters": {"clusters": split}}


def translate_retry_policy(retries) -> dict | None:
    """HTTPRetry -> Envoy RetryPolicy with Istio's defaults (2 attempts); `attempts: 0` turns retries off."""
    policy = {"retry_on": DEFAULT_RETRY_ON, "num_retries": DEFAULT_ATTEMPTS,
              "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                        "typed_config": {"@type": PREVIOUS_HOSTS}}],
              "host_selection_retry_max_attempts": 5, "retriable_status_codes": [503]}
    if retries is None:
        return policy
    if int(retries.get("attempts") or 0) <= 0:
        return None
    policy["num_retries"] = int(retries["attempts"])
    if retries.get("perTryTimeout"):
        policy["per_try_timeout"] = envoy_duration(retries["perTryTimeout"])
    if retries.get("retryOn"):
        parts = [p.strip() for p in retries["retryOn"].split(",") if p.strip()]
        codes = [int(p) for p in parts if p.isdigit()]
        names = [p for p in parts if not p.isdigit()]
        if codes and "retriable-status-codes" not in names:
            names.append("retriable-status-codes")
        policy["retry_on"] = ",".join(names)
        if codes:
            policy["retriable_status_codes"] = codes
        else:
            policy.pop("retriable_status_codes")
    return policy


def translate_fault(fault) -> dict | None:
    """HTTPFaultInjection -> the envoy.filters.http.fault per-route config (HTTPFault), or None."""
    if not fault:
        return None
    out = {"@type": FAULT}
    delay, abort = fault.get("delay"), fault.get("abort")
    if delay:
        out["delay"] = {"fixed_delay": envoy_duration(delay["fixedDelay"]),
                        "percentage": fractional_percent(delay.get("percentage"))}
    if abort:
        out["abort"] = {"http_status": int(abort["httpStatus"]), "percentage": fractional_percent(abort.get("percentage"))}
    return out


def translate_action(http, namespace: str, model: Model, default_port: int) -> dict:
    """The RouteAction of one HTTPRoute: destinations, timeout, retries."""
    action = translate_destinations(http["route"], namespace, model, default_port)
    action["timeout"] = envoy_duration(http["timeout"]) if http.get("timeout") else NO_TIMEOUT
    retry = translate_retry_policy(http.get("retries"))
    if retry:
        action["retry_policy"] = retry
    return action


def translate_http_route(http, namespace: str, model: Model, default_port: int) -> list[dict]:
    """One HTTPRoute -> one Envoy route per match (first match wins, in order), sharing one action."""
    action = translate_action(http, namespace, model, default_port)
    fault = translate_fault(http.get("fault"))
    out = []
    for match in http.get("match") or [None]:
        route = {"match": translate_match(match), "route": action}
        if http.get("name"):
            route["name"] = http["name"]
        if fault:
            route["typed_per_filter_config"] = {FAULT_FILTER: fault}
        out.append(route)
    return out


def default_route(service: Service) -> dict:
    """Every path to the Service's own cluster, with Istio's default retries and no timeout."""
    return default_route_to(service.fqdn, service.ports[0].port)


def default_route_to(host: str, port: int) -> dict:
    """Every path to outbound|port||host, with Istio's default retries and no timeout."""
    return {"name": "default", "match": {"prefix": "/"},
            "route": {"cluster": outbound_cluster_name(port, "", host),
                      "timeout": NO_TIMEOUT, "retry_policy": translate_retry_policy(None)}}


def host_routes(model: Model, host: str, port: int) -> list[dict]:
    """The routes of one host: its VirtualService's, else the default route to its own cluster."""
    vs = virtual_service_for(model, host)
    if not vs:
        return [default_route_to(host, port)]
    return [r for http in vs.spec.get("http") or () for r in translate_http_route(http, vs.namespace, model, port)]


def virtual_service_for(model: Model, host: str) -> Policy | None:
    """The VirtualService that routes a host (the oldest, as Istio picks among conflicting ones)."""
    for vs in model.of_kind("VirtualService"):
        if any(host_matches(resolve_host(h, vs.namespace), host) for h in vs.spec.get("hosts") or ()):
            return vs
    return None


def domains(service: Service, proxy_namespace: str) -> list[str]:
    """Host names that reach a Service; the bare name only from its own namespace (as Kubernetes DNS)."""
    names = [service.fqdn, f"{service.name}.{service.namespace}.svc", f"{service.name}.{service.namespace}"]
    return names + ([service.name] if service.namespace == proxy_namespace else [])


def virtual_host(model: Model, service: Service, proxy_namespace: str) -> dict:
    """The virtual host of one Service: its VirtualService's routes, else the default route."""
    port = service.ports[0].port
    return {"name": f"{service.fqdn}:{port}", "domains": domains(service, proxy_namespace),
            "routes": host_routes(model, service.fqdn, port)}


def route_config_name(model: Model) -> str:
    """The outbound RDS name, Istio style: the port most Services use ("9080" in the shop)."""
    ports = Counter(s.ports[0].port for s in model.services if s.ports)
    return str(min(ports, key=lambda p: (-ports[p], p)) if ports else DEFAULT_ROUTE_PORT)


def hop_fields(model: Model) -> dict:
    """Extra trace-hop fields: the proxy's cluster in a multi-cluster lab (stage-5 hops unchanged)."""
    return {"cluster": CLUSTER_NAME} if model.multicluster else {}


def route_configuration(model: Model, pod: Pod, extra_hosts: list[dict] = ()) -> dict:
    """The outbound RouteConfiguration of one sidecar: a virtual host per Service (then `extra_hosts`), the hop stamped."""
    hosts = [virtual_host(model, s, pod.namespace) for s in model.services if s.ports] + list(extra_hosts)
    hosts.append({"name": "block_all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {
        "status": 404, "body": {"inline_string": f"no Service in the mesh for this Host (*.{SERVICE_SUFFIX})\n"}}}]})
    return {"name": route_config_name(model), "virtual_hosts": hosts, "validate_clusters": False,
            "request_headers_to_add": [trace_hop("sidecar", dir="out", **hop_fields(model))]}
