"""Stage 5 views of a lab: proxy status (like `istioctl proxy-status`), convergence time, calls from a pod."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from .backends.base import MeshlabError
from .envoy.admin import ERRORS, Admin
from .tables import text_table

SYNCED, STALE, NOT_CONNECTED = "SYNCED", "STALE", "NOT CONNECTED"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ProxyStatus:
    """One sidecar as the control plane sees it."""

    proxy: str
    pod: str
    namespace: str
    state: str
    version: str = ""
    acked: str = ""
    error: str = ""
    closed: tuple = ()  # routes to clusters that do not exist: this proxy answers 503 for them

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ProxyStatusTable(list):
    """A list of ProxyStatus that prints as a table."""

    def __repr__(self) -> str:
        rows = [(p.proxy, p.state, p.version or "-", p.acked or "-", p.error[:60]) for p in self]
        if not self:
            return "no sidecars"
        return "\n".join(text_table(("PROXY", "STATUS", "VERSION", "ACKED", "ERROR"), rows) + self.warnings())

    def warnings(self) -> list[str]:
        """One line per route that answers 503 because what it names is gone (Istio's IST0101), with how many
        sidecars have it."""
        counts: dict[str, int] = {}
        for p in self:
            for problem in p.closed:
                counts[problem] = counts.get(problem, 0) + 1
        return [f"warning: {problem.split(': ', 1)[-1]}: {n} sidecar(s) answer 503" for problem, n in sorted(counts.items())]

    __str__ = __repr__

    def by_state(self) -> dict[str, int]:
        """How many proxies are in each state."""
        out: dict[str, int] = {}
        for p in self:
            out[p.state] = out.get(p.state, 0) + 1
        return out


def state_of(entry: dict | None) -> str:
    """SYNCED when the proxy ACKed its current version, STALE when not (or NACKed), else NOT CONNECTED."""
    if not entry or not entry.get("connected"):
        return NOT_CONNECTED
    return SYNCED if entry.get("version") and entry.get("acked") == entry.get("version") and not entry.get("nacked") \
        else STALE


def proxy_status(lab) -> ProxyStatusTable:
    """Every sidecar of the lab, the config version it ACKed, and SYNCED / STALE / NOT CONNECTED."""
    sync = lab.backend.proxy_status()
    entries = {(e.get("namespace"), e.get("pod")): e for e in sync.get("proxies", [])}
    rows = ProxyStatusTable()
    for proxy in lab.proxies():
        if proxy.role != "sidecar":
            continue
        pod = next((p for p in lab.pods() if p.name == proxy.pod), None)
        namespace = pod.namespace if pod else "default"
        entry = entries.get((namespace, proxy.pod))
        rows.append(ProxyStatus(proxy.name, proxy.pod, namespace, state_of(entry), (entry or {}).get("version", ""),
                                (entry or {}).get("acked", ""), (entry or {}).get("nack_error", ""),
                                tuple((entry or {}).get("closed") or ())))
    return rows


@dataclass
class Convergence:
    """How long one change took to reach every affected sidecar: admission (schema, translation and Envoy's own
    validation, before anything is stored), then from the stored object to the last sidecar's ACK (the control
    plane's ACK times, checked against each Envoy's admin config_dump): Istio's convergence time. In a lab of several
    clusters each is measured from its own stored change to its own last ACK; `seconds` is the slowest cluster's."""

    seconds: float
    proxies: dict[str, float] = field(default_factory=dict)  # pod (cluster/pod in a fleet) -> ms from stored to ACK
    version: dict[str, str] = field(default_factory=dict)
    unchanged: int = 0
    admission: float = 0.0
    clusters: dict[str, float] = field(default_factory=dict)  # cluster -> seconds (empty for one cluster)

    def __repr__(self) -> str:
        if not self.proxies:
            return f"no sidecar's config changed ({self.unchanged} unchanged)"
        where = "; ".join(f"{c} {s * 1000:.0f} ms" for c, s in self.clusters.items())
        return (f"{len(self.proxies)} sidecars changed: admitted in {self.admission * 1000:.0f} ms, then every one "
                f"ACKed and serving {self.seconds * 1000:.0f} ms after it was stored ({self.unchanged} unchanged)"
                + (f"; by cluster: {where}" if where else ""))

    __str__ = __repr__


def wait_synced(lab, timeout: float = 15.0) -> None:
    """Block until every cluster's control plane has built from its latest objects and every connected sidecar
    ACKed (a lab of several clusters is several backends, each with its own revisions)."""
    if "convergence" not in lab.backend.capabilities():
        return  # Istio's istiod reports no input revision: nothing to wait on beyond the apply itself
    deadline = time.monotonic() + timeout
    for backend in lab.backend.parts():
        _wait_one(backend, deadline, timeout)


LISTENER_KINDS = {"PeerAuthentication", "AuthorizationPolicy"}  # they change the sidecars' inbound filter chains
DRAIN_S = 1.2  # the local sidecars' --drain-time-s 1 (backends/local/inject.py), and a margin


def wait_drained(lab, docs: list[dict]) -> None:
    """A new filter chain serves new connections once ACKed, but a connection opened before keeps the old chain
    until the sidecar drains it: after an mTLS or authorization change, wait that long (local sidecars)."""
    if any(d.get("kind") in LISTENER_KINDS for d in docs) and "convergence" in lab.backend.capabilities():
        time.sleep(DRAIN_S)


def _wait_one(backend, deadline: float, timeout: float) -> None:
    """wait_synced for one cluster."""
    revision = backend.revision()
    while True:
        sync = backend.proxy_status()
        if "does not answer" in sync.get("error", ""):
            print("the control plane is not running: the object is stored, and every sidecar keeps its last config "
                  "until the control plane is back")
            return
        pending = [e["pod"] + behind(e) for e in sync.get("proxies", []) if e.get("connected") and not e.get("nacked")
                   and e.get("acked") != e.get("version")]
        if sync.get("built_revision", 0) >= revision and not pending:
            return
        if time.monotonic() > deadline:
            raise MeshlabError(f"sidecars did not take the new config within {timeout:.0f}s: "
                               f"{', '.join(pending) or 'control plane still building'}",
                               "see lab.proxy_status() for STALE proxies and their errors")
        time.sleep(0.02)


def _versions(sync: dict, cluster: str = "") -> dict[str, dict]:
    return {e["pod"]: ({**e, "cluster": cluster} if cluster else e) for e in sync.get("proxies", []) if e.get("connected")}


def measured_clusters(lab, cluster: str | None = None) -> list[tuple[str, object]]:
    """(cluster, its own backend) to measure: each cluster of a fleet (or the one named), else ('', the backend)."""
    names = list(getattr(lab, "clusters", list)())
    if not names:
        if cluster:
            raise MeshlabError(f"convergence: this lab has one cluster, not {cluster!r}", "leave cluster= out")
        return [("", lab.backend)]
    return [(name, lab.backend.member(name)) for name in ([cluster] if cluster else names)]


def convergence(lab, yaml_text: str, source: str = "<cell>", timeout: float = 30.0,
                cluster: str | None = None) -> Convergence:
    """Apply YAML (to every cluster of a fleet, or to `cluster`); wait until every sidecar whose config changed ACKed
    it and its Envoy serves that version, on connections opened before too (wait_drained; not counted in the
    time). Each cluster counts its own revisions, so each is timed on its own."""
    parts = measured_clusters(lab, cluster)
    before = {name: _versions(part.proxy_status(), name) for name, part in parts}
    started = time.time()
    refs = lab.apply(yaml_text, source, wait=0, **({"cluster": cluster} if cluster else {}))
    admitted = time.time()
    marks = {name: (part.revision(), part.revision_time()) for name, part in parts}
    deadline = time.monotonic() + timeout
    done: dict[str, tuple[dict, dict]] = {}
    while len(done) < len(parts):
        waiting = []
        for name, part in parts:
            if name in done:
                continue
            sync = part.proxy_status()
            now = _versions(sync, name)
            built = sync.get("built_revision", 0) >= marks[name][0]
            changed = {pod: e for pod, e in now.items() if before[name].get(pod, {}).get("version") != e.get("version")}
            pending = [pod for pod, e in changed.items() if e.get("acked") != e.get("version")]
            if built and not pending and _serving(lab, changed):
                done[name] = (now, changed)
                continue
            where = f" of {name}" if name else ""
            if not built:
                waiting.append(f"the control plane{where} still building")
            waiting += [(f"{pod} ({name})" if name else pod) + behind(changed[pod]) for pod in pending] or \
                ([f"the Envoys{where} not serving the ACKed version yet"] if built else [])
        if len(done) == len(parts):
            break
        if time.monotonic() > deadline:
            raise MeshlabError(f"sidecars did not converge within {timeout:.0f}s: {', '.join(waiting)}",
                               "see lab.proxy_status() for STALE proxies and their errors")
        time.sleep(0.01)
    times, versions, unchanged, per_cluster = {}, {}, 0, {}
    for name, _ in parts:
        now, changed = done[name]
        stored_at = marks[name][1]
        mine = {pod: max(0.0, (e.get("acked_at") or stored_at) - stored_at) * 1000 for pod, e in changed.items()}
        key = (lambda pod: f"{name}/{pod}") if name else (lambda pod: pod)
        times.update({key(pod): ms for pod, ms in mine.items()})
        versions.update({key(pod): e["version"] for pod, e in changed.items()})
        unchanged += len(now) - len(changed)
        if name:
            per_cluster[name] = max(mine.values(), default=0.0) / 1000
    wait_drained(lab, [{"kind": ref.split("/")[0]} for ref in refs or []])  # refs are `Kind/name`
    return Convergence(max(times.values(), default=0.0) / 1000, times, versions, unchanged, admitted - started,
                       per_cluster)


def behind(entry: dict) -> str:
    """Why a proxy has not ACKed its version, from the control plane's push state per type: ' (Cluster: NACK ...)',
    ' (Listener: sent 3 s ago, not ACKed)', or '' when the control plane has nothing more to say."""
    now = time.time()
    parts = []
    for kind, state in sorted((entry.get("types") or {}).items()):
        if state.get("nacked"):
            parts.append(f"{kind}: NACK {state.get('nack_error', '')[:80]}")
        elif state.get("version_sent") and state.get("version_acked") != entry.get("version"):
            sent = state.get("pushed_at") or 0.0
            parts.append(f"{kind}: sent {now - sent:.0f} s ago, not ACKed" if sent else f"{kind}: not ACKed")
    if not (entry.get("types") or {}):
        parts.append("nothing pushed on this stream yet")
    return f" ({'; '.join(parts)})" if parts else ""


def _serving(lab, changed: dict) -> bool:
    """Each changed proxy's Envoy reports the new version in its admin API (the cross-check)."""
    admins = {(p.cluster or "", p.pod): p.admin_url for p in lab.proxies() if p.role == "sidecar"}
    for pod, entry in changed.items():
        url = admins.get((entry.get("cluster", ""), pod))
        if url and entry["version"] not in envoy_versions(url):
            return False
    return True


def envoy_versions(admin_url: str) -> set[str]:
    """Every xDS version_info an Envoy currently serves (listeners, routes, clusters)."""
    try:
        dump = Admin(admin_url, timeout=2).config_dump()
    except ERRORS:
        return set()
    found = set()
    for config in dump.get("configs") or []:
        for key in ("version_info",):
            if config.get(key):
                found.add(config[key])
        for item in (config.get("dynamic_listeners") or []):
            found.add((item.get("active_state") or {}).get("version_info", ""))
        for item in (config.get("dynamic_active_clusters") or []) + (config.get("dynamic_route_configs") or []):
            found.add(item.get("version_info", ""))
    return found - {""}


@dataclass
class CallResult:
    """One call made from inside a pod (or from outside the mesh), like `kubectl exec POD -- curl URL`."""

    source: str
    url: str
    status: int
    hops: list = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        what = f"HTTP {self.status}" if self.status else "no answer"
        detail = f" ({self.error})" if self.error and not self.ok else ""
        return f"{self.source} -> {self.url}: {what}{detail}"

    __str__ = __repr__


def call(lab, source: str | None, url: str, headers: dict | None = None, timeout: float = 10.0) -> CallResult:
    """GET url from a pod of app `source` (through its sidecar when it has one), or from outside the mesh (None)."""
    if not url.startswith("http://"):
        raise MeshlabError(f"call: {url!r} is not an http:// URL", "e.g. lab.call('frontend', 'http://reviews:9080/')")
    if source is None:
        return _call_from_outside(lab, url, headers or {}, timeout)
    pods = [p for p in lab.pods() if (p.service == source or p.name == source) and p.ready]
    if not pods:
        raise MeshlabError(f"call: no ready pod of {source}", "see lab.pods() for the apps that run")
    query = urllib.parse.urlencode([("url", url)] + [("header", f"{k}:{v}") for k, v in (headers or {}).items()])
    answer = json.loads(lab.backend.pod_get(pods[0].name, f"/_meshlab/call?{query}", timeout))
    return CallResult(pods[0].name, url, int(answer.get("status") or 0), answer.get("paths") or [],
                      answer.get("error", ""))


def _call_from_outside(lab, url: str, headers: dict, timeout: float) -> CallResult:
    """A client with no sidecar and no certificate: straight to the Service's address."""
    parts = urllib.parse.urlsplit(url)
    target = lab.backend.service_url(parts.hostname, parts.port or 80)
    request = urllib.request.Request(target + (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                                     headers=headers)
    try:
        with _DIRECT.open(request, timeout=timeout) as response:
            status, raw, error = response.status, response.read(), ""
    except urllib.error.HTTPError as exc:
        status, raw, error = exc.code, exc.read(), ""
    except (OSError, ValueError) as exc:
        status, raw, error = 0, b"", str(getattr(exc, "reason", exc))
    try:
        hops = json.loads(raw).get("paths") or []
    except (ValueError, AttributeError):
        hops = []
    return CallResult("outside the mesh", url, status, hops, error or (raw.decode(errors="replace")[:120] if status >= 400 else ""))
