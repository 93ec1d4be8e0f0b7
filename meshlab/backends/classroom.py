"""A class on one shared cluster: learner names, their namespaces, and the instructor's bundle (pure manifests).

Each learner runs each lab in namespace `meshlab-<learner>-<lab>`, labelled with both names, so two learners
running the same lesson never share a namespace and one's `down()` cannot touch the other's work. The
instructor's bundle (`meshlab class setup`, docs/classroom.md) creates once what a learner may not:

- cluster-wide: IngressClass `edge`, the ClusterRoles `meshlab-learner` (bound per namespace),
  `meshlab-learner-cluster` (read IngressClass edge and the nodes) and, for stage 5, `meshlab-istio-reader`
  (bound in Istio's namespace); ServiceAccounts for learners who have no user name;
- per learner and lab: the namespace (labelled, Pod Security `baseline` by default), a RoleBinding of the
  learner to `meshlab-learner`, and the edge's ServiceAccount, Role and RoleBinding (backends/edge.py: its
  ingress controller reads EndpointSlices, which the learner may not, and Kubernetes lets nobody grant a
  right they do not hold).

Every object carries `meshlab.io/class=true`, so `meshlab class teardown` finds them all, and the kube
backend knows a namespace the instructor made (it then creates only namespaced objects in it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from . import edge
from .base import MeshlabError
from .state import check_name

OWNED_LABEL = "meshlab.io/owned"  # the same label cluster.OWNED_LABEL: a namespace meshlab made
LEARNER_LABEL = "meshlab.io/learner"
LAB_LABEL = "meshlab.io/lab"
CLASS_LABEL = "meshlab.io/class"  # made by `meshlab class setup`
POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVELS = ("baseline", "privileged")  # restricted refuses the stages' pods (no securityContext)
CLASS_NAMESPACE = "meshlab-class"  # holds the ServiceAccounts of learners who have no user name
LEARNER_ROLE, CLUSTER_ROLE, ISTIO_ROLE = "meshlab-learner", "meshlab-learner-cluster", "meshlab-istio-reader"
LEARNERS_BINDING = "meshlab-learners"
ISTIO_NAMESPACE = "istio-system"
MAX_NAMESPACE = 63  # a namespace name is a DNS-1123 label
RBAC = "rbac.authorization.k8s.io"
# The labs the course notebooks open on one cluster (lessons, labs, lesson 07's compare-0..5; not stage 6's two
# clusters, which the kube backend cannot run). tests/unit/test_classroom.py keeps this in step with the notebooks.
COURSE_LABS = ("welcome", "edge-proxy", "edge-proxy-lab", "router-mesh", "router-mesh-baseline", "router-mesh-lab",
               "proxy-per-node", "proxy-per-node-baseline", "proxy-per-node-lab", "sidecar-fabric",
               "sidecar-fabric-baseline", "sidecar-fabric-lab", "control-plane", "control-plane-lab",
               *(f"compare-{n}" for n in range(6)))

_EDIT = ["get", "list", "create", "patch", "delete"]  # kubectl apply = get + create|patch; down = list + delete
# What a learner may do in each of their lab namespaces, and the meshlab call that needs it (docs/classroom.md).
LEARNER_RULES = (
    ("", ("namespaces",), ("get",), "read its own namespace's labels before using it (the binding lives in it)"),
    ("", ("pods",), ("get", "list", "patch", "delete"),
     "lab.pods(), kill(pod=...), port-forwards find a Service's pod; patch: annotate the pods of an edited ConfigMap"),
    ("", ("pods/log",), ("get",), "lab.logs()"),
    ("", ("pods/exec", "pods/portforward"), ("create", "get"),
     "faults, lab.call(), kill(proxy=...), the entry URL; get: the WebSocket upgrade of older API servers"),
    ("", ("services", "configmaps", "serviceaccounts"), tuple(_EDIT), "stage objects; lab.apply(); down"),
    ("apps", ("deployments", "daemonsets"), (*_EDIT, "watch"), "stage objects; rollout status (watch); restart (patch)"),
    ("apps", ("statefulsets",), ("list",), "wait_ready lists every workload kind (meshlab makes no StatefulSet)"),
    ("networking.k8s.io", ("ingresses",), tuple(_EDIT), "the stages' Ingress; lab.apply()"),
    ("networking.istio.io", ("virtualservices", "destinationrules", "serviceentries", "envoyfilters"), tuple(_EDIT),
     "stage 5 policy; the trace EnvoyFilter in the learner's namespace"),
    ("security.istio.io", ("peerauthentications", "authorizationpolicies"), tuple(_EDIT), "stage 5 policy"),
)
CLUSTER_RULES = (
    ("networking.k8s.io", ("ingressclasses",), ("get",), "lab.up(): is IngressClass edge there?", ("edge",)),
    ("", ("nodes",), ("list",), "lab.nodes() (without it, nodes are guessed from the pods)", ()),
)
# In Istio's namespace, for stage 5: find istiod and its mesh config; `istioctl proxy-status` lists istiod's pods,
# port-forwards to one and authenticates with a token of the namespace's `default` ServiceAccount.
ISTIO_RULES = (
    ("apps", ("deployments",), ("get",), "find istiod", ("istiod",)),
    ("", ("configmaps",), ("get",), "the mesh's root namespace", ("istio",)),
    ("", ("pods",), ("list",), "istioctl proxy-status finds istiod", ()),
    ("", ("pods/portforward",), ("create", "get"), "istioctl proxy-status reaches istiod", ()),
    ("", ("serviceaccounts/token",), ("create",), "istioctl proxy-status authenticates", ("default",)),
)


@dataclass(frozen=True)
class Learner:
    """One learner: their meshlab name and, if the cluster knows them as a user, that user name."""

    name: str
    user: str = ""

    def subject(self) -> dict:
        """The RBAC subject: the User, else the ServiceAccount NAME in namespace meshlab-class."""
        if self.user:
            return {"kind": "User", "apiGroup": RBAC, "name": self.user}
        return {"kind": "ServiceAccount", "name": self.name, "namespace": CLASS_NAMESPACE}


def sanitize(name: str) -> str:
    """A user name as a learner name: lowercase letters, digits and '-', at most 32 ('learner' if nothing is left)."""
    clean = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")[:32].strip("-")
    return clean or "learner"


def namespace_name(learner: str, lab: str) -> str:
    """`meshlab-<learner>-<lab>`; a one-line error when it is longer than a namespace may be."""
    name = f"meshlab-{check_name(learner, 'learner name')}-{check_name(lab)}"
    if len(name) > MAX_NAMESPACE:
        raise MeshlabError(f"namespace {name} has {len(name)} characters; Kubernetes allows {MAX_NAMESPACE}",
                           "use a shorter learner name (MESHLAB_LEARNER) or lab name")
    return name


def parse_learners(text: str, source: str = "<learners>") -> list[Learner]:
    """Learners from a file: one per line, `NAME` or `NAME USER` (the cluster's user name); '#' starts a comment."""
    found: dict[str, Learner] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise MeshlabError(f"{source}:{number}: expected NAME or NAME USER, got {len(fields)} fields",
                               "one learner per line, e.g. `ann` or `ann ann@school.example`")
        try:
            name = check_name(fields[0], "learner name")
        except MeshlabError as exc:
            raise MeshlabError(f"{source}:{number}: {exc.message}", exc.hint) from None
        if name in found:
            raise MeshlabError(f"{source}:{number}: learner {name} is listed twice", "list each learner once")
        found[name] = Learner(name, fields[1] if len(fields) > 1 else "")
    if not found:
        raise MeshlabError(f"{source}: no learners", "one learner per line, e.g. `ann` or `ann ann@school.example`")
    return list(found.values())


# ---- the bundle ---------------------------------------------------------------------------------------


def _meta(name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
    meta = {"name": name, "labels": {CLASS_LABEL: "true", "app.kubernetes.io/managed-by": "meshlab", **(labels or {})}}
    return {**meta, "namespace": namespace} if namespace else meta


def _rules(rules) -> list[dict]:
    out = []
    for group, resources, verbs, _why, *names in rules:
        rule = {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
        if names and names[0]:
            rule["resourceNames"] = list(names[0])
        out.append(rule)
    return out


def cluster_role(name: str, rules) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(name), "rules": _rules(rules)}


def _binding(kind: str, name: str, role: str, subjects: list[dict], namespace: str | None = None) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": _meta(name, namespace),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}, "subjects": subjects}


def _classed(doc: dict) -> dict:
    """An object of the edge, labelled as the class's."""
    meta = doc["metadata"]
    return {**doc, "metadata": {**meta, "labels": {**meta.get("labels", {}), CLASS_LABEL: "true"}}}


def lab_namespace(learner: Learner, lab: str, pod_security: str = "baseline") -> list[dict]:
    """One learner's namespace for one lab, their RoleBinding in it, and the edge's RBAC for it."""
    name = namespace_name(learner.name, lab)
    labels = {OWNED_LABEL: "true", LEARNER_LABEL: learner.name, LAB_LABEL: lab, POD_SECURITY_LABEL: pod_security}
    edge_rbac = [_classed(d) for d in edge.rbac(name, name)]
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels)},
            _binding("RoleBinding", LEARNER_ROLE, LEARNER_ROLE, [learner.subject()], name), *edge_rbac]


def bundle(learners: list[Learner], labs=COURSE_LABS, istio_namespace: str | None = ISTIO_NAMESPACE,
           pod_security: str = "baseline") -> list[dict]:
    """Every object of a class, in the order `kubectl apply` needs (namespaces before what lives in them)."""
    if pod_security not in POD_SECURITY_LEVELS:
        raise MeshlabError(f"pod security level {pod_security!r} is not offered",
                           f"choose one of {', '.join(POD_SECURITY_LEVELS)}")
    labs = [check_name(lab) for lab in dict.fromkeys(labs)]
    if not labs:
        raise MeshlabError("a class needs at least one lab", "e.g. --labs welcome edge-proxy")
    accounts = [lr for lr in learners if not lr.user]
    subjects = [lr.subject() for lr in learners]
    docs = []
    if accounts:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(CLASS_NAMESPACE)})
        docs += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(lr.name, CLASS_NAMESPACE)}
                 for lr in accounts]
    docs += [_classed(edge.ingress_class()), cluster_role(LEARNER_ROLE, LEARNER_RULES),
             cluster_role(CLUSTER_ROLE, CLUSTER_RULES),
             _binding("ClusterRoleBinding", LEARNERS_BINDING, CLUSTER_ROLE, subjects)]
    if istio_namespace:
        docs += [cluster_role(ISTIO_ROLE, ISTIO_RULES),
                 _binding("RoleBinding", LEARNERS_BINDING, ISTIO_ROLE, subjects, istio_namespace)]
    for learner in learners:
        for lab in labs:
            docs += lab_namespace(learner, lab, pod_security)
    return json.loads(json.dumps(docs))  # no shared lists: the printed YAML has no anchors


def rules_table(rules=LEARNER_RULES) -> str:
    """The rules as the Markdown table docs/classroom.md shows (a unit test keeps the two the same)."""
    lines = ["| API group | resources | verbs | used by |", "|---|---|---|---|"]
    for group, resources, verbs, why, *names in rules:
        where = f" (only {', '.join(names[0])})" if names and names[0] else ""
        lines.append(f"| `{group or 'core'}` | {', '.join(resources)}{where} | {', '.join(verbs)} | {why} |")
    return "\n".join(lines)
