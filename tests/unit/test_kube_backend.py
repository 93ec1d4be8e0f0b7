"""The kube backend and what it shares with kind, driven by a fake command runner (no cluster)."""

from __future__ import annotations

import json
from subprocess import CompletedProcess

import pytest
import yaml

from meshlab import manifests
from meshlab.backends import cluster, edge, kube, kubectl
from meshlab.backends.base import MeshlabError

CTX = "class-cluster"
NS = "meshlab-ann-shop"
MINE = json.dumps({"meshlab.io/learner": "ann", "meshlab.io/lab": "shop", "meshlab.io/owned": "true"})


class FakeRunner:
    """Records every command; answers from rules (tokens that must appear in order in argv), newest rule first."""

    def __init__(self):
        self.calls: list[tuple[list[str], str | None]] = []
        self.rules: list[tuple[list[str], object]] = []
        self.spawned: list[list[str]] = []

    def on(self, *tokens: str, stdout="", stderr="", rc=0, raises=None) -> "FakeRunner":
        self.rules.insert(0, (list(tokens), raises or CompletedProcess([], rc, stdout, stderr)))
        return self

    def run(self, argv, input=None, timeout=120.0):
        self.calls.append((list(argv), input))
        for tokens, reply in self.rules:
            rest = iter(argv)
            if all(any(t == a for a in rest) for t in tokens):
                if isinstance(reply, BaseException):
                    raise reply
                return CompletedProcess(argv, reply.returncode, reply.stdout, reply.stderr)
        return CompletedProcess(argv, 0, "", "")

    def spawn(self, argv, log_path):
        self.spawned.append(list(argv))
        return 4242

    @property
    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]

    def inputs(self, *tokens: str) -> list[str]:
        """stdin of every call whose argv contains these tokens."""
        return [i for argv, i in self.calls if all(t in argv for t in tokens)]


def pod(name, node="node-1", namespace="default", containers=(("app", "python:3.12-slim", 9080),), labels=None,
        ready=True, phase="Running"):
    """A Pod object as `kubectl get pods -o json` returns it."""
    specs = [{"name": n, "image": image, **({"ports": [{"containerPort": port}]} if port else {})} for n, image, port in containers]
    statuses = [{"name": n, "image": image, "restartCount": 0, "containerID": f"containerd://id-{name}-{n}",
                 "state": {"running": {}} if phase == "Running" else {"waiting": {"reason": "ContainerCreating"}}}
                for n, image, _ in containers]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": specs},
            "status": {"phase": phase, "podIP": "10.244.1.5", "containerStatuses": statuses,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def items(*objects) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


ENVOY = "envoyproxy/envoy:v1.40.0"
SHOP_PODS = [
    pod("frontend-v1-aaa", labels={"app": "frontend", "version": "v1"}),
    pod("reviews-v2-bbb", node="node-2", labels={"app": "reviews", "version": "v2"},
        containers=(("app", "python:3.12-slim", 9080), ("envoy", ENVOY, None))),
    pod("router-ccc", labels={"meshlab.io/proxy-role": "router"}, containers=(("envoy", ENVOY, 10000),)),
    pod("edge-ddd", namespace="meshlab-system", node="node-cp", labels=dict(edge.POD_LABELS),
        containers=(("controller", edge.CONTROLLER_IMAGE, None), ("envoy", edge.ENVOY_IMAGE, 8080))),
    pod("coredns-x", namespace="kube-system", containers=(("coredns", "coredns:1.11", 53),)),
]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def runner():
    """A cluster on which ann's namespace for lab `shop` exists (made by meshlab, labelled for her)."""
    return FakeRunner().on("get", "namespace", NS, stdout=MINE)


def make(runner, progress=None, learner="ann", lab="shop") -> kube.KubeBackend:
    return kube.KubeBackend(lab, learner=learner, context=CTX, runner=runner, progress=progress or (lambda m: None))


def work(runner) -> list[list[str]]:
    """The commands run, without the look at the namespace's labels that precedes using it."""
    return [a for a in runner.argvs if a[3:5] != ["get", "namespace"]]


# ---- kubectl.py: parsing ---------------------------------------------------------------------------


def test_pod_info_reads_state_readiness_and_labels():
    info = kubectl.pod_info(SHOP_PODS[1], cluster="c1")
    assert (info.name, info.namespace, info.node, info.ip, info.ready, info.phase) == \
        ("reviews-v2-bbb", "default", "node-2", "10.244.1.5", True, "Running")
    assert (info.service, info.version, info.cluster) == ("reviews", "v2", "c1")
    assert [(c.name, c.state) for c in info.containers] == [("app", "running"), ("envoy", "running")]
    waiting = kubectl.pod_info(pod("x", ready=False, phase="Pending"))
    assert (waiting.ready, waiting.containers[0].state) == (False, "waiting")
    killed = kubectl.pod_info(SHOP_PODS[1], killed=frozenset({("reviews-v2-bbb", "envoy")}))
    assert killed.containers[1].state == "killed" and not killed.ready


def test_proxy_roles_from_label_or_sidecar_shape():
    found = [kubectl.proxy_info(p) for p in SHOP_PODS]
    assert [(p.name, p.role, p.pod) for p in found if p] == [
        ("reviews-v2-bbb/envoy", "sidecar", "reviews-v2-bbb"), ("router-ccc", "router", "router-ccc"),
        ("edge-ddd", "edge", "edge-ddd")]
    assert found[0] is None


def test_node_info_and_app_container():
    node = {"metadata": {"name": "meshlab-t-worker"},
            "status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "172.18.0.3"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert kubectl.node_info(node, "c").to_dict() == {"name": "meshlab-t-worker", "ip": "172.18.0.3", "ready": True, "cluster": "c"}
    assert kubectl.app_container(SHOP_PODS[1]) == ("app", 9080)
    assert kubectl.app_container(SHOP_PODS[2]) is None


def test_check_turns_failures_into_one_line_errors():
    with pytest.raises(MeshlabError, match=r"^kubectl apply: error: something broke \(hint"):
        kubectl.check(CompletedProcess([], 1, "", "warning\nerror: something broke\n"), "kubectl apply")


# ---- the kube backend -------------------------------------------------------------------------------


def test_context_defaults_to_kubectls_current_one(runner):
    runner.on("config", "current-context", stdout="teacher\n")
    backend = kube.KubeBackend("shop", learner="ann", runner=runner)
    assert backend.kubectl.context == "teacher" and backend.namespace == NS
    with pytest.raises(MeshlabError, match="learner name"):
        kube.KubeBackend("shop", learner="Ann_1", context=CTX, runner=runner)


def test_up_creates_an_owned_namespace_then_the_edge(runner):
    runner.on("get", "namespace", stderr='Error from server (NotFound): namespaces "meshlab-ann-shop" not found', rc=1)
    make(runner).up(nodes=3)
    base = ["kubectl", "--context", CTX]
    assert runner.argvs == [
        base + ["get", "namespace", NS, "-o", "jsonpath={.metadata.labels}"],
        base + ["apply", "-f", "-"],
        base + ["get", "ingressclass/edge", "-o", "name", "--ignore-not-found"],
        base + ["apply", "-f", "-"],
        base + ["-n", NS, "rollout", "status", "deployment/edge", "--timeout=240s"],
    ]
    namespace_doc, edge_docs = (list(yaml.safe_load_all(i)) for i in runner.inputs("apply"))
    assert namespace_doc[0]["metadata"] == {"name": NS, "labels": {
        "meshlab.io/owned": "true", "meshlab.io/learner": "ann", "meshlab.io/lab": "shop"}}
    manifests.validate(namespace_doc + edge_docs, "kube up")
    assert {d["metadata"].get("namespace") for d in edge_docs if d["kind"] in ("Deployment", "Role")} == {NS}
    assert sorted(kubectl.ref(d) for d in edge_docs) == [  # the Envoy edge, its controller's rights in the namespace
        "ConfigMap/edge-controller", "ConfigMap/edge-envoy", "Deployment/edge", "IngressClass/edge", "Role/meshlab-edge",
        "RoleBinding/meshlab-edge", "Service/edge", "ServiceAccount/edge"]
    assert not any(a[0] in ("kind", "docker") for a in runner.argvs)


def test_up_refuses_a_namespace_meshlab_did_not_make(runner):
    runner.on("get", "namespace", stdout='{"team":"payments"}')
    with pytest.raises(MeshlabError, match="not created by meshlab"):
        make(runner).up()
    assert not runner.inputs("apply")


def test_up_failure_deletes_the_namespace_it_created(runner):
    runner.on("get", "namespace", stderr="NotFound", rc=1).on("rollout", "status", stderr="error: timed out", rc=1)
    with pytest.raises(MeshlabError, match="deployment/edge is not ready"):
        make(runner).up()
    assert runner.argvs[-1] == ["kubectl", "--context", CTX, "delete", "namespace", NS, "--ignore-not-found", "--timeout=180s"]


def test_apply_and_delete_pin_the_learners_namespace(runner):
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}]
    backend = make(runner)
    assert backend.apply(docs) == ["ConfigMap/c"]
    backend.delete(docs)
    assert [a for a in work(runner) if a[5] in ("apply", "delete")] == [
        ["kubectl", "--context", CTX, "-n", NS, "apply", "-f", "-"],
        ["kubectl", "--context", CTX, "-n", NS, "delete", "--ignore-not-found", "--wait=false", "-f", "-"]]
    assert len(runner.argvs) - len(work(runner)) == 1  # the namespace was checked once
    assert yaml.safe_load(runner.inputs("apply")[0]) == docs[0]


def test_objects_are_read_back_from_the_learners_namespace(runner):
    import json

    stored = {"items": [{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                         "metadata": {"name": "reviews", "namespace": NS}, "spec": {"host": "reviews"}}]}
    runner.on("get", "destinationrule", stdout=json.dumps(stored))
    assert make(runner).objects("DestinationRule") == stored["items"]
    assert work(runner)[-1] == ["kubectl", "--context", CTX, "-n", NS, "get", "destinationrule", "-o", "json"]


@pytest.mark.parametrize("stage", [2, 4])
def test_a_stage_goes_into_the_learners_namespace_unchanged(runner, stage):
    from meshlab import stages

    docs = stages.documents(stage)
    backend = make(runner)
    backend.check_envoy = lambda *args, **kwargs: None  # `envoy --mode validate` before apply: the cluster backend's tests
    backend.apply(docs)
    assert ["kubectl", "--context", CTX, "-n", NS, "apply", "-f", "-"] in work(runner)
    sent = list(yaml.safe_load_all(runner.inputs("apply")[0]))
    assert sent == docs and not [d for d in sent if "namespace" in d["metadata"]]  # kubectl -n refuses another one


def test_down_deletes_only_its_own_namespace(runner):
    make(runner).down()
    base = ["kubectl", "--context", CTX]
    assert runner.argvs[1:] == [base + ["delete", "namespace", NS, "--ignore-not-found", "--timeout=180s"]]


def test_down_leaves_a_foreign_namespace_and_is_idempotent(runner):
    said = []
    runner.on("get", "namespace", stdout='{"team":"payments"}')
    make(runner, said.append).down()
    assert not any("delete" in a for a in runner.argvs) and "not deleting" in said[0]
    other = FakeRunner().on("get", "namespace", stderr="NotFound", rc=1)
    make(other).down()
    assert [a[3] for a in other.argvs] == ["get"]  # no namespace: nothing of the lab's is left to delete


def test_wait_ready_rolls_out_every_workload_with_progress(runner):
    workloads = [{"kind": "Deployment", "metadata": {"name": "frontend-v1", "namespace": NS}},
                 {"kind": "DaemonSet", "metadata": {"name": "node-proxy", "namespace": NS}}]
    runner.on("get", "deployments,daemonsets,statefulsets", stdout=items(*workloads))
    said = []
    make(runner, said.append).wait_ready(timeout=60)
    assert [a[5:] for a in runner.argvs[1:]] == [["rollout", "status", "deployment/frontend-v1", "--timeout=60s"],
                                                 ["rollout", "status", "daemonset/node-proxy", "--timeout=60s"]]
    assert said == ["[kube] ready 1/2: deployment/frontend-v1 (0s)", "[kube] ready 2/2: daemonset/node-proxy (0s)"]


def test_views_read_kubectl_json(runner):
    runner.on("get", "pods", stdout=items(*[p for p in SHOP_PODS if p["metadata"]["namespace"] == "default"]))
    runner.on("get", "nodes", stderr='Error from server (Forbidden): nodes is forbidden: User "ann"', rc=1)
    backend = make(runner)
    assert [p.name for p in backend.pods()] == ["frontend-v1-aaa", "reviews-v2-bbb", "router-ccc"]
    assert [(n.name, n.ready) for n in backend.nodes()] == [("node-1", True), ("node-2", True)]
    assert [p.role for p in backend.proxies()] == ["sidecar", "router"]
    assert ["kubectl", "--context", CTX, "-n", NS, "get", "pods", "-o", "json"] in runner.argvs


def test_entrypoint_port_forwards_to_the_edge_or_the_frontend(runner, monkeypatch):
    monkeypatch.setattr(cluster, "free_port", lambda: 41000)
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: wait > 0)
    runner.on("get", "ingresses", stdout=items({"kind": "Ingress", "metadata": {"name": "shop"}, "spec": {"ingressClassName": "edge"}}))
    backend = make(runner)
    assert backend.entrypoint() == "http://127.0.0.1:41000"
    assert runner.spawned == [["kubectl", "--context", CTX, "-n", NS, "port-forward", "--address", "127.0.0.1",
                               "service/edge", "41000:80"]]
    classless = {"kind": "Ingress", "metadata": {"name": "shop"}, "spec": {"rules": []}}  # the edge ignores it, as locally
    runner.on("get", "ingresses", stdout=items(classless))
    runner.on("get", "service", "frontend", stdout=json.dumps({"spec": {"ports": [{"port": 9080}]}}))
    backend.entrypoint()
    assert runner.spawned[-1][-2:] == ["service/frontend", "41000:9080"]
    assert set(backend.state.read()["forwards"]) == {f"{NS}/edge:80", f"{NS}/frontend:9080"}


def test_kill_pod_force_deletes_and_kill_node_is_refused(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS[:3]))
    backend = make(runner)
    assert backend.kill(pod="frontend") == ["frontend-v1-aaa"]
    assert runner.argvs[-1] == ["kubectl", "--context", CTX, "-n", "default", "delete", "pod", "frontend-v1-aaa",
                                "--grace-period=0", "--force", "--wait=false"]
    with pytest.raises(MeshlabError, match="cannot stop nodes"):
        backend.kill(node="node-1")
    with pytest.raises(MeshlabError, match="no pod nope"):
        backend.kill(pod="nope")


def test_kill_proxy_by_role_sigterms_pid_1(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS[:3]))
    assert make(runner).kill(proxy="sidecar") == ["reviews-v2-bbb/envoy"]
    assert runner.argvs[-1] == ["kubectl", "--context", CTX, "-n", "default", "exec", "reviews-v2-bbb", "-c", "envoy",
                                "--", "sh", "-c", "kill 1"]


def test_inject_posts_fault_knobs_inside_each_pod_and_restore_clears(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS[:3]))
    backend = make(runner)
    assert backend.inject("reviews", errors=0.5, latency_ms=200) == ["reviews-v2-bbb"]
    argv, body = runner.calls[-1]
    assert argv == ["kubectl", "--context", CTX, "-n", "default", "exec", "-i", "reviews-v2-bbb", "-c", "app", "--",
                    "python", "-c", cluster.FAULT_CLIENT, "http://127.0.0.1:9080/_meshlab/fault", "POST"]
    assert json.loads(body) == {"error_rate": 0.5, "latency_ms": 200}
    compile(cluster.FAULT_CLIENT, "fault-client", "exec")
    backend.restore()
    cleared = [a[7] for a in runner.argvs if "exec" in a]
    assert cleared == ["reviews-v2-bbb", "frontend-v1-aaa", "reviews-v2-bbb"]
    assert [a[-1] for a in runner.argvs if "exec" in a][1:] == ["DELETE", "DELETE"]


def test_logs_write_one_file_per_container(runner, tmp_path):
    runner.on("get", "pods", stdout=items(SHOP_PODS[1])).on("logs", stdout="hello\n")
    out = make(runner).logs(tmp_path / "logs")
    assert (out / "pods" / "default" / "reviews-v2-bbb" / "envoy.log").read_text() == "hello\n"
    assert ["kubectl", "--context", CTX, "-n", "default", "logs", "reviews-v2-bbb", "-c", "app"] in runner.argvs


def test_availability(runner):
    none = kube.KubeBackend.availability(context=CTX, runner=runner, which=lambda tool: None)
    assert not none.ok and none.missing == ["kubectl"] and "kubectl" in none.hints[0]
    runner.on("get", "--raw", "/version", stderr="Unable to connect to the server", rc=1)
    down = kube.KubeBackend.availability(context=CTX, runner=runner, which=lambda tool: "/usr/bin/" + tool)
    assert not down.ok and CTX in down.missing[0]
    runner.on("get", "--raw", "/version", stdout='{"gitVersion":"v1.33.1"}')
    assert kube.KubeBackend.availability(context=CTX, runner=runner, which=lambda tool: "/usr/bin/" + tool).ok
    nocontext = FakeRunner().on("current-context", stderr="error: current-context is not set", rc=1)
    found = kube.KubeBackend.availability(runner=nocontext, which=lambda tool: "/usr/bin/" + tool)
    assert found.missing == ["a kubeconfig context"]


# ---- stage 5: Istio on a shared cluster, restart, watch ------------------------------------------------

KUBE = ["kubectl", "--context", CTX, "-n", NS]


def test_kill_an_istio_sidecar_asks_its_agent_to_quit(runner):
    from istio_samples import injected

    runner.on("get", "pods", stdout=items(injected("reviews-v2-abc", "reviews", "v2", native=True, namespace=NS)))
    assert make(runner).kill(proxy="sidecar") == ["reviews-v2-abc/istio-proxy"]
    assert runner.argvs[-1] == KUBE + ["exec", "reviews-v2-abc", "-c", "istio-proxy", "--",
                                       "pilot-agent", "request", "POST", "quitquitquit"]


@pytest.mark.parametrize("name", ["istiod", "control-plane"])
def test_the_shared_control_plane_is_not_the_learners_to_kill(runner, name):
    with pytest.raises(MeshlabError, match="shares istiod with the whole class"):
        make(runner).kill(pod=name)
    assert work(runner) == []


def test_restart_stays_in_the_learners_namespace(runner):
    from istio_samples import deployment, injected

    runner.on("get", "deployment", "frontend-v1", stdout=deployment("frontend-v1", NS, "python:3.12-slim"))
    runner.on("get", "pods", "-l", stdout=items(injected("frontend-v1-new", "frontend", "v1", namespace=NS)))
    assert make(runner).restart("deploy/frontend-v1") == ["frontend-v1-new"]
    assert work(runner)[:2] == [KUBE + ["rollout", "restart", "deployment/frontend-v1"],
                                KUBE + ["rollout", "status", "deployment/frontend-v1", "--timeout=60s"]]
    with pytest.raises(MeshlabError, match="not this lab's"):
        make(runner).restart("default/deployment/frontend-v1")


def test_kube_capabilities_and_pod_get(runner):
    from istio_samples import injected

    backend = make(runner)
    assert "shared-cluster" in backend.capabilities() and "kill-node" not in backend.capabilities()
    runner.on("get", "pods", stdout=items(injected("frontend-v1-abc", "frontend", "v1", namespace=NS)))
    runner.on("exec", stdout='{"status": 200}\n')
    assert backend.pod_get("frontend", "/_meshlab/call?url=http%3A%2F%2Freviews%3A9080%2F", timeout=5) == '{"status": 200}\n'
    argv = runner.argvs[-1]
    assert argv[:9] == KUBE + ["exec", "frontend-v1-abc", "-c", "app"]
    assert argv[-2:] == ["http://127.0.0.1:9080/_meshlab/call?url=http%3A%2F%2Freviews%3A9080%2F", "5"]


def test_watch_lists_at_once_then_waits_for_a_change(runner):
    from istio_samples import injected

    from meshlab.backends import clustermesh

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": NS, "uid": "u1",
                                                                    "resourceVersion": "10", "managedFields": [{}]},
               "spec": {"ports": [{"port": 9080}]}, "status": {}}
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "reviews", "namespace": NS, "uid": "u2", "resourceVersion": "11"}, "spec": {"hosts": ["reviews"]}}
    runner.on("get", "services,serviceaccounts", stdout=items(service))
    runner.on("get", clustermesh.ISTIO_KINDS, stdout=items(vs))
    runner.on("get", "pods", stdout=items(injected("reviews-v2-abc", "reviews", "v2", namespace=NS)))
    backend = make(runner)
    first = backend.watch(since=0, timeout=5)
    assert first["revision"] == 1 and first["cluster"] == CTX
    assert [o["kind"] for o in first["objects"]] == ["Service", "VirtualService"]
    assert "managedFields" not in first["objects"][0]["metadata"] and "status" not in first["objects"][0]
    assert first["pods"] == [{"name": "reviews-v2-abc", "namespace": NS, "ip": "10.244.1.7",
                              "node": "meshlab-t1-worker", "labels": first["pods"][0]["labels"],
                              "annotations": first["pods"][0]["annotations"], "service_account": "shop-reviews",
                              "ready": True, "injected": True, "ports": {"http": 9080}}]
    assert backend.watch(since=1, timeout=0)["revision"] == 1  # nothing changed: returns at the timeout
    runner.on("get", clustermesh.ISTIO_KINDS, stderr='error: the server doesn\'t have a resource type', rc=1)
    changed = backend.watch(since=1, timeout=5)
    assert changed["revision"] == 2 and [o["kind"] for o in changed["objects"]] == ["Service"]


# ---- learners on one cluster, and a class ------------------------------------------------------------

BOB_LABELS = json.dumps({"meshlab.io/learner": "bob", "meshlab.io/lab": "shop", "meshlab.io/owned": "true"})
CLASS = json.dumps({"meshlab.io/learner": "ann", "meshlab.io/lab": "shop", "meshlab.io/owned": "true",
                    "meshlab.io/class": "true", "pod-security.kubernetes.io/enforce": "baseline"})
FORBIDDEN = 'Error from server (Forbidden): namespaces is forbidden: User "ann" cannot create resource "namespaces"'


def test_two_learners_running_the_same_lab_get_different_namespaces():
    ann, bob = make(FakeRunner()), make(FakeRunner(), learner="bob")
    assert (ann.namespace, bob.namespace) == ("meshlab-ann-shop", "meshlab-bob-shop")
    assert ann.state.path != bob.state.path
    with pytest.raises(MeshlabError, match="73 characters; Kubernetes allows 63"):
        make(FakeRunner(), learner="a" * 32, lab="b" * 32)


def test_lab_passes_the_learner_to_the_kube_backend_only(monkeypatch):
    from meshlab import lab as meshlab_lab

    monkeypatch.setenv("MESHLAB_LEARNER", "carol")
    lab = meshlab_lab.Lab("shop", backend="kube", learner="ann", context=CTX, runner=FakeRunner())
    assert (lab.backend.learner, lab.backend.namespace) == ("ann", NS)
    assert meshlab_lab.make_backend("kube", "shop", context=CTX, runner=FakeRunner()).namespace == "meshlab-carol-shop"
    kind = meshlab_lab.make_backend("kind", "shop", clusters=False, learner="ann", runner=FakeRunner())
    assert kind.namespace == "default"  # learner= means nothing on a cluster of one's own


@pytest.mark.parametrize("action", ["up", "apply", "down", "kill", "inject"])
def test_another_learners_namespace_is_never_used_or_deleted(action):
    """ann (lab x-shop) and ann-x (lab shop) would share meshlab-ann-x-shop: the labels tell them apart."""
    runner = FakeRunner().on("get", "namespace", "meshlab-ann-x-shop", stdout=json.dumps(
        {"meshlab.io/learner": "ann-x", "meshlab.io/lab": "shop", "meshlab.io/owned": "true"}))
    backend = make(runner, lab="x-shop")
    assert backend.namespace == "meshlab-ann-x-shop"
    call = {"up": backend.up, "down": backend.down, "kill": lambda: backend.kill(pod="frontend"),
            "apply": lambda: backend.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]),
            "inject": lambda: backend.inject("reviews", errors=0.5)}[action]
    with pytest.raises(MeshlabError, match=r"^namespace meshlab-ann-x-shop belongs to learner ann-x, not ann \(hint: "
                                           r"set MESHLAB_LEARNER"):
        call()
    assert work(runner) == []  # nothing applied, deleted, exec'd or even listed there


def test_a_namespace_of_the_same_learner_but_another_lab_is_refused():
    runner = FakeRunner().on("get", "namespace", NS, stdout=json.dumps(
        {"meshlab.io/learner": "ann", "meshlab.io/lab": "other", "meshlab.io/owned": "true"}))
    with pytest.raises(MeshlabError, match="belongs to lab other of learner ann, not lab shop"):
        make(runner).up()
    assert work(runner) == []


def test_down_deletes_the_learners_own_namespace_only_and_leaves_bobs_alone():
    cluster = FakeRunner().on("get", "namespace", NS, stdout=MINE).on("get", "namespace", "meshlab-bob-shop", stdout=BOB_LABELS)
    make(cluster).down()
    deleted = [a for a in cluster.argvs if "delete" in a]
    assert deleted == [["kubectl", "--context", CTX, "delete", "namespace", NS, "--ignore-not-found", "--timeout=180s"]]
    assert not [a for a in cluster.argvs if "meshlab-bob-shop" in " ".join(a)]


def test_up_in_a_class_namespace_creates_only_namespaced_objects(runner):
    runner.on("get", "namespace", NS, stdout=CLASS).on("get", "ingressclass/edge", stdout="ingressclass.networking.k8s.io/edge\n")
    make(runner).up()
    base = ["kubectl", "--context", CTX]
    assert runner.argvs == [base + ["get", "namespace", NS, "-o", "jsonpath={.metadata.labels}"],
                            base + ["get", "ingressclass/edge", "-o", "name", "--ignore-not-found"],
                            base + ["apply", "-f", "-"],
                            base + ["-n", NS, "rollout", "status", "deployment/edge", "--timeout=240s"]]
    sent = list(yaml.safe_load_all(runner.inputs("apply")[0]))
    assert sorted(kubectl.ref(d) for d in sent) == ["ConfigMap/edge-controller", "ConfigMap/edge-envoy", "Deployment/edge",
                                                    "Service/edge"]
    assert {d["metadata"]["namespace"] for d in sent} == {NS}
    manifests.validate(sent, "class edge")


def test_down_in_a_class_namespace_empties_it_and_keeps_the_instructors_objects(runner):
    runner.on("get", "namespace", NS, stdout=CLASS)
    make(runner).down()
    assert work(runner) == [
        KUBE + ["delete", kube.EMPTY_KINDS, "-l", "!meshlab.io/class", "--field-selector",
                "metadata.name!=default,metadata.name!=kube-root-ca.crt", "--ignore-not-found", "--wait=false"],
        KUBE + ["delete", kube.ISTIO_OBJECTS, "--all", "--ignore-not-found", "--wait=false"]]
    assert not [a for a in runner.argvs if ("delete" in a and "namespace" in a) or "clusterrolebinding" in a]


@pytest.mark.parametrize("where", ["namespace", "cluster-objects", "ingressclass"])
def test_a_learner_without_cluster_rights_is_sent_to_the_instructor(runner, where):
    if where == "namespace":  # no namespace yet, and no right to create one
        runner.on("get", "namespace", NS, stderr="Error from server (NotFound): namespaces not found", rc=1)
        runner.on("apply", stderr=FORBIDDEN, rc=1)
        expected = rf"^you may not create Namespace/{NS} on cluster {CTX}: Error from server \(Forbidden\)"
    elif where == "cluster-objects":  # a namespace of one's own, but no right to read the edge's cluster objects
        runner.on("get", "ingressclass/edge", stderr='Error from server (Forbidden): ingressclasses.networking... is forbidden', rc=1)
        expected = rf"^you may not read IngressClass/edge on cluster {CTX}"
    else:  # a class's namespace, but the class's IngressClass is gone
        runner.on("get", "namespace", NS, stdout=CLASS)
        expected = rf"^IngressClass edge is missing on cluster {CTX}"
    with pytest.raises(MeshlabError, match=expected) as caught:
        make(runner).up()
    assert "\n" not in str(caught.value)
    assert caught.value.hint.startswith("ask your instructor to run `meshlab class setup` for learner ann and lab shop")
    applied = [yaml.safe_load(stdin) for argv, stdin in runner.calls if "apply" in argv]
    assert [d["kind"] for d in applied] == (["Namespace"] if where == "namespace" else [])  # no edge, nothing cluster-wide


def test_an_object_the_learner_may_not_create_names_the_instructor(runner):
    runner.on("apply", stderr='Error from server (Forbidden): error when creating "STDIN": clusterroles is forbidden', rc=1)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "mine"}, "rules": []}
    with pytest.raises(MeshlabError, match=r"^cell 3: kubectl apply: .*forbidden \(hint: ask your instructor"):
        make(runner).apply([role], "cell 3")


def test_stage_3_on_kube_reaches_the_node_proxy_through_a_local_service(runner):
    from meshlab import stages
    from meshlab.stages import pernode

    said = []
    backend = make(runner, said.append)
    backend.check_envoy = lambda *args, **kwargs: None  # Envoy's own validation is tested with the cluster backend
    refs = backend.apply(stages.documents(3), "stage 3")
    sent = list(yaml.safe_load_all(runner.inputs("apply")[0]))
    assert sent == pernode.documents(shared_nodes=True) and "Service/node-proxy-local" in refs
    assert "hostPort" not in runner.inputs("apply")[0] and "status.hostIP" not in runner.inputs("apply")[0]
    assert any("internalTrafficPolicy: Local" in m for m in said)
    backend.delete([d for d in stages.documents(3) if d["kind"] == "DaemonSet"])  # the Service goes with the proxies
    gone = list(yaml.safe_load_all(runner.inputs("delete")[0]))
    assert [kubectl.ref(d) for d in gone] == ["DaemonSet/node-proxy", "Service/node-proxy-local"]


def test_a_class_namespace_labelled_for_a_revision_only_istio_is_not_relabelled():
    from istio_samples import deployment

    labelled = json.dumps({**json.loads(CLASS), "istio.io/rev": "canary"})
    runner = FakeRunner().on("get", "namespace", NS, stdout=labelled)
    runner.on("get", "deployment", "istiod", stderr='Error from server (NotFound): not found', rc=1)
    runner.on("get", "deployments", "-A", "-l", "app=istiod", stdout=items(json.loads(deployment(
        "istiod", "istio-canary", "docker.io/istio/pilot:1.30.3", labels={"istio.io/rev": "canary"}))))
    make(runner).install_mesh()
    assert not [a for a in runner.argvs if "label" in a]  # the instructor labelled it; a learner may not
    assert ["kubectl", "--context", CTX, "-n", NS, "apply", "-f", "-"] in runner.argvs  # the trace EnvoyFilter
