"""The list + watch API of the local runtime: a revision, a long-poll on it, and the state it names."""

from __future__ import annotations

import asyncio
import time

from . import inject

WATCHED_KINDS = {"Namespace", "Service", "ServiceAccount"}
MAX_WAIT = 300.0
REMOTE_SECRET_LABEL = "istio/multiCluster"  # a ConfigMap in mesh-system naming a peer cluster (docs/multicluster.md)


class Revisions:
    """A counter that goes up on every change, and a way to wait for it to pass a value."""

    def __init__(self):
        self.revision = 1  # so `since: 0` (the list) answers at once
        self.changed_at = time.time()  # wall clock of the last change: where a convergence measurement starts
        self._changed = asyncio.Condition()
        self._pods_seen: dict | None = None

    async def bump(self) -> int:
        """Record one change and wake every watcher."""
        async with self._changed:
            self.revision += 1
            self.changed_at = time.time()
            self._changed.notify_all()
        return self.revision

    async def observe_pods(self, fingerprint: dict) -> None:
        """Bump when pods appeared, went away, or changed IP or readiness since the last look."""
        if fingerprint != self._pods_seen:
            self._pods_seen = fingerprint
            await self.bump()

    async def wait(self, since: int, timeout: float) -> int:
        """Return once the revision differs from `since` (a newer one, or another runtime's), or after timeout."""
        timeout = max(0.0, min(float(timeout), MAX_WAIT))
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.revision != since), timeout)
            except asyncio.TimeoutError:
                pass
            return self.revision


def is_watched(kind: str, api_version: str = "") -> bool:
    """Kinds the watch API lists: Namespace, Service, ServiceAccount and every Istio kind."""
    return kind in WATCHED_KINDS or ".istio.io/" in api_version


def is_remote_secret(doc: dict) -> bool:
    """A ConfigMap in mesh-system labelled istio/multiCluster=true: the control plane watches the peer it names."""
    meta = doc.get("metadata") or {}
    return doc.get("kind") == "ConfigMap" and meta.get("namespace") == "mesh-system" \
        and str((meta.get("labels") or {}).get(REMOTE_SECRET_LABEL, "")).lower() == "true"


def pod_fingerprint(pods) -> dict:
    """What of the pods the watch API reports a change of: existence, IP, readiness."""
    return {p.name: (p.ip, p.ready) for p in pods}


def container_ports(pod_spec: dict, injected: bool) -> tuple[dict[str, int], dict[str, int]]:
    """({name: containerPort}, {name: hostPort}) of the pod; an injected pod's sidecar ports are not its own."""
    ports, host_ports = {}, {}
    for container in pod_spec.get("containers") or []:
        if injected and container.get("name") == inject.PROXY_NAME:
            continue
        for port in container.get("ports") or []:
            name = port.get("name") or str(port["containerPort"])
            ports[name] = int(port["containerPort"])
            if port.get("hostPort"):
                host_ports[name] = int(port["hostPort"])
    return ports, host_ports


def pod_entry(pod, multicluster: bool = False) -> dict:
    """One pod as the watch API shows it; in a multi-cluster lab also host_ip and host_ports (where other
    clusters reach a gateway)."""
    injected = inject.is_injected(pod.annotations)
    ports, host_ports = container_ports(pod.spec, injected)
    entry = {"name": pod.name, "namespace": pod.namespace, "ip": pod.ip, "node": pod.node,
             "labels": dict(pod.labels), "annotations": dict(pod.annotations),
             "service_account": pod.spec.get("serviceAccountName") or "default",
             "ready": pod.ready, "injected": injected, "ports": ports}
    if multicluster:
        entry.update(host_ip=pod.host_ip, host_ports=host_ports)
    return entry


def node_entry(node) -> dict:
    """One node as the watch API shows it: its address (where hostPorts are) and topology labels."""
    return {"name": node.name, "ip": node.ip, "ready": node.ready, "labels": dict(node.labels)}


def payload(revision: int, objects: dict, pods, identity=None, nodes=()) -> dict:
    """The watch answer: every watched object as applied and every pod; in a multi-cluster lab also which
    cluster and network this is, its nodes, and the remote secrets naming its peers (docs/multicluster.md)."""
    multicluster = bool(getattr(identity, "name", ""))
    watched = [doc for key, doc in sorted(objects.items(), key=lambda item: str(item[0]))
               if is_watched(doc["kind"], str(doc.get("apiVersion", ""))) or (multicluster and is_remote_secret(doc))]
    out = {"revision": revision, "cluster": getattr(identity, "name", ""), "objects": watched,
           "pods": [pod_entry(p, multicluster) for p in sorted(pods, key=lambda p: (p.namespace, p.name))]}
    if multicluster:
        out.update(network=identity.network, nodes=[node_entry(n) for n in sorted(nodes, key=lambda n: n.name)])
    return out
