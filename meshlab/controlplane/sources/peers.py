"""Multi-primary: follow the own runtime and every peer its remote secrets name, deliver them together."""

from __future__ import annotations

import threading
from typing import Callable

from .local import LocalWatch, api_address

NAMESPACE = "mesh-system"
REMOTE_SECRET_LABEL = "istio/multiCluster"


def remote_secrets(payload: dict) -> dict[str, dict]:
    """{peer cluster: its data} from the ConfigMaps in mesh-system labelled istio/multiCluster=true."""
    found = {}
    for doc in payload.get("objects") or []:
        meta = doc.get("metadata") or {}
        data = doc.get("data") or {}
        if doc.get("kind") != "ConfigMap" or meta.get("namespace") != NAMESPACE:
            continue
        if str((meta.get("labels") or {}).get(REMOTE_SECRET_LABEL, "")).lower() != "true":
            continue
        if data.get("cluster") and data.get("api") and data["cluster"] != payload.get("cluster"):
            found[data["cluster"]] = dict(data)
    return found


class Peer:
    """One followed peer: its watch, the stop switch of that watch, and its last state."""

    def __init__(self, name: str, api: str, watch: LocalWatch):
        self.name, self.api, self.watch = name, api, watch
        self.stop = threading.Event()
        self.payload: dict | None = None


class ClusterWatch:
    """Delivers the own runtime's state with `remotes`: the last state of each peer named by a remote secret."""

    def __init__(self, local: LocalWatch, cluster: str = "", network: str = "",
                 connect: Callable[[str], LocalWatch] | None = None, log: Callable[[str], None] = print):
        self.local = local
        self.cluster, self.network = cluster, network
        self.connect = connect or (lambda api: LocalWatch(api_address(api), poll_timeout=local.poll_timeout,
                                                          log=log))
        self.log = log
        self.peers: dict[str, Peer] = {}
        self._latest: dict | None = None
        self._lock = threading.Lock()
        self._deliver: Callable[[dict], None] | None = None
        self._stop: threading.Event | None = None

    def run(self, deliver: Callable[[dict], None], stop: threading.Event) -> None:
        """Follow the own runtime in this thread and each peer in its own, until stop is set."""
        self._deliver, self._stop = deliver, stop
        try:
            self.local.run(self._on_local, stop)
        finally:
            for peer in list(self.peers.values()):
                peer.stop.set()

    def _on_local(self, payload: dict) -> None:
        """A new own state: the cluster's name and network are the control plane's if the runtime gives none."""
        payload = {**payload, "cluster": payload.get("cluster") or self.cluster,
                   "network": payload.get("network") or self.network}
        with self._lock:
            self._latest = payload
            self._follow(remote_secrets(payload))
        self._emit()

    def _follow(self, wanted: dict[str, dict]) -> None:
        """Start watching new peers, stop watching those whose remote secret went or changed address."""
        for name, peer in list(self.peers.items()):
            if name not in wanted or wanted[name]["api"] != peer.api:
                peer.stop.set()
                del self.peers[name]
                self.log(f"peer {name}: no longer watched")
        for name, data in wanted.items():
            if name in self.peers:
                continue
            peer = Peer(name, data["api"], self.connect(data["api"]))
            self.peers[name] = peer
            thread = threading.Thread(target=peer.watch.run, args=(lambda p, peer=peer: self._on_peer(peer, p),
                                                                   peer.stop), name=f"peer-{name}", daemon=True)
            thread.start()
            self.log(f"peer {name}: watching {data['api']}")

    def _on_peer(self, peer: Peer, payload: dict) -> None:
        """A new state of one peer (ignored once that peer is no longer followed)."""
        with self._lock:
            if peer.stop.is_set() or self.peers.get(peer.name) is not peer:
                return
            peer.payload = {**payload, "cluster": payload.get("cluster") or peer.name}
        self._emit()

    def _emit(self) -> None:
        """Hand the newest own state and every peer's last state to the control plane."""
        with self._lock:
            if self._latest is None or self._deliver is None or (self._stop and self._stop.is_set()):
                return
            combined = {**self._latest,
                        "remotes": [p.payload for _, p in sorted(self.peers.items()) if p.payload is not None]}
            self._deliver(combined)
