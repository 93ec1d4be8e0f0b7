"""What the kind and kube backends share: kubectl-driven objects, rollouts, status, faults, logs."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import threading
import time
from pathlib import Path

from . import configreload, edge
from ..edge import translate
from ..envoy import binary, configcheck
from .adminforward import AdminGateway
from .base import Backend, MeshlabError, NodeInfo, PodInfo, ProxyInfo
from .clustermesh import MeshOperations
from .state import StateFile
from .kubectl import (Kubectl, Runner, admin_port, app_container, check, is_control_plane, lab_objects, labels, node_info,
                      not_found, pod_info, proxy_container, proxy_info, proxy_name, ref)

OWNED_LABEL = "meshlab.io/owned"
FAULT_PATH = "/_meshlab/fault"
# Run inside the app container (a stock python image): send stdin to the app's fault endpoint. `kubectl exec`
# inherits the container's env, so HTTP_PROXY (stages 2-4) would send the call to the proxy: bypass it.
FAULT_CLIENT = ("import sys, urllib.request as u; r = u.Request(sys.argv[1], data=sys.stdin.buffer.read() or None, "
                "method=sys.argv[2], headers={'content-type': 'application/json'}); "
                "print(u.build_opener(u.ProxyHandler({})).open(r, timeout=5).read().decode())")
KUBECTL_HINTS = {
    "Linux": "install kubectl: `sudo snap install kubectl --classic`, or see https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/",
    "Darwin": "install kubectl: `brew install kubectl` (see https://kubernetes.io/docs/tasks/tools/install-kubectl-macos/)",
    "Windows": "install kubectl: `winget install -e --id Kubernetes.kubectl` (see https://kubernetes.io/docs/tasks/tools/install-kubectl-windows/)",
}


# ---- small helpers --------------------------------------------------------------------------------


def os_hint(hints: dict) -> str:
    """The hint for this operating system (Linux's when the system is unknown)."""
    return hints.get(platform.system(), hints["Linux"])


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, wait: float = 0.0) -> bool:
    """Whether 127.0.0.1:port accepts connections, trying for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


def forward_running(pid: int) -> bool:
    """Whether a port-forward this backend started still runs (on Linux: that pid is still a kubectl port-forward)."""
    if Path("/proc/self").exists():
        try:
            return b"port-forward" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def forward_ready(pid: int, port: int, wait: float) -> bool:
    """Wait up to `wait` seconds for a new port-forward to listen on 127.0.0.1:port; False at once if it exits
    (e.g. its pod is not running)."""
    deadline = time.monotonic() + wait
    while True:
        if port_open(port, wait=min(0.5, max(0.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() >= deadline or not forward_running(pid):
            return False


def stop_process(pid: int) -> None:
    """SIGTERM a helper this backend started; on Linux only if that pid is still a kubectl port-forward."""
    if Path("/proc/self").exists():
        try:
            if b"port-forward" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        except OSError:
            return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


def current_context(runner: Runner) -> str:
    """kubectl's current context, or "" when there is none."""
    result = runner.run(["kubectl", "config", "current-context"], timeout=15)
    return result.stdout.strip() if result.returncode == 0 else ""


class SharedState(StateFile):
    """The lab's state file, updated by one thread at a time (the admin gateway's thread records forwards too)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.lock = threading.RLock()

    def update(self, **changes) -> dict:
        with self.lock:
            return super().update(**changes)


# ---- what kind and kube share ---------------------------------------------------------------------


class ClusterBackend(MeshOperations, Backend):
    """A lab on Kubernetes through kubectl: objects, rollouts, status, faults and logs; subclasses own the cluster."""

    pin_namespace = True  # pass -n on apply/delete (kube); kind lets each object say where it goes
    all_namespaces = False  # list pods cluster-wide (kind) or in the lab namespace (kube)

    def __init__(self, kubectl: Kubectl, namespace: str, edge_namespace: str, state_path: Path, progress=None,
                 detached: bool = False):
        self.kubectl, self.runner = kubectl, kubectl.runner
        self.namespace, self.edge_namespace = namespace, edge_namespace
        self.state = SharedState(state_path)
        self.progress = progress or (lambda message: print(message, flush=True))
        self.cluster = ""
        # detached: a CLI lab, whose port-forwards must outlive the command that started them (`meshlab down` ends them)
        self.detached = detached
        self.admin = AdminGateway(self.admin_forward, self.drop_admin_forward)
        self._forward_locks: dict[str, threading.Lock] = {}

    def say(self, message: str) -> None:
        self.progress(f"[{self.name}] {message}")

    # ---- objects ---------------------------------------------------------------------------------
    def apply(self, docs: list[dict], source: str = "<yaml>") -> list[str]:
        """`kubectl apply -f -` of the docs, byte for byte, once Envoy accepts the configs they change; a changed
        ConfigMap is then read by the proxies that mount it before this returns (configreload.py)."""
        live = self.live_objects() if configcheck.relevant(docs) else []  # one look, for the check and the reload
        self.check_envoy(docs, source, live)
        self.prepare(docs)
        reload = configreload.Reload(self, docs, live)
        output = self.kubectl.apply(docs, namespace="" if self.pin_namespace else None)
        reload.finish(output)
        return [ref(d) for d in docs]

    def prepare(self, docs: list[dict]) -> None:
        """What must happen after the docs were checked and before they are applied (kind: load their images)."""

    def live_objects(self) -> list[dict]:
        """The lab's workloads, ConfigMaps and pods as the cluster has them now (one `kubectl get`)."""
        return [o for o in lab_objects(self.kubectl.items("deployments,daemonsets,configmaps,pods",
                                                          all_namespaces=self.all_namespaces))
                if o.get("kind") and o.get("metadata")]

    def check_envoy(self, docs: list[dict], source: str, live: list[dict]) -> None:
        """`envoy --mode validate` of every Envoy config these docs change, as the pods would read it, over the
        `live` objects (meshlab/envoy/configcheck.py, as the local backend does): a bad one raises, nothing applied."""
        if not configcheck.relevant(docs):
            return
        try:
            binary.find()
        except MeshlabError as exc:
            self.say(f"note: Envoy configs are not checked before they reach the cluster ({exc.message}); "
                     "a proxy that rejects one logs why (lab.logs())")
            return
        objects = {configcheck.key(o, self.namespace): o for o in live if o["kind"] != "Pod"}
        configcheck.check_now(objects, docs, source, namespace=self.namespace)

    def delete(self, docs: list[dict]) -> list[str]:
        """`kubectl delete -f -` of the docs."""
        self.kubectl.delete(docs, namespace="" if self.pin_namespace else None)
        return [ref(d) for d in docs]

    def objects(self, kind: str) -> list[dict]:
        """`kubectl get KIND -o json` in the lab's namespace: the objects as the API server stores them."""
        text = self.kubectl.run("get", kind.lower(), "-o", "json", what=f"kubectl get {kind}")
        return [item for item in json.loads(text or "{}").get("items") or [] if isinstance(item, dict)]

    def install_edge(self, host_port: int | None, with_namespace: bool = False) -> None:
        """Apply the Envoy edge and its ingress controller (IngressClass `edge`, backends/edge.py) and wait for it."""
        self.say("installing the edge proxy (Envoy, meshlab's ingress controller, IngressClass edge)")
        docs = edge.documents(self.edge_namespace, self.namespace, host_port, with_namespace)
        self.kubectl.apply(docs, namespace=None)
        self.rollout([("deployment", edge.NAME, self.edge_namespace)], timeout=240)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """`kubectl rollout status` for every Deployment, DaemonSet and StatefulSet of the lab."""
        items = lab_objects(self.kubectl.items("deployments,daemonsets,statefulsets", all_namespaces=self.all_namespaces))
        self.rollout([(o["kind"].lower(), o["metadata"]["name"], o["metadata"]["namespace"]) for o in items], timeout)

    def rollout(self, workloads: list[tuple[str, str, str]], timeout: float) -> None:
        """Wait for each workload in turn within one overall timeout, saying how far along it is."""
        start = time.monotonic()
        for number, (kind, name, namespace) in enumerate(workloads, 1):
            left = max(1, round(timeout - (time.monotonic() - start)))
            result = self.kubectl.call("rollout", "status", f"{kind}/{name}", f"--timeout={left}s",
                                       namespace=namespace, timeout=left + 30)
            check(result, f"{kind}/{name} is not ready after {timeout:.0f}s",
                  "look at lab.pods() (waiting containers, restarts) and lab.logs()")
            self.say(f"ready {number}/{len(workloads)}: {kind}/{name} ({time.monotonic() - start:.0f}s)")

    # ---- views -----------------------------------------------------------------------------------
    def pod_objects(self) -> list[dict]:
        return lab_objects(self.kubectl.items("pods", all_namespaces=self.all_namespaces))

    def killed(self) -> frozenset:
        """(pod, container) pairs that kill() holds down."""
        return frozenset((f["pod"], f["container"]) for f in self.state.read().get("frozen", []))

    def pods(self) -> list[PodInfo]:
        killed = self.killed()
        return [pod_info(p, self.cluster, killed) for p in self.pod_objects()]

    def nodes(self) -> list[NodeInfo]:
        result = self.kubectl.call("get", "nodes", "-o", "json", namespace=None)
        if result.returncode != 0 and "forbidden" in result.stderr.lower():  # a learner may not list nodes
            return [NodeInfo(n, "", True, self.cluster) for n in sorted({p.node for p in self.pods() if p.node})]
        items = json.loads(check(result, "kubectl get nodes") or "{}").get("items", [])
        return [node_info(n, self.cluster) for n in items]

    def proxies(self) -> list[ProxyInfo]:
        """Every proxy, its admin_url served by this process's admin gateway (adminforward.py): listing them
        starts no port-forward; forwards of pods that are gone are stopped. A CLI lab (detached) shows the URL of
        a pod's own running forward instead, which outlives the command that prints it."""
        killed, found, keys = self.killed(), [], set()
        direct = self.running_admin_forwards() if self.detached else {}
        for pod in self.pod_objects():
            info = proxy_info(pod, self.cluster, killed)
            if info:
                key = f"{pod['metadata'].get('namespace') or self.namespace}/{info.pod}"
                url = self.admin_url(pod)
                info.admin_url = direct.get(key, url) if url else ""
                found.append(info)
                keys.add(key)
        self.prune_admin_forwards(keys)
        return found

    def running_admin_forwards(self) -> dict[str, str]:
        """namespace/pod -> http://127.0.0.1:<port> of each detached admin port-forward that still runs."""
        return {key: f"http://127.0.0.1:{known['port']}" for key, known in self.state.read().get("admin_forwards", {}).items()
                if known.get("detached") and forward_running(known["pid"])}

    def admin_url(self, pod: dict) -> str:
        """The Envoy admin URL of a proxy pod ("" for a proxy without an Envoy admin)."""
        port = admin_port(pod)
        meta = pod["metadata"]
        return self.admin.url(meta.get("namespace") or self.namespace, meta["name"], port) if port else ""

    def capabilities(self) -> set[str]:
        """Stage-5 operations (MeshOperations) and every proxy's admin API (through port-forwards)."""
        return super().capabilities() | {"admin"}

    def entrypoint(self) -> str:
        """The edge when the lab has an Ingress it serves (class `edge`), else the frontend Service (through a
        port-forward), as on the local backend."""
        if any(translate.serves(i) for i in self.kubectl.items("ingresses")):
            return self.edge_url()
        result = self.kubectl.call("get", "service", "frontend", "-o", "json")
        if not_found(result):
            raise MeshlabError("the lab has no Ingress and no Service named frontend", "deploy a stage first: lab.up(stage=0)")
        port = json.loads(check(result, "kubectl get service frontend"))["spec"]["ports"][0]["port"]
        return self.forward(self.namespace, "frontend", port)

    def edge_url(self) -> str:
        raise NotImplementedError

    def forward(self, namespace: str, service: str, port: int) -> str:
        """http://127.0.0.1:<local> served by a `kubectl port-forward` to the Service, reused while it lives."""
        local = self.port_forward("forwards", f"{namespace}/{service}:{port}", f"service/{service}", port, namespace)
        return f"http://127.0.0.1:{local}"

    def admin_forward(self, namespace: str, pod: str, port: int) -> int:
        """The local port of a `kubectl port-forward` to a pod's Envoy admin (the admin gateway calls this)."""
        return self.port_forward("admin_forwards", f"{namespace}/{pod}", f"pod/{pod}", port, namespace)

    def port_forward(self, section: str, key: str, target: str, port: int, namespace: str) -> int:
        """A running `kubectl port-forward TARGET <local>:PORT` on 127.0.0.1, recorded in the state under
        section/key (pid, port, and whether it is detached): the recorded one while it answers, else a new one.
        A CLI lab (detached) starts forwards that outlive it and reuses only such ones."""
        with self._forward_locks.setdefault(f"{section}/{key}", threading.Lock()):
            known = self.state.read().get(section, {}).get(key)
            if known and (known.get("detached") or not self.detached) and port_open(known["port"]):
                return known["port"]
            local = free_port()
            self.state.path.parent.mkdir(parents=True, exist_ok=True)
            log = self.state.path.with_suffix(".port-forward.log")
            argv = self.kubectl.argv("port-forward", "--address", "127.0.0.1", target, f"{local}:{port}",
                                     namespace=namespace)
            pid = self.runner.spawn(argv, log, detached=True) if self.detached else self.runner.spawn(argv, log)
            self._record(section, key, {"pid": pid, "port": local, **({"detached": True} if self.detached else {})})
            if not forward_ready(pid, local, wait=15):
                stop_process(pid)
                self._record(section, key, None)
                raise MeshlabError(f"kubectl port-forward to {target} did not start", f"see {log}")
            return local

    def _record(self, section: str, key: str, record: dict | None) -> None:
        """Remember (or with None forget) one port-forward in the state file."""
        with self.state.lock:
            entries = self.state.read().get(section, {})
            if record is None and key not in entries:
                return
            entries = {k: v for k, v in entries.items() if k != key} | ({key: record} if record else {})
            self.state.update(**{section: entries})

    def drop_admin_forward(self, namespace: str, pod: str) -> None:
        """Stop and forget the admin port-forward of one pod."""
        known = self.state.read().get("admin_forwards", {}).get(f"{namespace}/{pod}")
        if known:
            stop_process(known["pid"])
            self._record("admin_forwards", f"{namespace}/{pod}", None)
        self.admin.drop(namespace, pod)

    def prune_admin_forwards(self, live: set[str]) -> None:
        """Stop the admin port-forwards of pods that no longer exist (after a rollout, say)."""
        for key in set(self.state.read().get("admin_forwards", {})) - live:
            self.drop_admin_forward(*key.split("/", 1))

    def stop_forwards(self) -> None:
        """Stop every port-forward the lab recorded (Services and proxies' admins) and the admin gateway."""
        self.admin.close()
        with self.state.lock:
            state = self.state.read()
            for section in ("forwards", "admin_forwards"):
                for known in state.get(section, {}).values():
                    stop_process(known["pid"])
            if state:
                self.state.update(forwards={}, admin_forwards={})

    # ---- faults ----------------------------------------------------------------------------------
    def kill(self, pod: str | None = None, node: str | None = None, proxy: str | None = None) -> list[str]:
        """Kill a pod (name or app), a node, or proxies (name or role); see kill_pod/kill_node/kill_proxy."""
        if node:
            return self.kill_node(node)
        if pod:
            return self.kill_pod(pod)
        if proxy:
            return self.kill_proxy(proxy)
        raise MeshlabError("kill needs pod=, node= or proxy=", "e.g. lab.kill(pod='ratings')")

    def find_pod(self, name: str, pods: list[dict]) -> dict:
        """The pod called `name`, else a ready pod of app `name` (`control-plane`: istiod or meshlab's own)."""
        exact = [p for p in pods if p["metadata"]["name"] == name]
        of_app = sorted((p for p in pods if labels(p).get("app") == name or (name == "control-plane" and is_control_plane(p))),
                        key=lambda p: not pod_info(p).ready)
        if not (exact or of_app):
            raise MeshlabError(f"no pod {name}", "see lab.pods() for pod names")
        return (exact or of_app)[0]

    def kill_pod(self, name: str) -> list[str]:
        """Force-delete the pod. On Kubernetes its ReplicaSet (or DaemonSet) creates a replacement at once,
        so the pod does not stay down until restore(): that self-healing is the lesson on this backend."""
        pod = self.find_pod(name, self.pod_objects())
        if is_control_plane(pod):
            return self.kill_control_plane(pod)
        meta = pod["metadata"]
        self.kubectl.run("delete", "pod", meta["name"], "--grace-period=0", "--force", "--wait=false",
                         namespace=meta["namespace"], what=f"delete pod {meta['name']}")
        return [meta["name"]]

    def kill_proxy(self, name: str) -> list[str]:
        """Kill every proxy called `name`, or every proxy of role `name` (edge, router, node, sidecar);
        returns `pod/container` of each, as the local backend does."""
        found = [p for p in self.pod_objects() if proxy_container(p)]
        chosen = [p for p in found if proxy_name(p) == name] or [p for p in found if proxy_container(p)[1] == name]
        if not chosen:
            raise MeshlabError(f"no proxy {name}", "see lab.proxies() for names, or give a role such as 'router'")
        killed = []
        for pod in chosen:
            container = proxy_container(pod)[0]
            self.kill_proxy_container(pod, container)
            killed.append(f"{pod['metadata']['name']}/{container}")
        return killed

    def kill_proxy_container(self, pod: dict, container: str) -> None:
        raise NotImplementedError

    def kill_control_plane(self, pod: dict) -> list[str]:
        raise NotImplementedError

    def kill_node(self, node: str) -> list[str]:
        raise NotImplementedError

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None) -> list[str]:
        """POST the fault knobs to /_meshlab/fault of each pod, with `kubectl exec` of python in the app container
        (the app image is stock python; the call goes to 127.0.0.1 inside the pod, past any proxy)."""
        pods = self.pod_objects()
        targets = [self.find_pod(pod, pods)] if pod else [p for p in pods if labels(p).get("app") == service]
        if not targets:
            raise MeshlabError(f"no pod of service {service}", "see lab.pods() for services")
        body = json.dumps({"error_rate": errors, "latency_ms": latency_ms})
        return [self.fault(p, "POST", body) for p in targets]

    def fault(self, pod: dict, method: str, body: str = "") -> str:
        """Call the app's fault endpoint inside the pod; return the pod's name."""
        meta, app = pod["metadata"], app_container(pod)
        if not app:
            raise MeshlabError(f"pod {meta['name']} has no app container with a port", "faults go to meshlab's sample app")
        url = f"http://127.0.0.1:{app[1]}{FAULT_PATH}"
        self.kubectl.run("exec", "-i", meta["name"], "-c", app[0], "--", "python", "-c", FAULT_CLIENT, url, method,
                         namespace=meta["namespace"], input=body, what=f"set faults on {meta['name']}")
        return meta["name"]

    def restore(self) -> None:
        """Clear injected faults on every running app pod (DELETE /_meshlab/fault)."""
        for pod in self.pod_objects():
            if labels(pod).get("app") and app_container(pod) and pod_info(pod).phase == "Running":
                try:
                    self.fault(pod, "DELETE")
                except MeshlabError as exc:
                    self.say(f"could not clear faults: {exc.message}")

    # ---- logs ------------------------------------------------------------------------------------
    def logs(self, dest: Path) -> Path:
        """`kubectl logs` of every container (and its previous run, after a restart) into dest/pods/<ns>/<pod>/."""
        dest = Path(dest)
        for pod in self.pod_objects():
            info = pod_info(pod)
            folder = dest / "pods" / info.namespace / info.name
            folder.mkdir(parents=True, exist_ok=True)
            for c in info.containers:
                runs = [("", [])] + ([(".previous", ["--previous"])] if c.restarts else [])
                for suffix, extra in runs:
                    result = self.kubectl.call("logs", info.name, "-c", c.name, *extra, namespace=info.namespace)
                    (folder / f"{c.name}{suffix}.log").write_text(result.stdout if result.returncode == 0 else result.stderr)
        return dest


# ---- the kube backend -----------------------------------------------------------------------------

