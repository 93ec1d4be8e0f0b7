"""ConfigMap edits reach running Envoys in seconds on kind and kube, and apply() returns once they have.

The kubelet refreshes a configMap volume only on its periodic sync of the pod (commonly 60-90 s), so an
edited router or sidecar config would land long after a lesson measured it. Any change to the pod object
makes the kubelet sync that pod at once, and the sync remounts its configMap volumes from the new
ConfigMap: so after `kubectl apply`, every pod that mounts a changed ConfigMap gets the annotation
`meshlab.io/config-rev=<hash of the ConfigMaps' data>` (`kubectl annotate --overwrite`), which changes
nothing else about the pod.

Then apply() waits until each such Envoy (an `envoyproxy/envoy` container that mounts the ConfigMap)
has read the new files, seen through its admin API (the admin port-forward, adminforward.py):
- Envoy re-reads lds.yaml/cds.yaml when the kubelet swaps the volume's `..data` link (`watched_directory`),
  and counts each read in `listener_manager.lds.update_attempt` / `cluster_manager.cds.update_attempt`.
  The counts are taken before the apply and must grow: a read of the new files, whatever they contain. A
  version or hash inside the config would not do: a learner's edit carries no version_info, and the config
  dump renders Envoy's protos (defaults dropped, durations and integers reformatted), so comparing it with
  the YAML fails on configs that did land, and an edit that changes only comments or formatting would
  never show up in it at all.
- `update_rejected` must not grow (Envoy refused the files: the error names the pod), and /config_dump must
  show nothing warming (`dynamic_warming_clusters`, listeners with a `warming_state`): the new listeners and
  clusters are the active ones.
Pods that go away meanwhile (a rollout) are not waited for; after `timeout` the error names the pods still
on the old config. A ConfigMap whose data the cluster has already (or that kubectl reports `unchanged`) touches
nothing. Proxies whose config comes over xDS (Istio) and pods that are not running are not waited for: they
read the ConfigMap when they start.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ..envoy.admin import ERRORS, Admin
from ..envoy.configcheck import is_envoy
from .base import MeshlabError
from .kubectl import check, long_running, pod_info

ANNOTATION = "meshlab.io/config-rev"
DATA = ("data", "binaryData")  # what a configMap volume shows
TIMEOUT = 30.0
POLL = 0.3
FIRST_READ_TIMEOUT = 20.0  # the first admin call of a proxy may start its port-forward
READ_TIMEOUT = 3.0
ATTEMPTS = ("listener_manager.lds.update_attempt", "cluster_manager.cds.update_attempt")
REJECTED = ("listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected",
            "listener_manager.lds.update_failure", "cluster_manager.cds.update_failure")
STATS = "/stats?" + urllib.parse.urlencode(
    {"format": "json", "filter": r"^(listener_manager\.lds|cluster_manager\.cds)\.update_(attempt|rejected|failure)$"})


def revision(configmaps: list[dict]) -> str:
    """A short hash of the ConfigMaps' data (the annotation's value)."""
    data = [[(c.get("metadata") or {}).get("name"), *(c.get(f) or {} for f in DATA)] for c in configmaps]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def volume_configmaps(pod: dict) -> dict[str, set[str]]:
    """volume name -> the ConfigMaps it shows (a configMap volume, or a projected one's configMap sources)."""
    out = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        names = {(volume.get("configMap") or {}).get("name")}
        names |= {(s.get("configMap") or {}).get("name") for s in (volume.get("projected") or {}).get("sources") or []}
        names.discard(None)
        if names:
            out[volume["name"]] = names
    return out


def mounted(pod: dict) -> set[str]:
    """Every ConfigMap a pod mounts."""
    return set().union(*volume_configmaps(pod).values()) if volume_configmaps(pod) else set()


def envoy_mounted(pod: dict) -> set[str]:
    """The ConfigMaps the pod's Envoy (an envoyproxy/envoy container) reads files from."""
    volumes, out = volume_configmaps(pod), set()
    for container in long_running(pod.get("spec") or {}):
        if is_envoy(container):
            for mount in container.get("volumeMounts") or []:
                if not mount.get("subPath"):  # a subPath mount is never refreshed by the kubelet
                    out |= volumes.get(mount["name"], set())
    return out


def unchanged(output: str, name: str) -> bool:
    """Whether `kubectl apply` reported ConfigMap `name` unchanged."""
    return re.search(rf"^configmap/{re.escape(name)} unchanged$", output or "", re.M) is not None


def counters(url: str, timeout: float) -> dict[str, int] | None:
    """Envoy's LDS/CDS read and rejection counts (None when its admin does not answer)."""
    try:
        stats = Admin(url, timeout).json(STATS).get("stats") or []
    except ERRORS:
        return None
    return {s["name"]: int(s.get("value", 0)) for s in stats if "name" in s}


def warming(url: str) -> bool | None:
    """Whether Envoy still warms a new listener or cluster (None when its admin does not answer)."""
    try:
        admin = Admin(url, READ_TIMEOUT)
        clusters = admin.json("/config_dump?resource=dynamic_warming_clusters").get("configs") or []
        listeners = admin.json("/config_dump?resource=dynamic_listeners").get("configs") or []
    except ERRORS:
        return None
    return bool(clusters) or any(item.get("warming_state") for item in listeners)


class Reload:
    """One apply's ConfigMaps that change: which of the lab's pods mount them and what their Envoys had read before
    (see the module docstring); `live` is the lab's objects (pods, ConfigMaps) as the cluster has them now."""

    def __init__(self, backend, docs: list[dict], live: list[dict], timeout: float | None = None):
        self.backend, self.timeout = backend, TIMEOUT if timeout is None else timeout
        stored = {(o["metadata"].get("namespace") or backend.namespace, o["metadata"]["name"]): o
                  for o in live if o.get("kind") == "ConfigMap"}
        self.maps = {}  # the applied ConfigMaps that are new, or whose data differs from what the cluster has
        for doc in (d for d in docs if d.get("kind") == "ConfigMap"):
            key = (doc["metadata"].get("namespace") or backend.namespace, doc["metadata"]["name"])
            if key not in stored or [doc.get(f) or {} for f in DATA] != [stored[key].get(f) or {} for f in DATA]:
                self.maps[key] = doc
        self.pods: list[tuple[dict, set]] = []  # (pod, the applied ConfigMaps it mounts)
        self.before: dict[str, tuple[str, dict, set]] = {}  # pod -> (admin url, counters, ConfigMaps its Envoy reads)
        if not self.maps:
            return
        killed, readers = {pod for pod, _ in backend.killed()}, []
        for pod in (o for o in live if o.get("kind") == "Pod" and not o["metadata"].get("deletionTimestamp")):
            namespace = pod["metadata"].get("namespace") or backend.namespace
            names = {(namespace, n) for n in mounted(pod)} & set(self.maps)
            if not names:
                continue
            self.pods.append((pod, names))
            read = {(namespace, n) for n in envoy_mounted(pod)} & names
            if read and pod["metadata"]["name"] not in killed and self.running_envoy(pod):
                readers.append((pod, read))
        urls = [backend.admin_url(pod) for pod, _ in readers]
        with ThreadPoolExecutor(max(1, min(8, len(readers)))) as pool:  # a first admin call may start a port-forward
            seen_all = pool.map(lambda u: counters(u, FIRST_READ_TIMEOUT) if u else None, urls)
            for (pod, read), url, seen in zip(readers, urls, seen_all):
                if seen and any(a in seen for a in ATTEMPTS):  # no LDS/CDS from files: the config is read at start only
                    self.before[self.name(pod)] = (url, seen, read)

    def name(self, pod: dict) -> str:
        """A pod's name, with its namespace when that is not the lab's."""
        meta = pod["metadata"]
        namespace = meta.get("namespace") or self.backend.namespace
        return meta["name"] if namespace == self.backend.namespace else f"{namespace}/{meta['name']}"

    @staticmethod
    def running_envoy(pod: dict) -> bool:
        info = pod_info(pod)
        envoys = {c["name"] for c in long_running(pod.get("spec") or {}) if is_envoy(c)}
        return info.phase == "Running" and all(c.state == "running" for c in info.containers if c.name in envoys)

    def finish(self, output: str) -> None:
        """After `kubectl apply` (its output): annotate the pods that mount a changed ConfigMap, wait for their Envoys."""
        changed = {k for k in self.maps if not unchanged(output, k[1])}
        targets = [(pod, names & changed) for pod, names in self.pods if names & changed]
        if not targets:
            return
        groups: dict[tuple[str, str], list[str]] = {}
        for pod, names in targets:
            rev = revision([self.maps[k] for k in sorted(names)])
            namespace = pod["metadata"].get("namespace") or self.backend.namespace
            groups.setdefault((namespace, rev), []).append(pod["metadata"]["name"])
        for (namespace, rev), pods in groups.items():
            result = self.backend.kubectl.call("annotate", "pod", *pods, f"{ANNOTATION}={rev}", "--overwrite",
                                               namespace=namespace)
            if result.returncode != 0 and "NotFound" not in (result.stderr or ""):  # a pod that just went is fine
                check(result, f"kubectl annotate pod {' '.join(pods)}")
        names = {self.name(p) for p, _ in targets}
        self.wait({pod: entry for pod, entry in self.before.items() if pod in names and entry[2] & changed})

    def wait(self, waiting: dict[str, tuple[str, dict, set]]) -> None:
        """Until every Envoy in `waiting` runs the new files (or its pod is gone); see the module docstring."""
        deadline = time.monotonic() + self.timeout
        while waiting:
            unanswered = False
            for pod, (url, before, maps) in list(waiting.items()):
                now = counters(url, READ_TIMEOUT)
                if now is None:
                    unanswered = True
                    continue
                if not all(now.get(a, 0) > before[a] for a in ATTEMPTS if a in before):
                    continue
                if any(now.get(r, 0) > before.get(r, 0) for r in REJECTED):
                    raise MeshlabError(f"the proxy in pod {pod} rejected the new config of ConfigMap "
                                       f"{', '.join(sorted(n for _, n in maps))}",
                                       f"its log says why: kubectl logs {pod}; fix the config and apply again")
                if warming(url) is False:
                    del waiting[pod]
            if waiting and (unanswered or time.monotonic() >= deadline):
                self.forget_gone(waiting)
            if not waiting:
                return
            if time.monotonic() >= deadline:
                maps = sorted({n for _, _, m in waiting.values() for _, n in m})
                raise MeshlabError(f"ConfigMap {', '.join(maps)} was applied, but after {self.timeout:.0f}s these proxies "
                                   f"still run the old config: {', '.join(sorted(waiting))}",
                                   "the kubelet refreshes ConfigMap volumes by itself within ~90 s; if it does not, "
                                   "look at `kubectl describe pod` and lab.logs()")
            time.sleep(POLL)

    def forget_gone(self, waiting: dict) -> None:
        """Stop waiting for pods that no longer run (deleted, terminating or replaced)."""
        alive = {self.name(p) for p in self.backend.pod_objects()
                 if not p["metadata"].get("deletionTimestamp") and self.running_envoy(p)}
        for pod in set(waiting) - alive:
            del waiting[pod]
