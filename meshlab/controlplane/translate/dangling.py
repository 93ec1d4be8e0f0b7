"""Routes to clusters that do not exist (a DestinationRule or Service deleted while a VirtualService still names
it) -> Istio's BlackHoleCluster: the proxy stays consistent and answers 503 for that share, as Istio's does."""

from __future__ import annotations

BLACKHOLE = "BlackHoleCluster"  # Istio's name: a STATIC cluster without endpoints (Envoy answers 503 at once)


def blackhole_cluster() -> dict:
    """The cluster every dangling route sends to."""
    return {"name": BLACKHOLE, "type": "STATIC", "connect_timeout": "10s", "load_assignment": {"cluster_name": BLACKHOLE}}


def missing_cluster_hint(cluster: str) -> str:
    """Why an outbound|PORT|SUBSET|HOST cluster is missing, in Istio's words."""
    parts = cluster.split("|")
    if len(parts) == 4 and parts[0] == "outbound":
        return f" (no DestinationRule subset {parts[2]} for {parts[3]})" if parts[2] else \
            f" (no Service {parts[3]} with port {parts[1]})"
    return ""


def problem(where: str, host: str, cluster: str) -> str:
    """The one-line description of a route to an undefined cluster."""
    return f"{where}: virtual host {host} routes to undefined cluster {cluster}{missing_cluster_hint(cluster)}"


def close_action(action: dict, known: set[str]) -> tuple[dict, list[str]]:
    """One route action with undefined clusters replaced by BLACKHOLE (weights of merged entries summed)."""
    if action.get("cluster"):
        name = action["cluster"]
        return (action, []) if name in known else ({**action, "cluster": BLACKHOLE}, [name])
    weighted = action.get("weighted_clusters")
    if not weighted:
        return action, []
    missing = [c["name"] for c in weighted.get("clusters") or [] if c["name"] not in known]
    if not missing:
        return action, []
    merged: dict[str, dict] = {}
    for entry in weighted["clusters"]:
        name = entry["name"] if entry["name"] in known else BLACKHOLE
        if name in merged:
            merged[name]["weight"] = merged[name].get("weight", 0) + entry.get("weight", 0)
        else:
            merged[name] = {**entry, "name": name}
    return {**action, "weighted_clusters": {**weighted, "clusters": list(merged.values())}}, missing


def close(config: dict, known: set[str]) -> tuple[dict, list[str]]:
    """A RouteConfiguration whose routes name only `known` clusters (or BLACKHOLE), and what was closed."""
    closed: list[str] = []
    hosts = []
    for host in config.get("virtual_hosts") or []:
        routes = []
        for route in host.get("routes") or []:
            if "route" in route:
                action, missing = close_action(route["route"], known)
                closed += [problem(f"route config {config['name']}", host.get("name", ""), m) for m in missing]
                route = {**route, "route": action}
            routes.append(route)
        hosts.append({**host, "routes": routes})
    return ({**config, "virtual_hosts": hosts} if closed else config), closed
