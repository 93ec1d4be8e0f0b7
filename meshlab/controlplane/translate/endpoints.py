"""Ready pods -> ClusterLoadAssignments: sidecar pods at their inbound port, marked for mTLS; others at targetPort."""

from __future__ import annotations

from ..model import INBOUND_PORT, Model, Pod, Service, ServicePort, selects
from .clusters import subsets_of
from .common import TLS_MODE_KEY, outbound_cluster_name
from .mtls import workload_mode


def lb_endpoint(pod: Pod, port: ServicePort, mode: str) -> dict | None:
    """One pod as an endpoint of a Service port, or None when the pod has no such port."""
    if pod.injected:
        endpoint = {"endpoint": {"address": {"socket_address": {"address": pod.ip, "port_value": INBOUND_PORT}}}}
        if mode != "DISABLE":  # a workload that refuses mTLS is called in plaintext, as Istio's endpoint builder does
            endpoint["metadata"] = {"filter_metadata": {TLS_MODE_KEY: {"tlsMode": "istio"}}}
        return endpoint
    target = pod.target(port)
    if target is None:
        return None
    return {"endpoint": {"address": {"socket_address": {"address": pod.ip, "port_value": int(target)}}}}


def load_assignment(name: str, pods, port: ServicePort, modes: dict) -> dict:
    """The ClusterLoadAssignment of one cluster from its pods (ready ones with an IP only)."""
    endpoints = [e for e in (lb_endpoint(p, port, modes[p]) for p in pods if p.ready and p.ip) if e]
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}] if endpoints else []}


def service_load_assignments(model: Model, service: Service, proxy_namespace: str) -> list[dict]:
    """Assignments for every port x subset of one Service."""
    pods = model.pods_of(service)
    modes = {p: workload_mode(model, p) for p in pods}
    out = []
    for subset, labels, _ in subsets_of(model, service, proxy_namespace):
        members = [p for p in pods if not labels or selects(labels, p.labels)]
        for port in service.ports:
            out.append(load_assignment(outbound_cluster_name(port.port, subset, service.fqdn), members, port, modes))
    return out


def load_assignments(model: Model, proxy: Pod) -> list[dict]:
    """Every EDS resource a sidecar's outbound clusters name."""
    return [cla for service in model.services for cla in service_load_assignments(model, service, proxy.namespace)]
