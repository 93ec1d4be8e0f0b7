"""Run kubectl/kind/docker through one injectable runner, and read `kubectl get -o json` into meshlab's dataclasses."""

from __future__ import annotations

import json
import subprocess
import sys
from subprocess import CompletedProcess

from ..manifests import dump
from .base import ContainerInfo, MeshlabError, NodeInfo, PodInfo, ProxyInfo

PROXY_ROLE_LABEL = "meshlab.io/proxy-role"
PROXY_IMAGES = ("envoy", "proxyv2")  # proxyv2: Istio's sidecar (pilot-agent + Envoy)
PROXY_CONTAINERS = ("istio-proxy",)
CONTROL_PLANE_APPS = ("istiod", "meshlab-controlplane")
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
WORKLOAD_KINDS = ("deployments", "daemonsets", "statefulsets")
ENVOY_ADMIN_PORT = 15000  # Envoy's customary admin port; Istio's sidecars serve it on the pod's loopback


class Runner:
    """Runs commands for the Kubernetes backends; unit tests pass a fake with the same two methods."""

    def run(self, argv: list[str], input: str | None = None, timeout: float = 120.0) -> CompletedProcess:
        """Run argv to completion and capture its text output."""
        try:
            return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise MeshlabError(f"{argv[0]}: not found on PATH", "run `meshlab doctor` to see how to install it") from None
        except subprocess.TimeoutExpired:
            raise MeshlabError(f"`{' '.join(argv[:5])} ...` did not finish within {timeout:.0f}s",
                               "the cluster may be overloaded; try again, or run `meshlab down` and start over") from None

    def spawn(self, argv: list[str], log_path, detached: bool = False) -> int:
        """Start a long-lived helper (kubectl port-forward); return its pid. It dies with this process (a notebook's
        lab), or with `detached` outlives it (a CLI lab: `meshlab down` ends it by the pid in the state file)."""
        log = open(log_path, "ab")
        options: dict = {"start_new_session": True}  # Ctrl-C in the terminal or notebook does not reach it
        if sys.platform == "win32":
            options = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | (subprocess.DETACHED_PROCESS if detached else 0)}
        elif sys.platform == "linux" and not detached:
            options["preexec_fn"] = _die_with_parent
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **options)
        finally:
            log.close()
        return proc.pid


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL us when our parent (the kernel) dies."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def check(result: CompletedProcess, what: str, hint: str = "") -> str:
    """stdout of a finished command, or a one-line MeshlabError with the last line of its stderr."""
    if result.returncode == 0:
        return result.stdout
    lines = [line for line in (result.stderr or result.stdout or "").strip().splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
    raise MeshlabError(f"{what}: {reason}", hint or "run `meshlab doctor`, then look at `meshlab logs`")


def not_found(result: CompletedProcess) -> bool:
    """Whether a failed kubectl call failed only because the object does not exist."""
    return result.returncode != 0 and "NotFound" in (result.stderr or "")


class Kubectl:
    """kubectl bound to one kubeconfig context; `namespace` (if any) is passed as -n unless a call overrides it."""

    def __init__(self, context: str, namespace: str | None = None, runner: Runner | None = None):
        self.context, self.namespace, self.runner = context, namespace, runner or Runner()

    def argv(self, *args: str, namespace: str | None = "") -> list[str]:
        """The full command line; namespace "" means the default, None means no -n."""
        ns = self.namespace if namespace == "" else namespace
        return ["kubectl", "--context", self.context, *(["-n", ns] if ns else []), *args]

    def call(self, *args: str, namespace: str | None = "", input: str | None = None, timeout: float = 120.0) -> CompletedProcess:
        """Run kubectl and return the finished process (never raises on a non-zero exit)."""
        return self.runner.run(self.argv(*args, namespace=namespace), input=input, timeout=timeout)

    def run(self, *args: str, namespace: str | None = "", input: str | None = None, timeout: float = 120.0,
            what: str = "", hint: str = "") -> str:
        """Run kubectl and return stdout; a failure raises a one-line MeshlabError."""
        result = self.call(*args, namespace=namespace, input=input, timeout=timeout)
        return check(result, what or f"kubectl {args[0]}", hint)

    def apply(self, docs: list[dict], namespace: str | None = "") -> str:
        """`kubectl apply -f -` of the objects."""
        return self.run("apply", "-f", "-", namespace=namespace, input=dump(docs), what="kubectl apply",
                        hint="fix the object named above; objects applied before it are kept")

    def delete(self, docs: list[dict], namespace: str | None = "") -> str:
        """`kubectl delete -f -` of the objects; missing ones are fine."""
        return self.run("delete", "--ignore-not-found", "--wait=false", "-f", "-", namespace=namespace,
                        input=dump(docs), what="kubectl delete")

    def items(self, resource: str, all_namespaces: bool = False, selector: str = "") -> list[dict]:
        """`kubectl get RESOURCE -o json` as a list of objects."""
        args = ["get", resource, "-o", "json", *(["-A"] if all_namespaces else []), *(["-l", selector] if selector else [])]
        text = self.run(*args, namespace=None if all_namespaces else "", what=f"kubectl get {resource}")
        return json.loads(text or "{}").get("items", [])


# ---- reading objects --------------------------------------------------------------------------------


def labels(obj: dict) -> dict:
    """metadata.labels of an object."""
    return (obj.get("metadata") or {}).get("labels") or {}


def is_proxy_image(image: str) -> bool:
    """Whether a container image is a proxy meshlab knows (Envoy, or Istio's proxyv2)."""
    name = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    return any(p in name for p in PROXY_IMAGES)


def long_running(spec: dict) -> list[dict]:
    """The pod's containers plus native sidecars (init containers with restartPolicy Always, as Istio may inject)."""
    sidecars = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return sidecars + list(spec.get("containers") or [])


def is_proxy(container: dict) -> bool:
    """Whether a container is a proxy: a known proxy image, or Istio's istio-proxy."""
    return container.get("name") in PROXY_CONTAINERS or is_proxy_image(container.get("image", ""))


def is_control_plane(pod: dict) -> bool:
    """Whether a pod is a mesh control plane (istiod, meshlab's own, or labelled with role control-plane)."""
    return labels(pod).get("app") in CONTROL_PLANE_APPS or labels(pod).get(PROXY_ROLE_LABEL) == "control-plane"


def proxy_container(pod: dict) -> tuple[str, str] | None:
    """(container name, role) of the pod's proxy: role from the meshlab.io/proxy-role label (the pod's own Envoy,
    e.g. the edge's `envoy` beside its controller, even when Istio injected a sidecar too), else `sidecar` when an
    Envoy runs beside an app container, else `proxy`."""
    containers = long_running(pod.get("spec") or {})
    proxies = [c for c in containers if is_proxy(c)]
    role = labels(pod).get(PROXY_ROLE_LABEL)
    if not proxies and role and len(containers) == 1:
        proxies = containers
    if not proxies:
        return None
    if role:
        own = [c for c in proxies if c.get("name") not in PROXY_CONTAINERS] or proxies
        return own[0]["name"], role
    return proxies[0]["name"], "sidecar" if len(proxies) < len(containers) else "proxy"


def proxy_name(pod: dict) -> str:
    """A proxy pod is named by its pod, a sidecar by pod/container (as on the local backend)."""
    found = proxy_container(pod)
    name = pod["metadata"]["name"]
    return f"{name}/{found[0]}" if found and found[1] == "sidecar" else name


def app_container(pod: dict) -> tuple[str, int] | None:
    """(name, first containerPort) of the pod's app container (the first that is not a proxy)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if not is_proxy(c) and c.get("ports"):
            return c["name"], int(c["ports"][0]["containerPort"])
    return None


def container_ports(pod: dict, container: str) -> list[int]:
    """The containerPorts of one container of a pod."""
    for c in long_running(pod.get("spec") or {}):
        if c.get("name") == container:
            return [int(p["containerPort"]) for p in c.get("ports") or [] if p.get("containerPort")]
    return []


def pod_ports(pod: dict) -> list[int]:
    """Every containerPort of every container of a pod (what an intercepting sidecar stands in front of)."""
    return sorted({port for c in long_running(pod.get("spec") or {}) for port in container_ports(pod, c["name"])})


def statuses(pod: dict) -> list[dict]:
    """Container statuses of a pod, native sidecars included."""
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def container_id(pod: dict, container: str) -> str:
    """The runtime id of a running container (without the `containerd://` prefix), or ""."""
    for status in statuses(pod):
        if status.get("name") == container:
            return (status.get("containerID") or "").split("://")[-1]
    return ""


def _container_state(status: dict) -> str:
    state = status.get("state") or {}
    if "running" in state:
        return "running"
    if "terminated" in state:
        return "exited"
    return "waiting"


def pod_info(pod: dict, cluster: str = "", killed: frozenset = frozenset()) -> PodInfo:
    """A PodInfo from a Pod object; `killed` holds (pod, container) pairs meshlab has frozen."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    by_name = {s.get("name"): s for s in statuses(pod)}
    containers = []
    for c in long_running(spec):
        s = by_name.get(c["name"], {})
        state = "killed" if (meta.get("name"), c["name"]) in killed else _container_state(s) if s else "waiting"
        containers.append(ContainerInfo(c["name"], c.get("image", ""), state, restarts=int(s.get("restartCount", 0))))
    ready = any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in status.get("conditions") or [])
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
    return PodInfo(name=meta.get("name", ""), namespace=meta.get("namespace", ""), node=spec.get("nodeName", ""),
                   ip=status.get("podIP", ""), ready=ready and not any(c.state == "killed" for c in containers),
                   phase=phase, labels=dict(meta.get("labels") or {}), containers=containers, cluster=cluster)


def node_info(node: dict, cluster: str = "") -> NodeInfo:
    """A NodeInfo from a Node object (ip = InternalIP, ready = the Ready condition)."""
    status = node.get("status") or {}
    ip = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return NodeInfo(name=node["metadata"]["name"], ip=ip, ready=ready, cluster=cluster)


def proxy_info(pod: dict, cluster: str = "", killed: frozenset = frozenset()) -> ProxyInfo | None:
    """A ProxyInfo for the pod's proxy container, or None when it has none."""
    found = proxy_container(pod)
    if not found:
        return None
    info = pod_info(pod, cluster, killed)
    state = next(c.state for c in info.containers if c.name == found[0])
    return ProxyInfo(name=proxy_name(pod), role=found[1], pod=info.name, node=info.node, state=state, cluster=cluster)


def admin_port(pod: dict) -> int | None:
    """The Envoy admin port of the pod's proxy: Istio's 15000, or for an Envoy container its port named `*admin`
    (meshlab's stages and edge name it so), else Envoy's customary 15000; None for a proxy with no Envoy admin."""
    found = proxy_container(pod)
    container = next((c for c in long_running(pod.get("spec") or {}) if found and c.get("name") == found[0]), None)
    if container is None:
        return None
    if container.get("name") in PROXY_CONTAINERS or "proxyv2" in container.get("image", ""):
        return ENVOY_ADMIN_PORT
    if "envoy" not in container.get("image", "").rsplit("/", 1)[-1]:
        return None
    named = [p["containerPort"] for p in container.get("ports") or [] if str(p.get("name", "")).endswith("admin")]
    return int(named[0]) if named else ENVOY_ADMIN_PORT


def pod_images(docs: list[dict]) -> list[str]:
    """Every container image the objects would run (bare Pods and workload pod templates)."""
    images = set()
    for doc in docs:
        spec = doc.get("spec") or {}
        pod = spec if doc.get("kind") == "Pod" else (spec.get("template") or {}).get("spec") or {}
        images.update(c["image"] for c in (pod.get("containers") or []) + (pod.get("initContainers") or [])
                      if c.get("image"))
    return sorted(images)


def lab_objects(items: list[dict]) -> list[dict]:
    """Objects outside Kubernetes' and kind's own namespaces."""
    return [o for o in items if (o.get("metadata") or {}).get("namespace") not in SYSTEM_NAMESPACES]


def ref(doc: dict) -> str:
    """`Kind/name` of an object."""
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"

