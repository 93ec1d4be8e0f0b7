"""Wait until a lab answers end to end, or until its proxies run a given config (Envoy admin API)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from .envoy.admin import ERRORS, Admin

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout: float = 3.0) -> bool:
    """True when one GET of url is answered 2xx."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_serving(url: str, timeout: float = 15.0, streak: int = 5) -> bool:
    """Poll url until `streak` requests in a row succeed; False (no error) if that never happens."""
    if not url:
        return False
    deadline, good = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        good = good + 1 if answers(url) else 0
        if good >= streak:
            return True
        if not good:
            time.sleep(0.1)
    return False


def empty_clusters(admin_url: str, timeout: float = 3.0) -> list[str] | None:
    """Names of one Envoy's clusters that have no host yet (None when it does not answer)."""
    try:
        return [name for name, hosts in Admin(admin_url, timeout).clusters().items() if not hosts]
    except ERRORS:
        return None


def wait_endpoints(lab, timeout: float = 15.0) -> bool:
    """Wait until every running proxy of the lab has at least one host in each of its clusters."""
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in lab.proxies() if p.admin_url and p.state == "running" and empty_clusters(p.admin_url) != []]
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def health_flags(admin_url: str, timeout: float = 3.0) -> dict[tuple[str, str], tuple[str, ...]] | None:
    """(cluster, host) -> the health flags Envoy set on it (e.g. failed_active_health_check,
    pending_active_hc; () when healthy) for one Envoy (None when it does not answer)."""
    try:
        data = Admin(admin_url, timeout).json("/clusters?format=json")
    except ERRORS:
        return None
    out = {}
    for cluster in data.get("cluster_statuses") or []:
        for host in cluster.get("host_statuses") or []:
            address = (host.get("address") or {}).get("socket_address") or {}
            flags = tuple(sorted(k for k, v in (host.get("health_status") or {}).items() if v is True))
            out[(cluster.get("name", "?"), f"{address.get('address')}:{address.get('port_value')}")] = flags
    return out


def wait_health(lab, timeout: float = 15.0, hold: float = 1.5) -> bool:
    """Where proxies health-check their hosts (stage 3's node proxies), wait until no host awaits its first
    check and no host's health changed for `hold` seconds (longer than one check interval): a proxy whose
    upstream is another proxy sees it healthy one round after that proxy's own hosts are."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while True:
        picture = {}
        for proxy in lab.proxies():
            if proxy.admin_url and proxy.state == "running":
                flags = health_flags(proxy.admin_url)
                picture.update({(proxy.name, *key): value for key, value in (flags or {}).items()})
        checked = any("active" in flag for flags in picture.values() for flag in flags)
        pending = any("pending_active_hc" in flags for flags in picture.values())
        now = time.monotonic()
        if not checked and not pending:
            return True  # no active health checks in this lab
        if pending or picture != last:
            last, since = picture, now
        elif now - since >= hold:
            return True
        if now >= deadline:
            return False
        time.sleep(0.2)


def settle(lab, timeout: float = 15.0) -> bool:
    """Proxies know their upstreams (and, where they health-check them, have checked them), then the entry
    answers: what 'up' means to a learner."""
    started = time.monotonic()
    found = wait_endpoints(lab, timeout) and wait_health(lab, timeout)
    return wait_serving(lab.url, max(1.0, timeout - (time.monotonic() - started))) and found


def active_config(admin_url: str, timeout: float = 3.0) -> str:
    """One Envoy's active listeners and clusters as JSON text ('' if it does not answer)."""
    try:
        return Admin(admin_url, timeout).active_config()
    except ERRORS:
        return ""


def wait_edge_config(lab, timeout: float = 5.0) -> bool:
    """After an apply, wait until the edge runs the Ingress config the controller last wrote."""
    edge = [p for p in lab.proxies() if p.role == "edge" and p.admin_url and p.state == "running"]
    if not edge or "edge-config" not in lab.backend.capabilities():
        return True
    wanted = [json.loads(cm["data"]["lds.json"]).get("version_info") for cm in lab.backend.objects("ConfigMap")
              if cm["metadata"]["name"] == "edge-envoy" and "lds.json" in cm.get("data", {})]
    deadline = time.monotonic() + timeout
    while wanted:
        try:
            if Admin(edge[0].admin_url).stats().get("listener_manager.lds.version_text") == wanted[0]:
                return True
        except ERRORS:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def wait_config(lab, has: str | None = None, lacks: str | None = None, role: str | None = None,
                pod: str | None = None, timeout: float = 15.0) -> bool:
    """Wait until every matching proxy (by role, or pod name/prefix) has reloaded a config that contains
    `has` and not `lacks` (text of its /config_dump, e.g. '"weight": 80'); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        proxies = [p for p in lab.proxies() if (role is None or p.role == role) and p.admin_url
                   and (pod is None or p.pod == pod or p.pod.startswith(f"{pod}-"))]
        dumps = [active_config(p.admin_url) for p in proxies]
        if dumps and all(d and (has is None or has in d) and (lacks is None or lacks not in d) for d in dumps):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
