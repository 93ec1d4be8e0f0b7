"""Stage-5 operations the kind and kube backends share: rollout restart, proxy status, the watch API, pod calls."""

from __future__ import annotations

import hashlib
import json
import time

from . import istio
from .base import MeshlabError
from .kubectl import app_container, check, is_proxy, lab_objects, pod_info

KINDS = {"deployment": "deployment", "deployments": "deployment", "deploy": "deployment",
         "daemonset": "daemonset", "daemonsets": "daemonset", "ds": "daemonset",
         "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset"}
CORE_KINDS = "namespaces,services,serviceaccounts"  # kube: no namespaces (cluster-wide; a learner may not list them)
ISTIO_KINDS = ("virtualservices.networking.istio.io,destinationrules.networking.istio.io,"
               "serviceentries.networking.istio.io,peerauthentications.security.istio.io,"
               "authorizationpolicies.security.istio.io")
INJECTED = "sidecar.istio.io/status"
POLL = 1.0  # seconds between two looks at the cluster while watch() waits
# Run inside the app container: GET a URL with the stdlib, past any HTTP_PROXY, and print the body.
GET_CLIENT = ("import sys, urllib.request as u; "
              "print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=float(sys.argv[2])).read().decode())")


def parse_ref(ref: str, default_namespace: str) -> tuple[str, str, str]:
    """`deployment/NAME` or `NAMESPACE/deployment/NAME` -> (kind, namespace, name), as the local backend reads it."""
    parts = ref.split("/")
    if len(parts) == 2:
        parts = [default_namespace] + parts
    if len(parts) != 3 or parts[1].lower() not in KINDS or not parts[2] or not parts[0]:
        raise MeshlabError(f"cannot restart {ref}: give deployment/NAME or daemonset/NAME",
                           "e.g. lab.restart('deployment/reviews-v1')")
    return KINDS[parts[1].lower()], parts[0], parts[2]


def strip(obj: dict) -> dict:
    """An object as applied: without status and the server's bookkeeping fields."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("managedFields",)}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def pod_entry(pod: dict) -> dict:
    """One pod in the watch API's shape (docs/controlplane.md)."""
    info, meta, spec = pod_info(pod), pod.get("metadata") or {}, pod.get("spec") or {}
    annotations = dict(meta.get("annotations") or {})
    ports = {p.get("name") or str(p["containerPort"]): int(p["containerPort"])
             for c in spec.get("containers") or [] if not is_proxy(c) for p in c.get("ports") or []}
    return {"name": info.name, "namespace": info.namespace, "ip": info.ip, "node": info.node,
            "labels": dict(info.labels), "annotations": annotations,
            "service_account": spec.get("serviceAccountName") or "default", "ready": info.ready,
            "injected": "istio-proxy" in annotations.get(INJECTED, ""), "ports": ports}


class MeshOperations:
    """Mixed into ClusterBackend: what stage 5 asks of a Kubernetes backend (Istio is the control plane)."""

    def install_mesh(self) -> None:
        """Make the control plane ready before a stage's sidecars are injected (kind installs, kube finds)."""
        raise MeshlabError(f"the {self.name} backend cannot provide a control plane", "use kind or kube")

    def capabilities(self) -> set[str]:
        """What this backend can do beyond the base interface (see the subclasses)."""
        return {"restart", "mesh", "istio", "proxy-status", "watch", "pod-get"}

    def istio_found(self) -> istio.IstioFound:
        """The Istio that install_mesh() installed or found (from the state file)."""
        known = self.state.read().get("istio")
        if not known:
            raise MeshlabError("no control plane in this lab yet", "deploy stage 5 first: lab.up(stage=5)")
        return istio.IstioFound(known["namespace"], known.get("revision", ""), known.get("version", ""))

    def remember_istio(self, found: istio.IstioFound) -> None:
        self.state.update(istio={"namespace": found.namespace, "revision": found.revision, "version": found.version})

    # ---- restart ---------------------------------------------------------------------------------
    def restart(self, ref: str, timeout: float = 60.0) -> list[str]:
        """`kubectl rollout restart` + `rollout status` of one workload; returns its new, ready pods."""
        kind, namespace, name = parse_ref(ref, self.namespace)
        self.check_namespace(namespace)
        self.kubectl.run("rollout", "restart", f"{kind}/{name}", namespace=namespace, what=f"restart {kind}/{name}",
                         hint="see `meshlab status` for workload names")
        seconds = max(1, round(timeout))
        result = self.kubectl.call("rollout", "status", f"{kind}/{name}", f"--timeout={seconds}s",
                                   namespace=namespace, timeout=seconds + 30)
        check(result, f"{kind}/{name} did not roll out in {seconds}s", "look at lab.pods() and lab.logs()")
        workload = json.loads(self.kubectl.run("get", kind, name, "-o", "json", namespace=namespace,
                                               what=f"kubectl get {kind}/{name}"))
        selector = ",".join(f"{k}={v}" for k, v in sorted(workload["spec"]["selector"]["matchLabels"].items()))
        pods = json.loads(self.kubectl.run("get", "pods", "-o", "json", "-l", selector, namespace=namespace,
                                           what=f"pods of {kind}/{name}") or "{}").get("items", [])
        return sorted(p["metadata"]["name"] for p in pods
                      if not p["metadata"].get("deletionTimestamp") and pod_info(p).ready)

    def check_namespace(self, namespace: str) -> None:
        """kind may act in any namespace; kube overrides this to keep a learner in theirs."""

    # ---- status and calls --------------------------------------------------------------------------
    def proxy_status(self) -> dict:
        """istiod's view of every sidecar, in the shape of the local control plane's /debug/syncz."""
        found = self.istio_found()
        namespace = None if self.all_namespaces else self.namespace
        proxies = istio.proxy_status(self.runner, self.kubectl.context, namespace, found.namespace, found.revision)
        return {"version": found.version, "proxies": proxies}

    def pod_get(self, pod: str, path: str, timeout: float = 10.0) -> str:
        """GET http://127.0.0.1:<app port><path> inside a pod's app container (`kubectl exec` of python)."""
        found = self.find_pod(pod, self.pod_objects())
        meta, app = found["metadata"], app_container(found)
        if not app:
            raise MeshlabError(f"pod {meta['name']} has no app container with a port", "calls go to meshlab's sample app")
        url = f"http://127.0.0.1:{app[1]}{path}"
        return self.kubectl.run("exec", meta["name"], "-c", app[0], "--", "python", "-c", GET_CLIENT, url, str(timeout),
                                namespace=meta["namespace"], timeout=timeout + 30, what=f"call from {meta['name']}")

    # ---- the watch API ---------------------------------------------------------------------------
    def watch_state(self) -> dict:
        """Every watched object and every pod of the lab, now (`objects` and `pods` of the watch API)."""
        core = CORE_KINDS if self.all_namespaces else CORE_KINDS.split(",", 1)[1]
        objects = self.kubectl.items(core, all_namespaces=self.all_namespaces)
        istio_kinds = self.kubectl.call("get", ISTIO_KINDS, "-o", "json", *(["-A"] if self.all_namespaces else []),
                                        namespace=None if self.all_namespaces else "")
        if istio_kinds.returncode == 0:  # no Istio CRDs yet (stages 0-4): no policy objects
            objects += json.loads(istio_kinds.stdout or "{}").get("items", [])
        return {"objects": [strip(o) for o in lab_objects(objects)], "pods": [pod_entry(p) for p in self.pod_objects()]}

    def watch(self, since: int = 0, timeout: float = 30.0) -> dict:
        """Long-poll: the full state once its revision passes `since`, else after `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            state = self.watch_state()
            digest = hashlib.sha256(json.dumps(
                [[(o.get("metadata") or {}).get("uid"), (o.get("metadata") or {}).get("resourceVersion")]
                 for o in state["objects"]] + [[p["name"], p["ip"], p["ready"]] for p in state["pods"]],
                sort_keys=True).encode()).hexdigest()
            seen = getattr(self, "_watch_seen", ("", 0))
            revision = seen[1] + 1 if digest != seen[0] else seen[1]
            self._watch_seen = (digest, revision)
            if revision != since or time.monotonic() >= deadline:
                return {"revision": revision, "cluster": self.cluster, **state}
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))

