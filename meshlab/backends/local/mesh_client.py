"""Stage 5 on the local backend, client side: install the control plane, ask it for sync state, reach pods."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from ..base import MeshlabError
from . import network

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MeshClient:
    """The mesh half of LocalBackend (a mixin over its status/apply/watch calls)."""

    def uninstall_mesh(self, timeout: float = 30.0) -> None:
        """Delete meshlab's control plane (and a cluster's east-west gateway) if it runs; return once its pods
        are gone, not merely terminating."""
        from ...controlplane import deploy

        running = [d for d in self.objects("Deployment") if d["metadata"].get("namespace") == deploy.NAMESPACE]
        if not running:
            return
        identity = self.identity
        docs = deploy.documents(identity.name, identity.network, self.root_ca)
        self.delete(docs + (deploy.gateway_documents() if identity.multicluster else []))
        deadline = time.monotonic() + timeout
        while any(p["namespace"] == deploy.NAMESPACE for p in self.status()["pods"]):
            if time.monotonic() > deadline:
                raise MeshlabError(f"the control plane's pods did not stop in {timeout:.0f}s",
                                   f"look at {self.folder / 'pods'}/{deploy.NAME}-*/logs/discovery.log")
            time.sleep(0.1)

    def install_mesh(self, timeout: float = 30.0) -> None:
        """Apply meshlab's control plane (controlplane/deploy.py) and wait until its pod is ready; a cluster of a
        multi-cluster lab gets its name, network and the shared root CA, and an east-west gateway."""
        from ...controlplane import deploy

        identity = self.identity
        docs = deploy.documents(identity.name, identity.network, self.root_ca)
        if identity.multicluster:
            docs += deploy.gateway_documents()
        self.apply(docs, "meshlab-controlplane")
        deadline = time.monotonic() + timeout
        while True:
            pods = [p for p in self.status()["pods"] if p["namespace"] == deploy.NAMESPACE
                    and p["labels"].get("app") == deploy.NAME and p["phase"] != "Terminating"]
            if pods and all(p["ready"] for p in pods):
                return
            if time.monotonic() > deadline:
                raise MeshlabError(f"the control plane did not get ready in {timeout:.0f}s",
                                   f"look at its log in {self.folder / 'pods'}/{deploy.NAME}-*/logs/discovery.log")
            time.sleep(0.1)

    def link(self, peer) -> None:
        """Let this cluster's control plane watch a peer's runtime: the local `istioctl create-remote-secret`."""
        from ...controlplane import deploy

        status = peer.status()
        self.apply([deploy.remote_secret(status["cluster"], status.get("network", ""), status["api"])], "remote secret")

    def revision(self) -> int:
        """The runtime's current watch revision."""
        return self.status()["revision"]

    def revision_time(self) -> float:
        """Wall-clock time of the runtime's last change (an apply is stored then)."""
        return self.status()["revision_time"]

    def proxy_status(self) -> dict:
        """The control plane's /debug/syncz; no proxies while it does not answer (sidecars keep their config)."""
        from ...controlplane import deploy

        url = self.service_url(f"{deploy.NAME}.{deploy.NAMESPACE}", deploy.STATUS_PORT) + "/debug/syncz"
        try:
            return json.loads(DIRECT.open(url, timeout=5).read())
        except (OSError, ValueError) as exc:
            return {"revision": 0, "built_revision": 0, "version": "", "proxies": [],
                    "error": f"the control plane does not answer: {getattr(exc, 'reason', exc)}"}

    def pod_get(self, pod: str, path: str, timeout: float = 10.0) -> str:
        """GET a path of a pod's app (its first app port), as `kubectl exec` of a client in the app container."""
        entry = next((p for p in self.watch(0, 0)["pods"] if p["name"] == pod), None)
        if entry is None or not entry["ports"]:
            raise MeshlabError(f"pod {pod} has no app container with a port", "calls go to meshlab's sample app")
        port = entry["ports"].get("http") or next(iter(entry["ports"].values()))
        try:
            return DIRECT.open(f"http://{entry['ip']}:{port}{path}", timeout=timeout).read().decode()
        except urllib.error.HTTPError as exc:
            return exc.read().decode(errors="replace")
        except OSError as exc:
            raise MeshlabError(f"pod {pod} did not answer {path}: {getattr(exc, 'reason', exc)}",
                               "see lab.pods(): is it running?") from None

    def service_url(self, host: str, port: int) -> str:
        """`http://ADDRESS:PORT` of a Service by cluster DNS name, as a client outside the mesh reaches it."""
        name, namespace = network.split_name(host)
        services = [s for s in self.status()["services"] if s["name"] == name and namespace in (None, s["namespace"])]
        services.sort(key=lambda s: s["namespace"] != "default")
        if not services:
            raise MeshlabError(f"no Service {host} in lab {self.lab}", "see 'meshlab status' for Services")
        address = services[0]["cluster_ip"]
        if address == "None":  # headless: a ready pod's own address
            if not services[0]["endpoints"]:
                raise MeshlabError(f"Service {host} has no ready endpoint", "see 'meshlab status'")
            address = services[0]["endpoints"][0].rsplit(":", 1)[0]
        return f"http://{address}:{port}"
