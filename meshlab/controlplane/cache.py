"""Per-proxy snapshots and what was pushed, ACKed and NACKed: the source of /debug/syncz."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
WILDCARD_TYPES = (CLUSTER_TYPE, LISTENER_TYPE)  # Envoy always subscribes to these two


@dataclass
class TypeState:
    """Push state of one resource type on one proxy."""

    version_sent: str = ""
    nonce: str = ""
    version_acked: str = ""
    nacked: str = ""
    nack_error: str = ""
    pushed_at: float = 0.0
    acked_at: float = 0.0


@dataclass
class ProxyState:
    """One proxy: its current snapshot, its streams and its push state per type."""

    node_id: str
    snapshot: object | None = None
    built_revision: int = 0
    streams: int = 0
    refused: str = ""
    acked: str = ""
    acked_at: float = 0.0
    types: dict[str, TypeState] = field(default_factory=dict)
    watchers: list[Callable[[], None]] = field(default_factory=list)

    def summary(self) -> dict:
        """This proxy's row of /debug/syncz."""
        pod, namespace = parse_node_id(self.node_id)
        nacked = next((t for t in self.types.values() if t.nacked), None)
        return {"node_id": self.node_id, "pod": pod, "namespace": namespace, "connected": self.streams > 0,
                "version": getattr(self.snapshot, "version", ""), "acked": self.acked,
                "nacked": nacked.nacked if nacked else "", "nack_error": nacked.nack_error if nacked else "",
                "built_revision": self.built_revision, "refused": self.refused,
                "closed": list(getattr(self.snapshot, "closed", ()) or ()),  # routes answering 503 (BlackHoleCluster)
                "pushed_at": max((t.pushed_at for t in self.types.values()), default=0.0),
                "acked_at": self.acked_at,
                "types": {short_type(url): vars(t).copy() for url, t in sorted(self.types.items())}}


class SnapshotCache:
    """Thread-safe store of snapshots per node id, with the bookkeeping of every push."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.revision = 0
        self.built_revision = 0
        self.build_error = ""
        self._lock = threading.Lock()
        self._proxies: dict[str, ProxyState] = {}

    def _proxy(self, node_id: str) -> ProxyState:
        """The state of a proxy, created on first use (caller holds the lock)."""
        if node_id not in self._proxies:
            self._proxies[node_id] = ProxyState(node_id)
        return self._proxies[node_id]

    def set(self, node_id: str, snapshot, revision: int = 0) -> bool:
        """Store a consistent snapshot and wake the proxy's streams; refuse (and record why) otherwise."""
        problems = list(snapshot.consistent())
        with self._lock:
            proxy = self._proxy(node_id)
            if problems:
                proxy.refused = f"version {snapshot.version} refused: " + "; ".join(map(str, problems))
                return False
            proxy.refused = ""
            proxy.built_revision = max(proxy.built_revision, revision)
            changed = getattr(proxy.snapshot, "version", None) != snapshot.version
            proxy.snapshot = snapshot
            watchers = list(proxy.watchers) if changed else []
        for wake in watchers:
            wake()
        return True

    def get(self, node_id: str):
        """The proxy's current snapshot, or None."""
        with self._lock:
            proxy = self._proxies.get(node_id)
            return proxy.snapshot if proxy else None

    def node_ids(self) -> list[str]:
        """Every proxy with a snapshot or a stream."""
        with self._lock:
            return sorted(self._proxies)

    def retain(self, node_ids) -> None:
        """Forget the snapshots of proxies no longer in the model (connected ones stay listed)."""
        keep = set(node_ids)
        with self._lock:
            for node_id in list(self._proxies):
                proxy = self._proxies[node_id]
                if node_id not in keep:
                    proxy.snapshot = None
                    if proxy.streams == 0:
                        del self._proxies[node_id]

    def watch(self, node_id: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call wake() whenever the proxy's snapshot version changes; returns the unwatch function."""
        with self._lock:
            self._proxy(node_id).watchers.append(wake)

        def unwatch():
            with self._lock:
                proxy = self._proxies.get(node_id)
                if proxy and wake in proxy.watchers:
                    proxy.watchers.remove(wake)
        return unwatch

    def connected(self, node_id: str) -> None:
        """A stream from this proxy opened: push state per type starts over."""
        with self._lock:
            proxy = self._proxy(node_id)
            proxy.streams += 1
            proxy.types = {}

    def disconnected(self, node_id: str) -> None:
        """A stream from this proxy closed."""
        with self._lock:
            proxy = self._proxies.get(node_id)
            if proxy:
                proxy.streams = max(0, proxy.streams - 1)
                if proxy.streams == 0 and proxy.snapshot is None:
                    del self._proxies[node_id]

    def pushed(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        """Record a response sent to the proxy."""
        with self._lock:
            state = self._proxy(node_id).types.setdefault(type_url, TypeState())
            state.version_sent, state.nonce, state.pushed_at = version, nonce, self.clock()

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        """Record that the proxy accepted version of a type."""
        with self._lock:
            proxy = self._proxy(node_id)
            state = proxy.types.setdefault(type_url, TypeState())
            state.version_acked, state.acked_at = version, self.clock()
            state.nacked = state.nack_error = ""
            if type_url == SECRET_TYPE:
                return
            resources = getattr(proxy.snapshot, "resources", {}) or {}
            required = (set(proxy.types) - {SECRET_TYPE}) | {url for url in WILDCARD_TYPES if resources.get(url)}
            config = {proxy.types[url].version_acked if url in proxy.types else "" for url in required}
            if config == {version} and proxy.acked != version:
                proxy.acked, proxy.acked_at = version, state.acked_at

    def nacked(self, node_id: str, type_url: str, version: str, error: str) -> None:
        """Record that the proxy rejected version of a type (it keeps its last good config)."""
        with self._lock:
            state = self._proxy(node_id).types.setdefault(type_url, TypeState())
            state.nacked, state.nack_error = version, error

    def observed(self, revision: int) -> None:
        """The newest runtime revision the control plane has seen."""
        with self._lock:
            self.revision = max(self.revision, revision)

    def built(self, revision: int, error: str = "") -> None:
        """A build from revision finished (error: why it failed and nothing changed)."""
        with self._lock:
            self.build_error = error
            if not error:
                self.built_revision = max(self.built_revision, revision)

    def status(self) -> dict:
        """The /debug/syncz document."""
        with self._lock:
            proxies = [p.summary() for _, p in sorted(self._proxies.items())]
            revision, built, error = self.revision, self.built_revision, self.build_error
        overall = hashlib.sha256(repr([(p["node_id"], p["version"]) for p in proxies]).encode()).hexdigest()
        return {"revision": revision, "built_revision": built, "version": overall[:12], "error": error,
                "proxies": proxies}


def parse_node_id(node_id: str) -> tuple[str, str]:
    """(pod, namespace) from `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`; ('', '') if not one."""
    parts = node_id.split("~")
    if len(parts) != 4 or "." not in parts[2]:
        return "", ""
    pod, namespace = parts[2].rsplit(".", 1)
    return pod, namespace


def short_type(type_url: str) -> str:
    """`Cluster` for `type.googleapis.com/envoy.config.cluster.v3.Cluster`."""
    return type_url.rsplit(".", 1)[-1]
