"""The kube backend: a lab on an existing cluster from a kubeconfig context, in the learner's namespace for it.

A learner (`MESHLAB_LEARNER`, `learner=`, `--learner`; default $JUPYTERHUB_USER, else the OS user, made a DNS
label) runs lab LAB in namespace `meshlab-<learner>-<lab>`, labelled meshlab.io/owned, meshlab.io/learner and
meshlab.io/lab. A namespace labelled for another learner or lab, or not made by meshlab, is refused before
anything is applied or deleted. The backend never creates or deletes clusters.

Two ways to have the namespace (docs/classroom.md):
- a learner with cluster rights: `up` creates the namespace, and IngressClass edge (the edge's only cluster-wide
  object) when it is missing; `down` deletes the namespace;
- a class (`meshlab class setup`, meshlab/backends/classroom.py): the instructor made the namespace and
  everything cluster-wide (label meshlab.io/class=true); `up` creates only namespaced objects, `down` empties
  the namespace and keeps it. Where a learner may not create something, the error says to ask the
  instructor to run `meshlab class setup`.

The learner's own edge runs in the namespace: Envoy and meshlab's ingress controller, which serves the
namespace's Ingresses of class `edge` (backends/edge.py). The learner reaches it (or the frontend, before there
is such an Ingress) through a `kubectl port-forward` that this backend starts, records and stops. Stage manifests
name no namespace, so `kubectl -n <namespace> apply` places them (kubectl refuses an object that names another one).
Stage 3 runs as on shared nodes (meshlab/stages/pernode.py): the node proxies have no hostPort, which Pod
Security "baseline" refuses and which lets one learner per node bind it; the apps reach their node's proxy
through Service node-proxy-local (internalTrafficPolicy: Local). kill(proxy=...) SIGTERMs the proxy and the
kubelet restarts it at once.

Stage 5 uses the cluster's own Istio (install_mesh() finds istiod and refuses without one); meshlab never
installs or stops it. The trace EnvoyFilter goes into the learner's namespace, so it touches only their
sidecars. A revision-only Istio needs the namespace label istio.io/rev=REV (which also injects the learner's
edge pod); an Istio sidecar is killed through its agent (pilot-agent request POST quitquitquit).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
from subprocess import CompletedProcess

from .. import manifests
from ..stages import pernode
from . import classroom, edge, istio
from .base import Availability, MeshlabError
from .classroom import CLASS_LABEL, LAB_LABEL, LEARNER_LABEL
from .cluster import ClusterBackend, KUBECTL_HINTS, OWNED_LABEL, current_context, os_hint
from .kubectl import Kubectl, Runner, check, not_found, ref
from .state import check_name, state_root

CLUSTER_KINDS = frozenset({"Namespace", "IngressClass", "ClusterRole", "ClusterRoleBinding"})
EDGE_RBAC_KINDS = frozenset({"ServiceAccount", "Role", "RoleBinding"})  # a class's namespace has them already
# `down` in a class's namespace: what the lab made, not the instructor's objects (label) nor Kubernetes' own (names).
EMPTY_KINDS = "deployments,daemonsets,statefulsets,pods,services,ingresses,configmaps,serviceaccounts"
KEEP_NAMES = "metadata.name!=default,metadata.name!=kube-root-ca.crt"
ISTIO_OBJECTS = "virtualservices.networking.istio.io,destinationrules.networking.istio.io," \
                "serviceentries.networking.istio.io,envoyfilters.networking.istio.io," \
                "peerauthentications.security.istio.io,authorizationpolicies.security.istio.io"


def learner_name(learner: str | None = None) -> str:
    """The learner: `learner`, else $MESHLAB_LEARNER (both must be valid names), else $JUPYTERHUB_USER or the OS
    user made a DNS label (every JupyterHub user is `jovyan` to the OS)."""
    given = learner or os.environ.get("MESHLAB_LEARNER")
    if given:
        return check_name(given, "learner name")
    try:
        user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        user = ""
    return classroom.sanitize(user)


def forbidden(result: CompletedProcess) -> bool:
    """Whether a failed kubectl call was refused by the API server's authorization."""
    return result.returncode != 0 and "forbidden" in (result.stderr or "").lower()


class KubeBackend(ClusterBackend):
    """A lab in namespace meshlab-<learner>-<lab> of an existing cluster (an instructor's shared cluster)."""

    name = "kube"
    pin_namespace = True
    all_namespaces = False

    def __init__(self, lab: str = "default", learner: str | None = None, context: str | None = None,
                 runner: Runner | None = None, progress=None, detached: bool = False):
        self.lab, self.learner = check_name(lab), learner_name(learner)
        namespace = classroom.namespace_name(self.learner, self.lab)
        runner = runner or Runner()
        context = context or current_context(runner)
        if not context:
            raise MeshlabError("kube backend: no kubeconfig context", "ask your instructor for a kubeconfig, or pass context='NAME'")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", context)
        super().__init__(Kubectl(context, namespace, runner), namespace, namespace,
                         state_root() / "kube" / f"{safe}--{namespace}.json", progress,
                         detached)  # detached: a CLI lab, whose port-forwards outlive the command (cluster.py)
        self.cluster = context
        self._owned = ""  # "mine" or "class" once the namespace was found to be this learner's, for this lab

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
        """Create the learner's namespace unless it exists (a class's does), then the edge; `nodes` is the cluster's
        own business."""
        if clusters != 1:
            raise MeshlabError("the kube backend runs a lab in one cluster", "use clusters=1")
        owner = self._own()
        created = owner == "absent"
        if created:
            self._create([self._namespace()], namespace=None)
            self._owned = "mine"
        try:
            self._install_edge(provisioned=self._owned == "class")
        except BaseException:
            if created:
                self._delete_namespace()
            raise

    # ---- whose namespace ----------------------------------------------------------------------------
    def _namespace(self) -> dict:
        labels = {OWNED_LABEL: "true", LEARNER_LABEL: self.learner, LAB_LABEL: self.lab}
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels}}

    def _ask_instructor(self) -> str:
        return (f"ask your instructor to run `meshlab class setup` for learner {self.learner} and lab {self.lab} "
                "(docs/classroom.md), or check MESHLAB_LEARNER")

    def _labels(self) -> dict | None:
        """The labels of the lab's namespace, None when there is no such namespace."""
        result = self.kubectl.call("get", "namespace", self.namespace, "-o", "jsonpath={.metadata.labels}", namespace=None)
        if not_found(result):
            return None
        if forbidden(result):
            raise MeshlabError(f"you may not read namespace {self.namespace} on cluster {self.cluster}", self._ask_instructor())
        try:
            found = json.loads(check(result, f"kubectl get namespace {self.namespace}") or "{}")
        except ValueError:
            found = {}
        return found if isinstance(found, dict) else {}

    def _owner(self, labels: dict | None) -> str:
        """'absent', 'foreign' (not meshlab's), 'mine' or 'class' (made by `meshlab class setup`); a namespace
        labelled for another learner or lab is refused."""
        if labels is None:
            return "absent"
        if labels.get(OWNED_LABEL) != "true":
            return "foreign"
        learner, lab = labels.get(LEARNER_LABEL, ""), labels.get(LAB_LABEL, "")
        if learner != self.learner:
            raise MeshlabError(f"namespace {self.namespace} belongs to learner {learner or '(none)'}, not {self.learner}",
                               "set MESHLAB_LEARNER (or learner=) to your own name; meshlab never uses another learner's namespace")
        if lab != self.lab:
            raise MeshlabError(f"namespace {self.namespace} belongs to lab {lab or '(none)'} of learner {learner}, "
                               f"not lab {self.lab}", "choose another lab name")
        return "class" if labels.get(CLASS_LABEL) == "true" else "mine"

    def _own(self) -> str:
        """Check (once) that the namespace is this learner's for this lab: 'mine', 'class' or 'absent'."""
        if self._owned:
            return self._owned
        owner = self._owner(self._labels())
        if owner == "foreign":
            raise MeshlabError(f"namespace {self.namespace} exists and was not created by meshlab",
                               "choose another lab or learner name, or ask the cluster admin")
        if owner != "absent":
            self._owned = owner
        return owner

    def _create(self, docs: list[dict], namespace: str | None = "") -> None:
        """`kubectl apply`; refused for lack of rights, a one-line error that sends the learner to the instructor."""
        result = self.kubectl.call("apply", "-f", "-", namespace=namespace, input=manifests.dump(docs))
        if forbidden(result):
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise MeshlabError(f"you may not create {', '.join(ref(d) for d in docs)} on cluster {self.cluster}: "
                               f"{lines[-1].strip() if lines else 'forbidden'}", self._ask_instructor())
        check(result, "kubectl apply", "fix the object named above; objects applied before it are kept")

    def _present(self, docs: list[dict]) -> set[str]:
        """`Kind/name` of those cluster-wide docs that exist already."""
        if not docs:
            return set()
        names = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs]
        result = self.kubectl.call("get", *names, "-o", "name", "--ignore-not-found", namespace=None)
        if forbidden(result):
            raise MeshlabError(f"you may not read {', '.join(ref(d) for d in docs)} on cluster {self.cluster}",
                               self._ask_instructor())
        found = set()
        for line in check(result, "kubectl get").split():  # e.g. ingressclass.networking.k8s.io/edge
            resource, _, name = line.partition("/")
            found.add(f"{resource.split('.', 1)[0]}/{name}")
        return {ref(d) for d, name in zip(docs, names) if name in found}

    def _install_edge(self, provisioned: bool) -> None:
        """The edge (Envoy + ingress controller) in the namespace; IngressClass edge only where missing (a class has
        it, and the edge's ServiceAccount, Role and RoleBinding too: a learner may not grant what the Role grants)."""
        docs = edge.documents(self.namespace, self.namespace)
        if provisioned:
            if not self._present([edge.ingress_class()]):
                raise MeshlabError(f"IngressClass {edge.INGRESS_CLASS} is missing on cluster {self.cluster}",
                                   self._ask_instructor())
            docs = [d for d in docs if d["kind"] not in CLUSTER_KINDS | EDGE_RBAC_KINDS]
        else:
            present = self._present([d for d in docs if d["kind"] in CLUSTER_KINDS])
            docs = [d for d in docs if ref(d) not in present]
        self.say("installing the edge proxy (Envoy, meshlab's ingress controller, IngressClass edge)")
        self._create(docs, namespace=None)
        self.rollout([("deployment", edge.NAME, self.namespace)], timeout=240)

    def _delete_namespace(self) -> None:
        self.kubectl.run("delete", "namespace", self.namespace, "--ignore-not-found", "--timeout=180s",
                         namespace=None, timeout=200, what=f"delete namespace {self.namespace}")

    def _empty_namespace(self) -> None:
        """Delete what the lab made in a class's namespace; keep the namespace and the instructor's objects."""
        self.kubectl.run("delete", EMPTY_KINDS, "-l", f"!{CLASS_LABEL}", "--field-selector", KEEP_NAMES,
                         "--ignore-not-found", "--wait=false", what=f"empty namespace {self.namespace}")
        self.kubectl.call("delete", ISTIO_OBJECTS, "--all", "--ignore-not-found", "--wait=false")  # no Istio: nothing

    # ---- objects, faults: only in the learner's own namespace --------------------------------------
    def apply(self, docs: list[dict], source: str = "<yaml>") -> list[str]:
        """`kubectl -n <namespace> apply`, stage 3's objects as for shared nodes (no hostPort); an object the
        learner may not create is a one-line error that sends them to the instructor."""
        self._own()
        shared = pernode.for_shared_nodes(docs)
        if shared != docs:
            self.say(f"stage 3 on a shared cluster: pods reach their node's proxy through Service "
                     f"{pernode.LOCAL_SERVICE} (internalTrafficPolicy: Local), not hostPort {pernode.PORT}")
        try:
            return super().apply(shared, source)
        except MeshlabError as exc:
            if "forbidden" not in exc.message.lower():
                raise
            raise MeshlabError(f"{source}: {exc.message}", self._ask_instructor()) from None

    def delete(self, docs: list[dict]) -> list[str]:
        """`kubectl -n <namespace> delete` (with the node proxies goes Service node-proxy-local)."""
        self._own()
        return super().delete(pernode.for_shared_nodes(docs))

    def kill(self, pod: str | None = None, node: str | None = None, proxy: str | None = None) -> list[str]:
        self._own()
        return super().kill(pod=pod, node=node, proxy=proxy)

    def inject(self, service: str, errors: float = 0.0, latency_ms: int = 0, pod: str | None = None) -> list[str]:
        self._own()
        return super().inject(service, errors=errors, latency_ms=latency_ms, pod=pod)

    def restore(self) -> None:
        self._own()
        super().restore()

    def restart(self, ref: str, timeout: float = 60.0) -> list[str]:
        self._own()
        return super().restart(ref, timeout=timeout)

    def edge_url(self) -> str:
        """The learner's edge, through a port-forward to its Service."""
        return self.forward(self.namespace, edge.NAME, edge.SERVICE_PORT)

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
        self._own()
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
        if found.revision and (self._labels() or {}).get("istio.io/rev") != found.revision:  # a class's may have it
            istio.label_injection(self.kubectl, self.namespace, found.revision)
        result = self.kubectl.call("apply", "-f", "-", input=manifests.dump([istio.trace_filter(self.namespace)]))
        if result.returncode != 0:
            self.say(f"note: traces will not show sidecar hops (EnvoyFilter refused: {result.stderr.strip()[:120]})")

    def label_injection(self, namespace: str | None = None) -> None:
        """Label the lab's namespace for injection (istio-injection=enabled, or the cluster's revision)."""
        self.check_namespace(namespace or self.namespace)
        self._own()
        istio.label_injection(self.kubectl, self.namespace, self.istio_found().revision)

    def capabilities(self) -> set[str]:
        """A shared cluster: no nodes to stop, proxies restart at once, istiod is not the learner's."""
        return super().capabilities() | {"shared-cluster"}

    def kill_node(self, node: str) -> list[str]:
        """Refused: nodes of a shared cluster are not the learner's to stop."""
        raise MeshlabError("the kube backend cannot stop nodes of a shared cluster", "use the kind backend to kill a node")

    def down(self) -> None:
        """Stop port-forwards; delete the learner's namespace, or in a class's namespace delete what the lab made.
        Another learner's namespace is refused, one meshlab did not make left alone."""
        self.stop_forwards()
        owner = self._owner(self._labels())
        if owner == "foreign":
            self.say(f"not deleting namespace {self.namespace}: meshlab did not create it")
            return
        if owner == "class":
            self._empty_namespace()
        elif owner == "mine":
            self._delete_namespace()
        self.state.remove()
        self._owned = ""


# ---- the instructor's side: `meshlab class setup | teardown` ---------------------------------------


def class_setup(context: str | None, learners: list, labs=classroom.COURSE_LABS,
                istio_namespace: str | None = classroom.ISTIO_NAMESPACE, pod_security: str = "baseline",
                dry_run: bool = False, runner: Runner | None = None, say=print) -> list[dict]:
    """Print (dry run) or apply the class's bundle on `context`; returns its objects."""
    docs = classroom.bundle(learners, labs, istio_namespace, pod_security)
    if dry_run:
        say(manifests.dump(docs).rstrip("\n"))
        return docs
    if not context:
        raise MeshlabError("meshlab class setup needs --context", "name the class's cluster, or use --dry-run to see the YAML")
    kubectl = Kubectl(context, None, runner or Runner())
    if istio_namespace:
        found = kubectl.call("get", "namespace", istio_namespace, "-o", "name", namespace=None)
        if not_found(found):
            raise MeshlabError(f"namespace {istio_namespace} (Istio, for stage 5) is not on cluster {context}",
                               "install Istio first, name its namespace with --istio-namespace, or pass --no-istio")
        check(found, f"kubectl get namespace {istio_namespace}")
    kubectl.run("apply", "-f", "-", namespace=None, input=manifests.dump(docs), timeout=600, what="class setup: kubectl apply",
                hint="class setup needs cluster-admin rights on the context; it is safe to run again")
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace" and d["metadata"]["name"] != classroom.CLASS_NAMESPACE]
    say(f"class setup on {context}: {len(learners)} learner(s), {len(namespaces)} lab namespace(s), "
        f"{len(docs)} objects (label {CLASS_LABEL}=true)")
    say("learners connect with their kubeconfig context and MESHLAB_BACKEND=kube MESHLAB_LEARNER=<name> (docs/classroom.md)")
    return docs


def teardown_commands(context: str) -> list[list[str]]:
    """The kubectl commands that delete every object of a class (found by its label)."""
    selector = f"{CLASS_LABEL}=true"
    base = ["kubectl", "--context", context, "delete"]
    return [base + ["rolebindings", "-A", "-l", selector, "--ignore-not-found"],
            base + ["namespaces,clusterrolebindings,clusterroles,ingressclasses", "-l", selector, "--ignore-not-found",
                    "--wait=false"]]


def class_teardown(context: str | None, dry_run: bool = False, runner: Runner | None = None, say=print) -> None:
    """Delete every object `class setup` made on `context`, the learners' namespaces and work with them."""
    if not context:
        raise MeshlabError("meshlab class teardown needs --context", "name the class's cluster")
    runner = runner or Runner()
    for argv in teardown_commands(context):
        if dry_run:
            say(" ".join(argv))
            continue
        out = check(runner.run(argv, timeout=300), "class teardown: kubectl delete", "it is safe to run again")
        for line in out.splitlines():
            say(line)
