"""A small client for Envoy's admin API: stats, clusters, config_dump, memory, ready."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ERRORS = (urllib.error.URLError, OSError, ValueError)


class Admin:
    """One Envoy's admin endpoint, e.g. `Admin(lab.proxies()[0].admin_url).stats()`."""

    def __init__(self, url: str, timeout: float = 3.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def get(self, path: str) -> bytes:
        """The raw body of GET path (raises on errors)."""
        with _DIRECT.open(self.url + path, timeout=self.timeout) as response:
            return response.read()

    def json(self, path: str):
        return json.loads(self.get(path))

    def stats(self) -> dict:
        """Every counter and gauge by name (text stats such as `listener_manager.lds.version_text` too)."""
        return {s["name"]: s["value"] for s in self.json("/stats?format=json").get("stats", []) if "value" in s}

    def clusters(self) -> dict[str, list[str]]:
        """Cluster name -> the host addresses Envoy currently knows for it."""
        out = {}
        for cluster in self.json("/clusters?format=json").get("cluster_statuses") or []:
            hosts = [h.get("address", {}).get("socket_address", {}) for h in cluster.get("host_statuses") or []]
            out[cluster.get("name", "?")] = [f"{h.get('address')}:{h.get('port_value')}" for h in hosts]
        return out

    def config_dump(self) -> dict:
        return self.json("/config_dump")

    def active_config(self) -> str:
        """Active listeners and clusters (draining ones left out) as JSON text."""
        active = []
        for config in self.config_dump().get("configs") or []:
            active += [item.get("active_state") for item in config.get("dynamic_listeners") or []]
            active += config.get("dynamic_active_clusters") or []
            active += (config.get("static_listeners") or []) + (config.get("static_clusters") or [])
        return json.dumps(active)

    def memory(self) -> int:
        """Bytes of heap Envoy has allocated."""
        return int(self.json("/memory").get("allocated", 0))

    def ready(self) -> bool:
        try:
            return self.get("/ready").strip() == b"LIVE"
        except ERRORS:
            return False
