"""The control plane program: watch -> model -> snapshots -> debounce -> cache -> ADS push, plus status."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from . import ads, ca, cache

Translate = Callable[[dict], dict]  # watch payload (with its peers' under "remotes") -> {node_id: Snapshot}


def translate(payload: dict) -> dict:
    """The pure pipeline: model.from_watch (model.from_watches with the peers' states) then snapshot.build_all."""
    from . import model, snapshot  # the pure side; imported here so this module loads on its own

    if "remotes" in payload:
        local = {k: v for k, v in payload.items() if k != "remotes"}
        return snapshot.build_all(model.from_watches(local, payload["remotes"]))
    return snapshot.build_all(model.from_watch(payload))


def identities(payload: dict) -> dict[tuple[str, str], str]:
    """{(namespace, pod): service account} of every pod in a watch payload."""
    return {(pod.get("namespace") or "default", pod["name"]): pod.get("service_account") or "default"
            for pod in payload.get("pods", []) if pod.get("name")}


class ControlPlane:
    """Runs the ADS server, the status server and the build loop around one SnapshotCache."""

    def __init__(self, address: str, xds_port: int, status_port: int, state: str | Path,
                 debounce: float = 0.02, debounce_max: float = 1.0, cert_ttl: float = ca.DEFAULT_TTL,
                 translate: Translate = translate, log: Callable[[str], None] = print, cluster: str = "",
                 root_folder: str | Path | None = None, review: Callable[[str], dict | None] | None = None):
        self.address, self.xds_port, self.status_port = address, xds_port, status_port
        self.debounce, self.debounce_max = debounce, debounce_max
        self.translate = translate
        self.log = log
        self.cache = cache.SnapshotCache()
        self.ca = ca.CertificateAuthority(state, cluster=cluster, ttl=cert_ttl, root_folder=root_folder)
        self.identities: dict[tuple[str, str], str] = {}
        self.service = ads.AdsService(self.cache, self.secrets, log=log,
                                      secret_check_interval=max(0.1, min(5.0, cert_ttl / 30)), review=review)
        self.ads: ads.AdsServer | None = None
        self.status_server: StatusServer | None = None
        self._pending: dict | None = None
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "ControlPlane":
        """Listen for proxies and for status requests, and start the build loop."""
        self.ads = ads.AdsServer(self.service, self.address, self.xds_port).start()
        self.xds_port = self.ads.port
        try:
            self.status_server = StatusServer((self.address, self.status_port), self)
        except OSError as exc:
            self.stop()
            raise OSError(f"status: cannot listen on {self.address}:{self.status_port}: {exc.strerror or exc}")
        self.status_port = self.status_server.server_address[1]
        self._spawn(lambda: self.status_server.serve_forever(poll_interval=0.05), "status")
        self._spawn(self._build_loop, "build")
        self.log(f"control plane on {self.address}: xds {self.xds_port}, status {self.status_port}")
        return self

    def follow(self, source) -> None:
        """Feed every state the source delivers (a sources.LocalWatch or ClusterWatch) into the build loop."""
        self._spawn(lambda: source.run(self.offer, self.stopping), "watch")

    def stop(self) -> None:
        """Stop every thread and server this control plane started."""
        self.stopping.set()
        self._wake.set()
        if self.ads:
            self.ads.stop(0.5)
        if self.status_server:
            self.status_server.shutdown()
            self.status_server.server_close()
        for thread in self._threads:
            if thread.name != "watch":  # a long poll ends on its own within its timeout
                thread.join(timeout=5)

    def offer(self, payload: dict) -> None:
        """A new state from the source: keep only the newest and wake the build loop."""
        self.cache.observed(int(payload.get("revision", 0)))
        with self._pending_lock:
            self._pending = payload
        self._wake.set()

    def build(self, payload: dict) -> None:
        """Translate one state and store each proxy's snapshot; a failure keeps the old ones."""
        revision = int(payload.get("revision", 0))
        started = time.monotonic()
        try:
            snapshots = self.translate(payload)
        except Exception as exc:  # bad input or a translator bug: proxies keep their config
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            if not hasattr(exc, "message"):
                traceback.print_exc()
            self.cache.built(revision, error=message)
            self.log(f"build revision={revision} failed, proxies keep their config: {message}")
            return
        self.identities = identities(payload)
        changed = refused = 0
        for node_id, snapshot in snapshots.items():
            before = self.cache.get(node_id)
            if not self.cache.set(node_id, snapshot, revision):
                refused += 1
                self.log(f"refused {node_id}: {'; '.join(map(str, snapshot.consistent()))[:300]}")
            elif getattr(before, "version", None) != snapshot.version:
                changed += 1
                for problem in snapshot.closed:  # Istio's istioctl analyze would say IST0101 here
                    self.log(f"{node_id}: {problem}: answers 503 (BlackHoleCluster)")
        self.cache.retain(snapshots)
        self.ca.retain(set(snapshots) | set(self.cache.node_ids()))
        self.cache.built(revision)
        self.log(f"build revision={revision} proxies={len(snapshots)} changed={changed} refused={refused} "
                 f"in {(time.monotonic() - started) * 1000:.0f} ms")

    def secrets(self, node_id: str) -> dict | None:
        """The SDS secrets of a proxy whose pod is known, else None (it waits)."""
        pod, namespace = cache.parse_node_id(node_id)
        account = self.identities.get((namespace, pod))
        if account is None:
            return None
        return ca.sds_secrets(self.ca.workload(namespace, account, holder=node_id), self.ca.trust_bundle)

    def _build_loop(self) -> None:
        """Build the newest state once no new one has arrived for `debounce` (at most debounce_max)."""
        while not self.stopping.is_set():
            self._wake.wait()
            first = time.monotonic()
            while not self.stopping.is_set():
                self._wake.clear()
                quiet = not self._wake.wait(self.debounce)
                if quiet or time.monotonic() - first >= self.debounce_max:
                    break
            with self._pending_lock:
                payload, self._pending = self._pending, None
            if payload is None or self.stopping.is_set():
                continue
            try:
                self.build(payload)
            except Exception as exc:  # the loop must survive a bug: the next state gets built
                traceback.print_exc()
                self.cache.built(int(payload.get("revision", 0)), error=f"{type(exc).__name__}: {exc}")

    def _spawn(self, target, name: str) -> None:
        """Run target in a daemon thread this control plane keeps track of."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


class StatusServer(http.server.ThreadingHTTPServer):
    """GET /debug/syncz (the cache's status JSON) and GET /healthz."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], control_plane: ControlPlane):
        self.control_plane = control_plane
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, StatusHandler)


class StatusHandler(http.server.BaseHTTPRequestHandler):
    """Answers the status server's two paths."""

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/debug/syncz":
            self._answer(200, json.dumps(self.server.control_plane.cache.status()), "application/json")
        elif path == "/healthz":
            self._answer(200, "ok\n", "text/plain")
        else:
            self._answer(404, "not found: try /debug/syncz or /healthz\n", "text/plain")

    def _answer(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass
