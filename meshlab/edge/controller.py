"""meshlab's ingress controller in the edge pod (kind, kube): the API's Ingresses and EndpointSlices -> Envoy's files.

Runs as `python controller.py` beside translate.py (both shipped in a ConfigMap, backends/edge.py) on a stock
python image, standard library only. With the pod's ServiceAccount it lists, then watches, the Ingresses,
Services and EndpointSlices of the namespaces in $WATCH_NAMESPACES; after every change it renders lds.json and
cds.json with the same translator as the local backend and, when they differ from what is on disk, writes each to
a temporary file and renames it into $EDGE_CONFIG_DIR, the directory the Envoy beside it watches (an atomic
rename is the move Envoy's watched_directory reacts to, and it never sees half a file).

Watch, not poll: a class runs dozens of edges on one API server, and three lists a second each would load it
for nothing; a watch costs nothing while nothing changes and delivers a change (a pod turning ready) at once,
as the local controller sees it. A watch ends on the server's timeout (resumed from the last resourceVersion),
on "410 Gone" (the history is compacted: list again) or on an error (list again after RETRY_S).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from . import translate
except ImportError:  # run as a script in the edge pod, beside translate.py
    import translate  # type: ignore[no-redef]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RESOURCES = {"ingresses": "/apis/networking.k8s.io/v1", "services": "/api/v1",
             "endpointslices": "/apis/discovery.k8s.io/v1"}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
WATCH_S = 60  # the server ends each watch after this long; it is resumed from the last resourceVersion
READ_TIMEOUT_S = WATCH_S + 30  # a stream silent for longer is dead (bookmarks keep a live one talking)
RETRY_S = 1.0
FILES = ("cds.json", "lds.json")  # clusters first, so new routes find their clusters


def log(message: str) -> None:
    print(f"edge controller: {message}", file=sys.stderr, flush=True)


# ---- pure: API objects -> the files ------------------------------------------------------------------


def service_port(service: dict, port_ref) -> dict | None:
    """A Service's port entry by number or name (as an Ingress backend names it)."""
    for port in (service.get("spec") or {}).get("ports") or []:
        if str(port_ref) in (str(port.get("port")), str(port.get("name"))):
            return port
    return None


def endpoints_from(services: list[dict], slices: list[dict]):
    """endpoints(namespace, service, port) -> ready (ip, port) pairs, from the Services and their EndpointSlices;
    ordered by pod name, as the local runtime lists its pods."""
    by_name = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"]): s for s in services}

    def endpoints(namespace: str, service: str, port_ref) -> list[tuple[str, int]]:
        svc = by_name.get((namespace, service))
        port = service_port(svc, port_ref) if svc else None
        if port is None:
            return []
        found = set()
        for piece in slices:
            meta = piece.get("metadata") or {}
            if (meta.get("namespace", "default") != namespace or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != service
                    or piece.get("addressType") not in ("IPv4", "IPv6")):
                continue
            number = next((p.get("port") for p in piece.get("ports") or []
                           if (p.get("name") or "") == (port.get("name") or "") and p.get("port")), None)
            if number is None:
                continue
            for endpoint in piece.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:  # unset means ready (the API's rule)
                    continue
                pod = (endpoint.get("targetRef") or {}).get("name") or ""
                found.update((pod, address, int(number)) for address in endpoint.get("addresses") or [])
        return [(address, number) for _, address, number in sorted(found)]

    return endpoints


def render(ingresses: list[dict], services: list[dict], slices: list[dict], address: str = "0.0.0.0") -> dict[str, str]:
    """lds.json and cds.json for these API objects: the local controller's files for the same Ingresses and endpoints."""
    return translate.dynamic_files(address, ingresses, endpoints_from(services, slices))


def write(folder: Path, files: dict[str, str]) -> bool:
    """Write the files that changed, each to a hidden temporary file renamed over the real one; whether any changed."""
    changed = False
    for name in FILES:
        target = folder / name
        try:
            if target.read_text() == files[name]:
                continue
        except OSError:
            pass
        temporary = folder / f".{name}.tmp"
        temporary.write_text(files[name])
        os.replace(temporary, target)
        changed = True
    return changed


# ---- the API -----------------------------------------------------------------------------------------


def api_base(env) -> str:
    """The API server as the pod sees it: $KUBERNETES_SERVICE_HOST:PORT (set in every pod), else the Service name;
    $MESHLAB_EDGE_API overrides (tests)."""
    if env.get("MESHLAB_EDGE_API"):
        return env["MESHLAB_EDGE_API"].rstrip("/")
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        return "https://kubernetes.default.svc"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class Api:
    """GET requests to the API server with the pod's ServiceAccount token (read anew each time: it is rotated)."""

    def __init__(self, base: str, sa_dir: str = SA_DIR):
        self.base, self.sa_dir = base.rstrip("/"), Path(sa_dir)
        handlers: list = [urllib.request.ProxyHandler({})]  # never through a proxy from the environment
        if self.base.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(self.sa_dir / "ca.crt"))))
        self.opener = urllib.request.build_opener(*handlers)

    def open(self, path: str, timeout: float):
        token = (self.sa_dir / "token").read_text().strip()
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token}",
                                                                    "Accept": "application/json"})
        return self.opener.open(request, timeout=timeout)


def reason(exc: Exception) -> str:
    """One line for an API error: the status and the API's own message."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            message = json.loads(exc.read() or b"{}").get("message", "")
        except (ValueError, OSError):
            message = ""
        return f"HTTP {exc.code}" + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


class Mirror:
    """One resource in one namespace, kept current by list + watch; `changed` is set after every change."""

    def __init__(self, api: Api, resource: str, namespace: str, changed: threading.Event, lock: threading.Lock):
        self.api, self.resource, self.namespace = api, resource, namespace
        self.changed, self.lock = changed, lock
        self.items: dict[str, dict] = {}
        self.synced = False
        self.path = f"{RESOURCES[resource]}/namespaces/{namespace}/{resource}"

    def objects(self) -> list[dict]:
        with self.lock:
            return list(self.items.values())

    def relist(self) -> str:
        """List every object; the list's resourceVersion, to watch from."""
        with self.api.open(self.path, timeout=30) as response:
            data = json.load(response)
        with self.lock:
            self.items = {i["metadata"]["name"]: i for i in data.get("items") or []}
            self.synced = True
        self.changed.set()
        return (data.get("metadata") or {}).get("resourceVersion", "")

    def event(self, event: dict) -> str | None:
        """Apply one watch event; the resourceVersion to resume from, None when the watch must list again."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":  # 410 Gone: the resourceVersion is too old
            log(f"{self.resource} in {self.namespace}: watch ended: {obj.get('message') or obj}; listing again")
            return None
        meta = obj.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            with self.lock:
                if kind == "DELETED":
                    self.items.pop(meta.get("name"), None)
                else:
                    self.items[meta["name"]] = obj
            self.changed.set()
        return meta.get("resourceVersion") or ""

    def follow(self, version: str) -> str | None:
        """Watch from `version` until the server ends the stream; where to resume, or None to list again."""
        query = f"?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_S}&resourceVersion={version}"
        with self.api.open(self.path + query, timeout=READ_TIMEOUT_S) as response:
            for line in response:
                if line.strip():
                    version = self.event(json.loads(line))
                    if version is None:
                        return None
        return version

    def run(self) -> None:
        """List and watch for ever; an error is logged and retried after RETRY_S."""
        while True:
            try:
                version = self.relist()
                while version:  # None (410 Gone) or no version to resume from: list again
                    version = self.follow(version)
            except Exception as exc:  # noqa: BLE001 - the API restarts, RBAC is not there yet, the network blips
                log(f"{self.resource} in {self.namespace}: {reason(exc)}; retrying in {RETRY_S:.0f}s")
                time.sleep(RETRY_S)


# ---- the program ---------------------------------------------------------------------------------------


def serve(mirrors: dict, folder: Path, address: str, changed: threading.Event, stop: threading.Event) -> None:
    """Render and write after each change, once every resource was listed."""
    while not stop.is_set():
        if not changed.wait(timeout=1.0):
            continue
        changed.clear()
        if not all(m.synced for m in mirrors.values()):
            continue
        every = {resource: [o for (r, _), m in mirrors.items() if r == resource for o in m.objects()] for resource in RESOURCES}
        files = render(every["ingresses"], every["services"], every["endpointslices"], address)
        if write(folder, files):
            lds, cds = json.loads(files["lds.json"]), json.loads(files["cds.json"])
            served = sum(1 for i in every["ingresses"] if translate.serves(i))
            hosts = sum(len(c["load_assignment"]["endpoints"][0]["lb_endpoints"]) for c in cds["resources"])
            log(f"config {lds['version_info']}: {served} Ingress(es) of class {translate.EDGE_CLASS}, "
                f"{len(cds['resources'])} cluster(s), {hosts} endpoint(s)")


def main(env=os.environ) -> int:
    namespaces = [n.strip() for n in env.get("WATCH_NAMESPACES", "").split(",") if n.strip()]
    if not namespaces:
        log("WATCH_NAMESPACES is empty: name the namespaces whose Ingresses this edge serves")
        return 2
    folder = Path(env.get("EDGE_CONFIG_DIR", translate.CONFIG_DIR))
    address = env.get("EDGE_LISTEN_ADDRESS", "0.0.0.0")
    api = Api(api_base(env), env.get("MESHLAB_EDGE_SA_DIR", SA_DIR))
    stop, changed, lock = threading.Event(), threading.Event(), threading.Lock()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # PID 1 ignores SIGTERM unless it handles it
    mirrors = {(r, ns): Mirror(api, r, ns, changed, lock) for r in RESOURCES for ns in namespaces}
    for (resource, ns), mirror in mirrors.items():
        threading.Thread(target=mirror.run, name=f"{resource}/{ns}", daemon=True).start()
    log(f"serving class {translate.EDGE_CLASS} in {', '.join(namespaces)} from {api.base}; files in {folder}")
    serve(mirrors, folder, address, changed, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
