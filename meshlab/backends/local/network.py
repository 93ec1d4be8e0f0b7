"""Service addressing for the local runtime: ClusterIPs, endpoints and cluster DNS names."""

from __future__ import annotations

SUFFIXES = (".svc.cluster.local", ".svc")


def match_selector(selector: dict, labels: dict) -> bool:
    """True when every selector label is on the pod."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_port(service: dict, port_ref) -> dict | None:
    """A Service's port entry by number or name."""
    for port in (service.get("spec") or {}).get("ports") or []:
        if port_ref in (port.get("port"), port.get("name")) or str(port_ref) == str(port.get("port")):
            return port
    return None


def target_port(pod_spec: dict, target) -> int | None:
    """A targetPort (number, or the name of a container port) on one pod."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod_spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def split_name(name: str) -> tuple[str, str | None]:
    """`svc`, `svc.ns`, `svc.ns.svc[.cluster.local]` -> (svc, ns or None)."""
    name = name.rstrip(".").lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.split(".")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", None


def is_headless(service: dict) -> bool:
    """A Service with `clusterIP: None`: DNS answers with its ready pods' IPs."""
    return (service.get("spec") or {}).get("clusterIP") == "None"


def resolve(name: str, cluster_ips: dict, nodes: dict[str, str], headless: dict | None = None) -> list[str]:
    """A cluster DNS name -> ClusterIP, or the pod IPs of a headless Service (short names look in
    `default` first), or a node's IP."""
    if name.rstrip(".").lower() in nodes:
        return [nodes[name.rstrip(".").lower()]]
    svc, ns = split_name(name)
    if not svc:
        return []
    known = {**{k: [ip] for k, ip in cluster_ips.items()}, **(headless or {})}
    if ns:
        return list(known.get((ns, svc), []))
    if ("default", svc) in known:
        return list(known[("default", svc)])
    found = [ips for (other_ns, other), ips in sorted(known.items()) if other == svc]
    return list(found[0]) if found else []
