"""The list + watch API of the local runtime: a revision, a long-poll on it, and the state it names."""

from __future__ import annotations

import asyncio

from . import inject

WATCHED_KINDS = {"Namespace", "Service", "ServiceAccount"}
MAX_WAIT = 300.0


class Revisions:
    """A counter that goes up on every change, and a way to wait for it to pass a value."""

    def __init__(self):
        self.revision = 1  # so `since: 0` (the list) answers at once
        self._changed = asyncio.Condition()
        self._pods_seen: dict | None = None

    async def bump(self) -> int:
        """Record one change and wake every watcher."""
        async with self._changed:
            self.revision += 1
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


def pod_fingerprint(pods) -> dict:
    """What of the pods the watch API reports a change of: existence, IP, readiness."""
    return {p.name: (p.ip, p.ready) for p in pods}


def pod_entry(pod) -> dict:
    """One pod as the watch API shows it."""
    return {"name": pod.name, "namespace": pod.namespace, "ip": pod.ip, "node": pod.node,
            "labels": dict(pod.labels), "annotations": dict(pod.annotations),
            "service_account": pod.spec.get("serviceAccountName") or "default",
            "ready": pod.ready, "injected": inject.is_injected(pod.annotations),
            "ports": inject.app_ports(pod.spec)}


def payload(revision: int, objects: dict, pods, cluster: str = "") -> dict:
    """The watch answer: every watched object as applied, and every pod."""
    watched = [doc for key, doc in sorted(objects.items(), key=lambda item: str(item[0]))
               if is_watched(doc["kind"], str(doc.get("apiVersion", "")))]
    return {"revision": revision, "cluster": cluster, "objects": watched,
            "pods": [pod_entry(p) for p in sorted(pods, key=lambda p: (p.namespace, p.name))]}
