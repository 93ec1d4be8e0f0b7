"""The kind backend's exact command sequences, driven by a fake command runner (no Docker, no cluster)."""

from __future__ import annotations

import json

import pytest
import yaml
from test_kube_backend import SHOP_PODS, FakeRunner, items, pod

from meshlab import manifests
from meshlab.backends import cluster, edge, kind, kindfaults
from meshlab.backends.base import MeshlabError

CLUSTER, CTX, PORT = "meshlab-t1", "kind-meshlab-t1", 30123
KUBECTL = ["kubectl", "--context", CTX]
CREATE = ["kind", "create", "cluster", "--name", CLUSTER, "--config", "-"]
DELETE = ["kind", "delete", "cluster", "--name", CLUSTER]
INSPECT = ["docker", "inspect", "--format", "{{.Id}}", f"{CLUSTER}-control-plane"]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def runner():
    return FakeRunner().on(*INSPECT, stdout="cp-id-1\n")


def make(runner, said=None) -> kind.KindBackend:
    return kind.KindBackend("t1", runner=runner, edge_port=PORT, progress=(said.append if said is not None else lambda m: None))


def marker(state_home, **extra):
    path = state_home / "kind" / f"{CLUSTER}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cluster": CLUSTER, "edge_port": PORT, "nodes": 3, **extra}))
    return path


# ---- up ----------------------------------------------------------------------------------------------


def test_up_creates_the_cluster_installs_the_edge_and_waits(runner, state_home):
    make(runner).up(nodes=3)
    assert runner.argvs == [
        ["kind", "get", "clusters"],
        CREATE,
        INSPECT,
        KUBECTL + ["apply", "-f", "-"],  # the owner record (kindclean.owner_record)
        KUBECTL + ["wait", "--for=condition=Ready", "node", "--all", "--timeout=180s"],
        ["docker", "exec", f"{CLUSTER}-control-plane", "sh", "-c", kind.MISSING_IMAGES, "sh", *edge.IMAGES],
        KUBECTL + ["apply", "-f", "-"],
        KUBECTL + ["-n", "meshlab-system", "rollout", "status", "deployment/edge", "--timeout=240s"],
    ]
    state = json.loads((state_home / "kind" / f"{CLUSTER}.json").read_text())
    assert state == {"cluster": CLUSTER, "context": CTX, "edge_port": PORT, "nodes": 3, "control_plane_id": "cp-id-1"}


def test_cluster_config_maps_the_edge_port_and_labels_every_node(runner):
    make(runner).up(nodes=3)
    config = yaml.safe_load(runner.inputs("create", "cluster")[0])
    assert (config["kind"], config["apiVersion"], config["name"]) == ("Cluster", "kind.x-k8s.io/v1alpha4", CLUSTER)
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert all(n["labels"]["meshlab.io/owned"] == "true" for n in config["nodes"])
    control_plane = config["nodes"][0]
    assert control_plane["labels"]["meshlab.io/edge"] == "true"
    assert control_plane["extraPortMappings"] == [{"containerPort": 80, "hostPort": PORT, "listenAddress": "127.0.0.1",
                                                   "protocol": "TCP"}]
    assert [n["role"] for n in kind.cluster_config(CLUSTER, 1, PORT)["nodes"]] == ["control-plane"]


def test_edge_objects_applied_on_kind_are_valid_and_bind_host_port_80(runner):
    make(runner).up(nodes=2)
    docs = list(yaml.safe_load_all(runner.inputs("apply")[-1]))
    manifests.validate(docs, "kind edge")
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "meshlab-system", "labels": {"app.kubernetes.io/name": "meshlab-edge", "app.kubernetes.io/managed-by": "meshlab"}}}
    assert docs == edge.documents("meshlab-system", "default", 80, with_namespace=True)  # serves the lab's namespace
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    envoy = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "envoy")
    assert envoy["ports"][0] == {"name": "http", "containerPort": 8080, "hostPort": 80}


def test_a_failed_up_deletes_the_cluster_it_made(runner, state_home):
    runner.on("wait", "--for=condition=Ready", stderr="error: timed out waiting for the condition", rc=1)
    with pytest.raises(MeshlabError, match="nodes did not become Ready"):
        make(runner).up()
    assert runner.argvs[-1] == DELETE
    assert not (state_home / "kind" / f"{CLUSTER}.json").exists()


@pytest.mark.parametrize("step", [CREATE, ["rollout", "status"]])
def test_ctrl_c_mid_deploy_deletes_the_cluster(runner, step):
    runner.on(*step, raises=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        make(runner).up()
    assert runner.argvs[-1] == DELETE


def test_a_failed_create_cleans_up_unless_the_name_was_taken(runner, state_home):
    runner.on(*CREATE, stderr="ERROR: failed to create cluster: could not pull image", rc=1)
    with pytest.raises(MeshlabError, match="could not pull image"):
        make(runner).up()
    assert runner.argvs[-1] == DELETE
    taken = FakeRunner().on(*CREATE, stderr='ERROR: failed to create cluster: node(s) already exist for a cluster with the name "meshlab-t1"', rc=1)
    with pytest.raises(MeshlabError, match="already exist"):
        make(taken).up()
    assert DELETE not in taken.argvs and not (state_home / "kind" / f"{CLUSTER}.json").exists()


def test_up_refuses_a_same_named_cluster_meshlab_did_not_make(runner):
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\nother\n")
    runner.on("get", "nodes", "-l", stdout="")
    with pytest.raises(MeshlabError, match="meshlab did not create"):
        make(runner).up()
    assert CREATE not in runner.argvs and DELETE not in runner.argvs


def test_up_reuses_its_own_cluster(runner, state_home):
    marker(state_home, control_plane_id="cp-id-1")
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    make(runner).up(nodes=2)
    assert CREATE not in runner.argvs and runner.argvs[-1][-3:] == ["status", "deployment/edge", "--timeout=240s"]


def test_a_smaller_stage_reuses_a_bigger_cluster(runner, state_home, monkeypatch):
    from meshlab import settle, stages
    from meshlab.lab import Lab

    monkeypatch.setattr(settle, "settle", lambda lab: True)
    marker(state_home, control_plane_id="cp-id-1", nodes=stages.nodes_for(3, "kind"))  # stage 3's four nodes
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    said = []
    Lab("t1", backend="kind", runner=runner, edge_port=PORT, progress=said.append).up(stage=1, quiet=True)
    assert CREATE not in runner.argvs and DELETE not in runner.argvs
    assert "[kind] reusing kind cluster meshlab-t1" in said
    assert json.loads((state_home / "kind" / f"{CLUSTER}.json").read_text())["nodes"] == 4


def test_up_creates_a_too_small_cluster_again_in_the_new_shape(runner, state_home):
    marker(state_home, control_plane_id="cp-id-1")  # 3 nodes
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    said = []
    make(runner, said).up(nodes=4)
    assert runner.argvs.index(DELETE) < runner.argvs.index(CREATE)
    assert [n["role"] for n in yaml.safe_load(runner.inputs("create", "cluster")[0])["nodes"]] == \
        ["control-plane", "worker", "worker", "worker"]
    assert "has 3 node(s), this stage needs 4: creating it again" in said[0]
    assert json.loads((state_home / "kind" / f"{CLUSTER}.json").read_text())["nodes"] == 4


def test_up_rejects_what_it_cannot_do(runner):
    with pytest.raises(MeshlabError, match="one cluster per lab"):
        make(runner).up(clusters=2)
    with pytest.raises(MeshlabError, match="lab name"):
        kind.KindBackend("Bad Name", runner=runner)


# ---- down --------------------------------------------------------------------------------------------


def test_down_deletes_a_cluster_it_made(runner, state_home):
    marker(state_home, control_plane_id="cp-id-1")
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    make(runner).down()
    assert runner.argvs == [["kind", "get", "clusters"], INSPECT, DELETE]
    assert not (state_home / "kind" / f"{CLUSTER}.json").exists()


@pytest.mark.parametrize("recorded", [None, "cp-id-OTHER"])
def test_down_never_deletes_a_cluster_it_did_not_make(runner, state_home, recorded):
    if recorded:
        marker(state_home, control_plane_id=recorded)
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    said = []
    make(runner, said).down()
    assert DELETE not in runner.argvs and "not deleting" in said[-1]


def test_down_checks_the_node_label_before_the_id_is_recorded(runner, state_home):
    marker(state_home)
    runner.on("kind", "get", "clusters", stdout="meshlab-t1\n")
    runner.on("get", "nodes", "-l", "meshlab.io/owned=true", stdout="node/meshlab-t1-control-plane\n")
    make(runner).down()
    assert KUBECTL + ["get", "nodes", "-l", "meshlab.io/owned=true", "-o", "name"] in runner.argvs
    assert runner.argvs[-1] == DELETE


def test_down_is_idempotent(runner, state_home):
    marker(state_home, control_plane_id="cp-id-1")
    make(runner).down()
    assert runner.argvs == [["kind", "get", "clusters"]]
    assert not (state_home / "kind" / f"{CLUSTER}.json").exists()


# ---- views, traffic entry ----------------------------------------------------------------------------


def test_pods_are_listed_cluster_wide_without_system_namespaces(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS))
    backend = make(runner)
    assert [p.name for p in backend.pods()] == ["frontend-v1-aaa", "reviews-v2-bbb", "router-ccc", "edge-ddd"]
    assert KUBECTL + ["get", "pods", "-o", "json", "-A"] in runner.argvs
    assert [(p.name, p.role, p.cluster) for p in backend.proxies()][-1] == ("edge-ddd", "edge", CLUSTER)


def test_stopped_node_containers_are_not_ready(runner):
    node = {"metadata": {"name": "meshlab-t1-worker"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    runner.on("get", "nodes", stdout=items(node)).on("docker", "ps", stdout="meshlab-t1-worker\n")
    assert [(n.name, n.ready) for n in make(runner).nodes()] == [("meshlab-t1-worker", False)]


def test_entrypoint_is_the_mapped_edge_port_once_there_is_an_ingress(runner, state_home, monkeypatch):
    marker(state_home)
    runner.on("get", "ingresses", stdout=items({"kind": "Ingress", "metadata": {"name": "shop"}, "spec": {"ingressClassName": "edge"}}))
    assert make(runner).entrypoint() == f"http://127.0.0.1:{PORT}"
    assert KUBECTL + ["-n", "default", "get", "ingresses", "-o", "json"] in runner.argvs
    monkeypatch.setattr(cluster, "free_port", lambda: 41001)
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: wait > 0)
    runner.on("get", "ingresses", stdout=items()).on("get", "service", "frontend", stdout='{"spec": {"ports": [{"port": 9080}]}}')
    assert make(runner).entrypoint() == "http://127.0.0.1:41001"
    assert runner.spawned == [KUBECTL + ["-n", "default", "port-forward", "--address", "127.0.0.1", "service/frontend", "41001:9080"]]


def test_apply_lets_each_object_choose_its_namespace(runner):
    docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}]
    assert make(runner).apply(docs) == ["ConfigMap/c"]
    # (a `kubectl get` first looks for the pods that mount the ConfigMap: configreload.py)
    assert [a for a in runner.argvs if "get" not in a] == [KUBECTL + ["apply", "-f", "-"]]


# ---- faults and logs ---------------------------------------------------------------------------------

WORKER_POD = pod("ratings-v1-eee", node="meshlab-t1-worker", labels={"app": "ratings", "version": "v1"})


def test_kill_node_stops_its_container_and_restore_starts_it(runner, state_home):
    marker(state_home)
    runner.on("kind", "get", "nodes", stdout="meshlab-t1-control-plane\nmeshlab-t1-worker\n")
    runner.on("get", "pods", stdout=items(SHOP_PODS[0], WORKER_POD))
    backend = make(runner)
    assert backend.kill(node="meshlab-t1-worker") == ["ratings-v1-eee"]
    assert runner.argvs[-3:-1] == [KUBECTL + ["cordon", "meshlab-t1-worker"], ["docker", "stop", "meshlab-t1-worker"]]
    assert runner.argvs[-1][:8] == KUBECTL + ["-n", "default", "delete", "pod", "ratings-v1-eee"]  # test_kind_faults.py
    with pytest.raises(MeshlabError, match="refusing to stop meshlab-t1-control-plane"):
        backend.kill(node="meshlab-t1-control-plane")
    with pytest.raises(MeshlabError, match="no node nope"):
        backend.kill(node="nope")
    runner.on("docker", "ps", stdout="meshlab-t1-worker\n")
    backend.restore()
    assert ["docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster=meshlab-t1", "--filter", "status=exited",
            "--format", "{{.Names}}"] in runner.argvs
    started = runner.argvs.index(["docker", "start", "meshlab-t1-worker"])
    assert runner.argvs[started + 1:started + 3] == [
        KUBECTL + ["uncordon", "meshlab-t1-worker"],
        KUBECTL + ["wait", "--for=condition=Ready", "node/meshlab-t1-worker", "--timeout=180s"]]


def test_kill_proxy_freezes_it_from_the_node_until_restore(runner, state_home):
    marker(state_home)
    runner.on("get", "pods", stdout=items(*SHOP_PODS))
    runner.on("crictl", "inspect", stdout=json.dumps({"status": {}, "info": {"pid": 3141}}))
    backend = make(runner)
    assert backend.kill(proxy="edge") == ["edge-ddd/envoy"]  # the edge's Envoy, not its controller
    rule = ["-d", "10.244.1.5", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
            "--reject-with", "tcp-reset"]  # connections fail at once, as to a dead process
    assert runner.argvs[-3:] == [["docker", "exec", "node-cp", "crictl", "inspect", "id-edge-ddd-envoy"],
                                 ["docker", "exec", "node-cp", "kill", "-STOP", "3141"],
                                 ["docker", "exec", "node-cp", "iptables", "-I", "FORWARD", "1", *rule]]
    assert [p.state for p in backend.proxies() if p.role == "edge"] == ["killed"]
    assert not next(p for p in backend.pods() if p.name == "edge-ddd").ready
    backend.restore()
    thaw = runner.argvs.index(["docker", "exec", "node-cp", "kill", "-CONT", "3141"])
    assert runner.argvs[thaw + 1] == ["docker", "exec", "node-cp", "iptables", "-D", "FORWARD", *rule]
    assert [p.state for p in backend.proxies() if p.role == "edge"] == ["running"]
    with pytest.raises(MeshlabError, match="no proxy gateway"):
        backend.kill(proxy="gateway")


def test_kill_pod_force_deletes_it(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS))
    assert make(runner).kill(pod="reviews-v2-bbb") == ["reviews-v2-bbb"]
    assert runner.argvs[-1] == KUBECTL + ["-n", "default", "delete", "pod", "reviews-v2-bbb", "--grace-period=0",
                                          "--force", "--wait=false"]


def test_inject_one_pod(runner):
    runner.on("get", "pods", stdout=items(*SHOP_PODS))
    assert make(runner).inject("frontend", latency_ms=300, pod="frontend-v1-aaa") == ["frontend-v1-aaa"]
    argv, body = runner.calls[-1]
    assert argv[:10] == KUBECTL + ["-n", "default", "exec", "-i", "frontend-v1-aaa", "-c", "app"]
    assert argv[-2:] == ["http://127.0.0.1:9080/_meshlab/fault", "POST"]
    assert json.loads(body) == {"error_rate": 0.0, "latency_ms": 300}


def test_logs_export_kind_logs_then_every_container(runner, tmp_path):
    runner.on("get", "pods", stdout=items(SHOP_PODS[0])).on("logs", stdout="serving\n")
    out = make(runner).logs(tmp_path / "out")
    assert runner.argvs[0] == ["kind", "export", "logs", str(tmp_path / "out" / "kind"), "--name", CLUSTER]
    assert (out / "pods" / "default" / "frontend-v1-aaa" / "app.log").read_text() == "serving\n"


# ---- availability ------------------------------------------------------------------------------------


def test_availability_names_each_missing_tool_with_a_hint(runner, monkeypatch):
    monkeypatch.setattr(cluster.platform, "system", lambda: "Darwin")
    found = kind.KindBackend.availability(runner=runner, which=lambda tool: None if tool == "kind" else f"/usr/bin/{tool}")
    assert not found.ok and found.missing == ["kind"] and found.hints == ["install kind: `brew install kind`"]
    assert found.present == ["docker", "kubectl", "docker engine"]
    assert ["docker", "info", "--format", "{{.ServerVersion}}"] in runner.argvs


def test_availability_needs_a_running_docker_engine(runner, monkeypatch):
    monkeypatch.setattr(cluster.platform, "system", lambda: "Linux")
    runner.on("docker", "info", stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock", rc=1)
    found = kind.KindBackend.availability(runner=runner, which=lambda tool: f"/usr/bin/{tool}")
    assert not found.ok and found.missing == ["docker engine (not running or not reachable)"]
    assert "systemctl start docker" in found.hints[0]
    nothing = kind.KindBackend.availability(runner=FakeRunner(), which=lambda tool: None)
    assert nothing.missing == ["docker", "kind", "kubectl"] and len(nothing.hints) == 3
    monkeypatch.setattr(cluster.platform, "system", lambda: "Windows")
    assert "winget" in kind.KindBackend.availability(runner=FakeRunner(), which=lambda tool: None).hints[1]


# ---- stage 5: Istio's sidecars and control plane, rollout restart -------------------------------------


def test_kill_an_istio_sidecar_freezes_pilot_agent_and_envoy_and_cuts_every_pod_port(runner, state_home):
    from istio_samples import injected

    marker(state_home)
    reviews = injected("reviews-v2-abc", "reviews", "v2", node="meshlab-t1-worker", ip="10.244.1.7")
    runner.on("get", "pods", stdout=items(reviews))
    runner.on("crictl", "inspect", stdout=json.dumps({"info": {"pid": 4100}}))
    runner.on("docker", "exec", "meshlab-t1-worker", "sh", "-c", stdout="1 0\n4100 4000\n4120 4100\n4121 4120\n4200 1\n")
    backend = make(runner)
    assert backend.kill(proxy="reviews-v2-abc/istio-proxy") == ["reviews-v2-abc/istio-proxy"]
    node = ["docker", "exec", "meshlab-t1-worker"]
    rules = [["-d", "10.244.1.7", "-p", "tcp", "--dport", str(port), "-j", "REJECT", "--reject-with", "tcp-reset"]
             for port in (9080, 15090)]  # the app's port too: the sidecar intercepts it
    assert runner.argvs[-5:] == [node + ["crictl", "inspect", "id-reviews-v2-abc-istio-proxy"],
                                 node + ["sh", "-c", kindfaults.PROCESS_TABLE],
                                 node + ["kill", "-STOP", "4100", "4120", "4121"],
                                 node + ["iptables", "-I", "FORWARD", "1", *rules[0]],
                                 node + ["iptables", "-I", "FORWARD", "1", *rules[1]]]
    assert [p.state for p in backend.proxies()] == ["killed"]
    backend.restore()
    assert node + ["kill", "-CONT", "4100", "4120", "4121"] in runner.argvs
    assert node + ["iptables", "-D", "FORWARD", *rules[1]] in runner.argvs


def test_the_process_table_script_lists_pid_and_parent():
    import os
    import subprocess

    out = subprocess.run(["sh", "-c", kindfaults.PROCESS_TABLE], capture_output=True, text=True, check=True).stdout
    table = dict(line.split() for line in out.splitlines())
    assert table[str(os.getpid())] == str(os.getppid())
    assert kindfaults.descendants("1 0\n10 1\n11 10\n12 11\n20 1\n", 10) == [11, 12]


@pytest.mark.parametrize("name", ["istiod", "control-plane"])
def test_kill_the_control_plane_scales_it_to_zero_until_restore(runner, state_home, name):
    from istio_samples import istiod

    marker(state_home)
    runner.on("get", "pods", stdout=items(istiod(), SHOP_PODS[0]))
    runner.on("get", "deployment", "istiod", "-o", "jsonpath={.spec.replicas}", stdout="1")
    backend = make(runner)
    assert backend.kill(pod=name) == ["istiod-5d8f7c9b4-q7x2m"]
    assert runner.argvs[-1] == KUBECTL + ["-n", "istio-system", "scale", "deployment/istiod", "--replicas=0"]
    assert not [a for a in runner.argvs if "delete" in a]
    backend.restore()
    scale = runner.argvs.index(KUBECTL + ["-n", "istio-system", "scale", "deployment/istiod", "--replicas=1"])
    assert runner.argvs[scale + 1][-3:] == ["status", "deployment/istiod", "--timeout=180s"]
    assert json.loads((state_home / "kind" / f"{CLUSTER}.json").read_text())["scaled"] == []


def test_restart_rolls_a_deployment_and_returns_its_new_ready_pods(runner):
    from istio_samples import deployment, injected

    old = injected("reviews-v2-old", "reviews", "v2")
    old["metadata"]["deletionTimestamp"] = "2026-07-20T10:00:00Z"
    runner.on("get", "deployment", "reviews-v2", stdout=deployment("reviews-v2", "default", "python:3.12-slim"))
    runner.on("get", "pods", "-l", stdout=items(old, injected("reviews-v2-new", "reviews", "v2")))
    assert make(runner).restart("deployment/reviews-v2", timeout=45) == ["reviews-v2-new"]
    assert runner.argvs == [KUBECTL + ["-n", "default", "rollout", "restart", "deployment/reviews-v2"],
                            KUBECTL + ["-n", "default", "rollout", "status", "deployment/reviews-v2", "--timeout=45s"],
                            KUBECTL + ["-n", "default", "get", "deployment", "reviews-v2", "-o", "json"],
                            KUBECTL + ["-n", "default", "get", "pods", "-o", "json", "-l", "app=reviews,version=v2"]]
    with pytest.raises(MeshlabError, match="give deployment/NAME"):
        make(runner).restart("reviews-v2")


def test_restart_reports_a_rollout_that_does_not_finish(runner):
    runner.on("rollout", "status", stderr="error: timed out waiting for the condition", rc=1)
    with pytest.raises(MeshlabError, match="deployment/ratings-v1 did not roll out in 60s"):
        make(runner).restart("deployment/ratings-v1")


def test_kind_capabilities():
    assert {"restart", "mesh", "watch", "proxy-status", "kill-node", "hold-proxy"} <= make(FakeRunner()).capabilities()
