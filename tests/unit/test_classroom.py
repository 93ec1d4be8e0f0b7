"""The instructor's class bundle (meshlab/backends/classroom.py) and `meshlab class setup|teardown`, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from meshlab import cli, manifests, stages
from meshlab.backends import classroom, edge, kube
from meshlab.backends.base import MeshlabError
from meshlab.backends.local import kinds as local_kinds
from meshlab.stages import pernode

ROOT = Path(__file__).resolve().parents[2]
ANN, BOB = classroom.Learner("ann"), classroom.Learner("bob", "bob@school.example")
# Resource names of the kinds meshlab's objects and the course's YAML use.
PLURAL = {"ConfigMap": "configmaps", "Service": "services", "ServiceAccount": "serviceaccounts",
          "Deployment": "deployments", "DaemonSet": "daemonsets", "Ingress": "ingresses",
          "VirtualService": "virtualservices", "DestinationRule": "destinationrules", "ServiceEntry": "serviceentries",
          "EnvoyFilter": "envoyfilters", "PeerAuthentication": "peerauthentications",
          "AuthorizationPolicy": "authorizationpolicies"}


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def rules_of(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)["rules"]


# ---- names -----------------------------------------------------------------------------------------


def test_namespace_is_per_learner_and_lab_and_at_most_63_characters():
    assert classroom.namespace_name("ann", "edge-proxy") == "meshlab-ann-edge-proxy"
    assert classroom.namespace_name("bob", "edge-proxy") != classroom.namespace_name("ann", "edge-proxy")
    with pytest.raises(MeshlabError, match=r"^namespace meshlab-a{32}-b{32} has 73 characters; Kubernetes allows 63"):
        classroom.namespace_name("a" * 32, "b" * 32)
    with pytest.raises(MeshlabError, match="learner name 'Ann'"):
        classroom.namespace_name("Ann", "x")


def test_the_learner_comes_from_the_option_the_environment_or_the_user_name(monkeypatch):
    monkeypatch.delenv("MESHLAB_LEARNER", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setattr(kube.getpass, "getuser", lambda: "Ann.Smith_2@Example")
    assert kube.learner_name() == "ann-smith-2-example"
    monkeypatch.setenv("JUPYTERHUB_USER", "bob@school.example")  # every hub user is `jovyan` to the OS
    assert kube.learner_name() == "bob-school-example"
    monkeypatch.setenv("MESHLAB_LEARNER", "carol")
    assert kube.learner_name() == "carol" and kube.learner_name("dan") == "dan"
    monkeypatch.setenv("MESHLAB_LEARNER", "Carol!")
    with pytest.raises(MeshlabError, match="learner name 'Carol!' is not valid"):
        kube.learner_name()
    assert classroom.sanitize("___") == "learner" and len(classroom.sanitize("x" * 80)) == 32


def test_learners_file_lines_comments_and_errors():
    text = "# class of 2026\nann\n\nbob   bob@school.example  # OIDC user\n"
    assert classroom.parse_learners(text, "class.txt") == [ANN, BOB]
    for bad, message in [("ann\nann\n", "class.txt:2: learner ann is listed twice"),
                         ("ann x y\n", "class.txt:1: expected NAME or NAME USER, got 3 fields"),
                         ("Ann\n", "class.txt:1: learner name 'Ann' is not valid"),
                         ("# nobody\n", "class.txt: no learners")]:
        with pytest.raises(MeshlabError, match=f"^{re.escape(message)}"):
            classroom.parse_learners(bad, "class.txt")


def test_course_labs_are_the_labs_the_notebooks_open():
    named = set()
    for folder in ("lessons", "solutions"):
        for notebook in (ROOT / folder).glob("*.ipynb"):
            text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
            named |= set(re.findall(r'meshlab\.Lab\("([a-z0-9-]+)"', text))
    from meshlab import compare

    named |= {f"compare-{n}" for n in compare.STAGES}
    one_cluster = {n for n in named if not n.startswith("multicluster")}  # stage 6 needs two clusters: not kube
    assert set(classroom.COURSE_LABS) == one_cluster
    longest = max(classroom.COURSE_LABS, key=len)
    classroom.namespace_name("a" * (63 - len("meshlab--") - len(longest)), longest)  # fits with a 31-letter name


# ---- the bundle ------------------------------------------------------------------------------------


def test_every_object_of_the_bundle_is_valid_kubernetes():
    docs = classroom.bundle([ANN, BOB], ["welcome"])  # every kind of object the bundle makes
    for doc in docs:
        kubernetes_validate.validate(doc, manifests.KUBERNETES_VERSION, strict=True)
    assert all(d["metadata"]["labels"][classroom.CLASS_LABEL] == "true" for d in docs)  # teardown finds them all
    without = classroom.bundle([ANN, BOB], ["welcome"], istio_namespace=None)
    assert [d for d in docs if d not in without] == [
        d for d in docs if d["metadata"]["name"] in (classroom.ISTIO_ROLE, classroom.LEARNERS_BINDING)
        and d["kind"] in ("ClusterRole", "RoleBinding")]
    assert next(d for d in docs if d["metadata"].get("namespace") == "istio-system")["roleRef"]["name"] == classroom.ISTIO_ROLE


def test_bundle_makes_a_labelled_namespace_and_bindings_per_learner_and_lab():
    docs = classroom.bundle([ANN, BOB], ["welcome", "edge-proxy"])
    namespaces = {d["metadata"]["name"]: d["metadata"]["labels"] for d in by_kind(docs, "Namespace")}
    assert set(namespaces) == {"meshlab-class", "meshlab-ann-welcome", "meshlab-ann-edge-proxy",
                               "meshlab-bob-welcome", "meshlab-bob-edge-proxy"}
    assert {k: v for k, v in namespaces["meshlab-bob-welcome"].items() if k.startswith(("meshlab", "pod-"))} == {
        "meshlab.io/owned": "true", "meshlab.io/learner": "bob", "meshlab.io/lab": "welcome",
        "meshlab.io/class": "true", "pod-security.kubernetes.io/enforce": "baseline"}
    learner_bindings = {d["metadata"]["namespace"]: d for d in by_kind(docs, "RoleBinding")
                        if d["roleRef"]["name"] == classroom.LEARNER_ROLE}
    assert set(learner_bindings) == set(namespaces) - {"meshlab-class"}
    assert learner_bindings["meshlab-ann-welcome"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "ann", "namespace": "meshlab-class"}]
    assert learner_bindings["meshlab-bob-welcome"]["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob@school.example"}]
    assert [d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount") if d["metadata"]["namespace"] == "meshlab-class"] \
        == ["ann"]  # bob has a user name: no ServiceAccount
    # namespaces are applied before anything that lives in them
    order = [d["metadata"].get("namespace") or d["metadata"]["name"] for d in docs]
    for ns in namespaces:
        assert order.index(ns) == min(i for i, d in enumerate(docs)
                                      if d["metadata"].get("namespace") == ns or d["metadata"]["name"] == ns)


def test_bundle_gives_the_edge_of_each_namespace_all_it_needs_with_the_kube_backend():
    """What the class makes + what the backend applies in a class's namespace = every object of the edge."""
    ns = "meshlab-ann-welcome"
    made = {kube.ref(d) + "@" + d["metadata"].get("namespace", "") for d in classroom.bundle([ANN], ["welcome"])}
    learner = [d for d in edge.documents(ns, ns) if d["kind"] not in kube.CLUSTER_KINDS | kube.EDGE_RBAC_KINDS]
    applied = {kube.ref(d) + "@" + d["metadata"].get("namespace", "") for d in learner}
    assert {kube.ref(d) + "@" + d["metadata"].get("namespace", "") for d in edge.documents(ns, ns)} <= made | applied
    assert {d["kind"] for d in learner} == {"ConfigMap", "Deployment", "Service"}
    # the edge's RBAC, which the learner could not grant (its Role reads EndpointSlices), is the class's, per namespace
    made_rbac = [d for d in classroom.bundle([ANN], ["welcome"]) if d["kind"] in kube.EDGE_RBAC_KINDS
                 and d["metadata"].get("namespace") == ns and d["metadata"]["name"] != classroom.LEARNER_ROLE]
    assert [kube.ref(d) for d in made_rbac] == ["ServiceAccount/edge", "Role/meshlab-edge", "RoleBinding/meshlab-edge"]
    learner_reads = {r for rule in classroom.LEARNER_RULES for r in rule[1]}
    edge_reads = {r for d in made_rbac if d["kind"] == "Role" for rule in d["rules"] for r in rule["resources"]}
    assert "endpointslices" in edge_reads - learner_reads
    assert not [d for d in classroom.bundle([ANN], ["welcome"]) if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == edge.ROLE]  # the edge needs nothing cluster-wide but its IngressClass
    assert next(d for d in classroom.bundle([ANN], ["welcome"]) if d["kind"] == "IngressClass")["spec"] == {
        "controller": "meshlab.io/edge"}


def test_the_learners_role_is_minimal():
    docs = classroom.bundle([ANN], ["welcome"])
    roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")]
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert not {"escalate", "bind", "impersonate", "deletecollection", "update"} & set(rule["verbs"])
    learner = rules_of(docs, "ClusterRole", classroom.LEARNER_ROLE)
    granted = {(res, verb) for rule in learner for res in rule["resources"] for verb in rule["verbs"]}
    creatable = {res for res, verb in granted if verb == "create" and "/" not in res}
    # exactly what the kube backend creates in a class's namespace: the stages' objects (stage 3 for shared nodes),
    # the edge's namespaced part, the trace EnvoyFilter and the Istio kinds meshlab's control plane knows
    objects = [d for n in (0, 1, 2, 4, 5) for d in stages.documents(n)] + pernode.documents(shared_nodes=True)
    objects += edge.documents("ns", "ns")
    needed = {PLURAL[d["kind"]] for d in objects if d["kind"] not in kube.CLUSTER_KINDS | kube.EDGE_RBAC_KINDS}
    needed |= {"serviceaccounts", "envoyfilters"} | {PLURAL[kind] for _, kind in local_kinds.ISTIO_KINDS}
    assert creatable == needed
    assert "secrets" not in {res for res, _ in granted} and ("namespaces", "get") in granted
    assert {verb for res, verb in granted if res == "namespaces"} == {"get"}  # never relabel (Pod Security) or delete
    # bound only inside the lab namespaces, never cluster-wide
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == classroom.LEARNER_ROLE]
    assert rules_of(docs, "ClusterRole", classroom.CLUSTER_ROLE) == [
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingressclasses"], "verbs": ["get"], "resourceNames": ["edge"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]
    istio = rules_of(docs, "ClusterRole", classroom.ISTIO_ROLE)
    assert {r["resources"][0]: r.get("resourceNames") for r in istio} == {
        "deployments": ["istiod"], "configmaps": ["istio"], "pods": None, "pods/portforward": None,
        "serviceaccounts/token": ["default"]}


def test_pod_security_levels():
    docs = classroom.bundle([ANN], ["welcome"], pod_security="privileged")
    ns = next(d for d in docs if d["metadata"]["name"] == "meshlab-ann-welcome")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    with pytest.raises(MeshlabError, match="pod security level 'restricted' is not offered"):
        classroom.bundle([ANN], ["welcome"], pod_security="restricted")
    with pytest.raises(MeshlabError, match="at least one lab"):
        classroom.bundle([ANN], [])


def test_the_documented_role_is_the_one_in_the_code():
    text = (ROOT / "docs" / "classroom.md").read_text()
    for rules in (classroom.LEARNER_RULES, classroom.CLUSTER_RULES, classroom.ISTIO_RULES):
        assert classroom.rules_table(rules) in text


# ---- stage 3 for shared nodes ------------------------------------------------------------------------


def test_stage_3_for_shared_nodes_has_no_host_port_and_is_valid():
    shared = pernode.documents(shared_nodes=True)
    assert pernode.for_shared_nodes(pernode.documents()) == shared == pernode.for_shared_nodes(shared)
    canonical = stages.documents(3)
    changed = [d for d in shared if d not in canonical]  # the others are the canonical stage's, validated there
    assert {kube.ref(d) for d in changed} >= {"DaemonSet/node-proxy", "Service/node-proxy-local", "Deployment/reviews-v2"}
    manifests.validate(changed, "stage 3, shared nodes")  # kubernetes-validate, strict
    ds = next(d for d in shared if d["kind"] == "DaemonSet")
    assert not [p for c in ds["spec"]["template"]["spec"]["containers"] for p in c["ports"] if "hostPort" in p]
    local = next(d for d in shared if d["metadata"]["name"] == pernode.LOCAL_SERVICE)
    assert local["spec"]["internalTrafficPolicy"] == "Local" and local["spec"]["selector"] == {"app": "node-proxy"}
    assert local["spec"]["ports"] == [{"name": "outgoing", "port": 15001, "targetPort": "outgoing"}]
    for doc in shared:
        for c in (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers", []):
            env = {e["name"]: e for e in c.get("env", [])}
            assert "HOST_IP" not in env
            if "HTTP_PROXY" in env:
                assert env["HTTP_PROXY"]["value"] == "http://node-proxy-local:15001"
    # the hostPort way stays the default (local, kind); other stages pass through unchanged
    hosted = next(d for d in canonical if d["kind"] == "DaemonSet")
    assert hosted["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] == 15001
    assert pernode.for_shared_nodes(stages.documents(2)) == stages.documents(2)


def test_the_local_backend_refuses_the_shared_node_variant_by_name():
    """Not offered locally (local nodes are loopback groups: a hostPort there is shared by nobody)."""
    with pytest.raises(MeshlabError, match=r"Service/node-proxy-local: field spec.internalTrafficPolicy is not "
                                           r"supported by the local backend \(hint: .*kind"):
        local_kinds.check_supported(pernode.local_service(), "stage 3")


# ---- the CLI -----------------------------------------------------------------------------------------


def test_class_setup_dry_run_prints_valid_yaml(tmp_path, capsys):
    learners = tmp_path / "learners.txt"
    learners.write_text("ann\nbob bob@school.example\n")
    assert cli.main(["class", "setup", "--learners", str(learners), "--labs", "welcome", "proxy-per-node", "--dry-run"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert docs == classroom.bundle([ANN, BOB], ["welcome", "proxy-per-node"])  # objects validated above
    assert cli.main(["class", "setup", "--learners", str(learners)]) == cli.EXIT_USAGE  # no --context
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --context" in err


def test_class_setup_applies_the_bundle_after_finding_istios_namespace():
    from test_kube_backend import FakeRunner

    runner = FakeRunner()
    said = []
    docs = kube.class_setup("teacher", [ANN], ["welcome"], runner=runner, say=said.append)
    assert runner.argvs == [["kubectl", "--context", "teacher", "get", "namespace", "istio-system", "-o", "name"],
                            ["kubectl", "--context", "teacher", "apply", "-f", "-"]]
    assert list(yaml.safe_load_all(runner.calls[1][1])) == docs
    assert "1 learner(s), 1 lab namespace(s)" in said[0]
    missing = FakeRunner().on("get", "namespace", stderr='Error from server (NotFound): namespaces "istio-system"', rc=1)
    with pytest.raises(MeshlabError, match="not on cluster teacher.*--no-istio"):
        kube.class_setup("teacher", [ANN], ["welcome"], runner=missing)
    assert [a[3] for a in missing.argvs] == ["get"]  # nothing applied


def test_class_teardown_deletes_by_label(capsys):
    from test_kube_backend import FakeRunner

    assert cli.main(["class", "teardown", "--context", "teacher", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [" ".join(argv) for argv in kube.teardown_commands("teacher")]
    runner = FakeRunner().on("delete", stdout="namespace/meshlab-ann-welcome deleted\n")
    kube.class_teardown("teacher", runner=runner, say=lambda line: None)
    assert runner.argvs == kube.teardown_commands("teacher")
    assert all("-l" in argv and "meshlab.io/class=true" in argv for argv in runner.argvs)


def test_cli_passes_the_learner_on():
    args = cli.parser().parse_args(["status", "--backend", "kube", "--learner", "ann", "--lab", "welcome"])
    assert (args.learner, args.lab) == ("ann", "welcome")
