"""Kubernetes backends: what kind and kube share (ClusterBackend), and the kube backend itself.

kube runs a lab on an existing cluster from a kubeconfig context, in one namespace per learner
(`meshlab-<learner>`). It never creates or deletes clusters, and deletes only the namespace it
created (labelled meshlab.io/owned=true) plus the ClusterRoleBinding named after it. The learner's
own Traefik runs in that namespace; the learner reaches it (or the frontend, before there is an
Ingress) through a `kubectl port-forward` that this backend starts, records and stops.

Stage manifests name no namespace, so `kubectl -n meshlab-<learner> apply` places them (kubectl refuses an
object that names another namespace). Limits of a shared cluster: kill(proxy=...) SIGTERMs the proxy and the
kubelet restarts it at once; stage 3's node proxies bind hostPort 15001 on every node, so only one learner
per node can run stage 3 at a time (the others' node proxies stay Pending).

Stage 5 uses the cluster's own Istio (install_mesh() finds istiod and refuses without one); meshlab never
installs or stops it. The trace EnvoyFilter goes into the learner's namespace, so it touches only their
sidecars. A revision-only Istio needs the namespace label istio.io/rev=REV (which also injects the learner's
Traefik); an Istio sidecar is killed through its agent (pilot-agent request POST quitquitquit).
"""

from __future__ import annotations

import re
import shutil

from .. import manifests
from . import istio, traefik
from .base import Availability, MeshlabError
from .cluster import ClusterBackend, KUBECTL_HINTS, OWNED_LABEL, current_context, os_hint
from .kubectl import Kubectl, Runner, check, not_found
from .state import check_name, state_root


class KubeBackend(ClusterBackend):
    """A lab in namespace meshlab-<learner> of an existing cluster (an instructor's shared cluster)."""

    name = "kube"
    pin_namespace = True
    all_namespaces = False

    def __init__(self, learner: str = "default", context: str | None = None, runner: Runner | None = None, progress=None):
        self.learner = check_name(learner, "learner name")
        runner = runner or Runner()
        context = context or current_context(runner)
        if not context:
            raise MeshlabError("kube backend: no kubeconfig context", "ask your instructor for a kubeconfig, or pass context='NAME'")
        namespace = f"meshlab-{learner}"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", context)
        super().__init__(Kubectl(context, namespace, runner), namespace, namespace,
                         state_root() / "kube" / f"{safe}--{namespace}.json", progress)
        self.cluster = context

    @classmethod
    def availability(cls, context: str | None = None, runner: Runner | None = None, which=shutil.which) -> Availability:
        """kubectl on PATH, a kubeconfig context, and that context's API server answering."""
        runner, found = runner or Runner(), Availability("kube", ok=False)
        if not which("kubectl"):
            found.missing.append("kubectl")
            found.hints.append(os_hint(KUBECTL_HINTS))
            return found
        found.present.append("kubectl")
        context = context or current_context(runner)
        if not context:
            found.missing.append("a kubeconfig context")
            found.hints.append("ask your instructor for a kubeconfig, then `kubectl config use-context NAME`")
            return found
        result = runner.run(["kubectl", "--context", context, "get", "--raw", "/version", "--request-timeout=5s"], timeout=20)
        if result.returncode != 0:
            found.missing.append(f"a reachable cluster for context {context}")
            found.hints.append(f"`kubectl --context {context} get --raw /version` fails: check the VPN, credentials and server address")
            return found
        found.present.append(f"cluster {context}")
        found.ok = True
        return found

    def up(self, nodes: int = 3, clusters: int = 1) -> None:
        """Create the learner's namespace (if needed) and its edge; `nodes` is the cluster's own business."""
        if clusters != 1:
            raise MeshlabError("the kube backend runs a lab in one cluster", "use clusters=1")
        created = self._ensure_namespace()
        try:
            self.install_edge(host_port=None)
        except BaseException:
            if created:
                self._delete_namespace()
            raise

    def _namespace(self) -> dict:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace, "labels": {OWNED_LABEL: "true", "meshlab.io/learner": self.learner}}}

    def _namespace_owner(self) -> str:
        """'ours', 'foreign' or 'absent' for the learner's namespace."""
        result = self.kubectl.call("get", "namespace", self.namespace, "-o", "jsonpath={.metadata.labels}", namespace=None)
        if not_found(result):
            return "absent"
        check(result, f"kubectl get namespace {self.namespace}")
        return "ours" if f'"{OWNED_LABEL}":"true"' in result.stdout else "foreign"

    def _ensure_namespace(self) -> bool:
        """Create the namespace; True when this call created it. A namespace meshlab did not make is refused."""
        owner = self._namespace_owner()
        if owner == "foreign":
            raise MeshlabError(f"namespace {self.namespace} exists and was not created by meshlab",
                               "choose another learner name, or ask the cluster admin")
        if owner == "ours":
            return False
        self.kubectl.apply([self._namespace()], namespace=None)
        return True

    def _delete_namespace(self) -> None:
        self.kubectl.run("delete", "namespace", self.namespace, "--ignore-not-found", "--timeout=180s",
                         namespace=None, timeout=200, what=f"delete namespace {self.namespace}")

    def edge_url(self) -> str:
        """The learner's Traefik, through a port-forward."""
        return self.forward(self.namespace, traefik.NAME, 80)

    def kill_proxy_container(self, pod: dict, container: str) -> None:
        """SIGTERM the proxy (PID 1 of its container) with `kubectl exec ... sh -c 'kill 1'`; an Istio sidecar is
        told to quit through its agent (`pilot-agent request POST quitquitquit`: Envoy exits, then the agent).

        The kube backend cannot reach the nodes, so the kubelet restarts the container at once
        (restartPolicy Always): the proxy is down for a moment, not until restore()."""
        meta = pod["metadata"]
        command = ["pilot-agent", "request", "POST", "quitquitquit"] if container == istio.PROXY_CONTAINER else \
            ["sh", "-c", "kill 1"]
        self.kubectl.run("exec", meta["name"], "-c", container, "--", *command,
                         namespace=meta["namespace"], what=f"kill proxy {meta['name']}/{container}")

    def kill_pod(self, name: str) -> list[str]:
        """Force-delete a pod of the lab; the class's shared istiod is refused."""
        if name in ("istiod", "control-plane"):
            raise MeshlabError("the kube backend shares istiod with the whole class: meshlab does not stop it",
                               "use the kind or local backend to take the control plane down")
        return super().kill_pod(name)

    def check_namespace(self, namespace: str) -> None:
        """A learner acts only in their own namespace."""
        if namespace != self.namespace:
            raise MeshlabError(f"namespace {namespace} is not this lab's ({self.namespace})", "name a workload of your lab")

    # ---- stage 5: the cluster's Istio ------------------------------------------------------------
    def install_mesh(self) -> None:
        """Find the cluster's Istio (refused when there is none); with a revision-only install, label the namespace
        istio.io/rev=REV so injection works; stamp trace hops with an EnvoyFilter in the lab's namespace."""
        found = istio.find(self.runner, self.kubectl.context)
        self.remember_istio(found)
        self.say(f"using the cluster's Istio {found.version or '(version unknown)'} in {found.namespace}"
                 + (f", revision {found.revision}" if found.revision else ""))
        if not istio.version_ok(found.version):
            self.say(f"note: meshlab is tested with Istio {istio.VERSION}; this cluster runs {found.version or 'another'}")
        root = istio.mesh_root(self.runner, self.kubectl.context, found)
        if root != istio.ROOT_NAMESPACE:
            self.say(f"note: this mesh's root namespace is {root}, not {istio.ROOT_NAMESPACE}: on a shared cluster, "
                     "write policy for your namespace only")
        if found.revision:
            istio.label_injection(self.kubectl, self.namespace, found.revision)
        result = self.kubectl.call("apply", "-f", "-", input=manifests.dump([istio.trace_filter(self.namespace)]))
        if result.returncode != 0:
            self.say(f"note: traces will not show sidecar hops (EnvoyFilter refused: {result.stderr.strip()[:120]})")

    def label_injection(self, namespace: str | None = None) -> None:
        """Label the lab's namespace for injection (istio-injection=enabled, or the cluster's revision)."""
        self.check_namespace(namespace or self.namespace)
        istio.label_injection(self.kubectl, self.namespace, self.istio_found().revision)

    def capabilities(self) -> set[str]:
        """A shared cluster: no nodes to stop, proxies restart at once, istiod is not the learner's."""
        return super().capabilities() | {"shared-cluster"}

    def kill_node(self, node: str) -> list[str]:
        """Refused: nodes of a shared cluster are not the learner's to stop."""
        raise MeshlabError("the kube backend cannot stop nodes of a shared cluster", "use the kind backend to kill a node")

    def down(self) -> None:
        """Stop port-forwards, delete the learner's namespace and ClusterRoleBinding; a foreign namespace is left alone."""
        self.stop_forwards()
        owner = self._namespace_owner()
        if owner == "foreign":
            self.say(f"not deleting namespace {self.namespace}: meshlab did not create it")
            return
        if owner == "ours":
            self._delete_namespace()
        self.kubectl.run("delete", "clusterrolebinding", traefik.cluster_binding_name(self.namespace), "--ignore-not-found",
                         namespace=None, what="delete the edge's ClusterRoleBinding")
        self.state.remove()
