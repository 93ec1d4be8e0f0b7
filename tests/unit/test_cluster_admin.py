"""Proxies' admin APIs on kind and kube (a lazily started port-forward per pod, behind a loopback gateway), and the
CLI's detached port-forwards; kubectl is a fake runner, the "forward" a local stub of Envoy's admin API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshlab import cli
from meshlab.backends import cluster, edge, kind, kube, kubectl
from meshlab.envoy.admin import Admin
from meshlab.stages import envoyconf
from fakerunner import FakeRunner

ENVOY = envoyconf.ENVOY_IMAGE
KUBECTL = ["kubectl", "--context", "kind-meshlab-t1"]
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StubAdmin:
    """Stands in for the local end of `kubectl port-forward` to an Envoy admin: records requests, answers JSON."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append((self.command, self.path, body))
                data = json.dumps({"stats": [{"name": "server.live", "value": 1}]}).encode()
                self.send_response(503 if self.path == "/ready" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def pod(name, containers, namespace="default", labels=None, volumes=None):
    """A running Pod object as `kubectl get pods -o json` lists it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"nodeName": "w1", "containers": containers, **({"volumes": volumes} if volumes else {})},
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                       "containerStatuses": [{"name": c["name"], "state": {"running": {}}, "restartCount": 0,
                                              "containerID": f"containerd://{name}"} for c in containers],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


ROUTER = pod("router-ccc", [envoyconf.envoy_container([{"containerPort": 8080, "name": "http"}])],
             labels={"meshlab.io/proxy-role": "router"})
SIDECAR = pod("reviews-v2-bbb", [{"name": "app", "image": "python:3.12-slim", "ports": [{"containerPort": 9080}]},
                                 envoyconf.envoy_container([{"containerPort": 15006, "name": "inbound"}])],
              labels={"app": "reviews"})
ISTIO = pod("ratings-v1-ddd", [{"name": "app", "image": "python:3.12-slim", "ports": [{"containerPort": 9080}]},
                               {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}], labels={"app": "ratings"})
EDGE = pod("edge-eee", edge.deployment("meshlab-system", "default", 80)["spec"]["template"]["spec"]["containers"],
           namespace="meshlab-system", labels=dict(edge.POD_LABELS))  # the controller and the edge's Envoy


def items(*objects) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))


@pytest.fixture
def stub():
    admin = StubAdmin()
    yield admin
    admin.close()


@pytest.fixture
def stopped(monkeypatch):
    """pids the backend stopped (stop_process is real code for real kubectl pids; here the pids are made up)."""
    pids: list[int] = []
    monkeypatch.setattr(cluster, "stop_process", pids.append)
    return pids


def kind_backend(runner, **options) -> kind.KindBackend:
    backend = kind.KindBackend("t1", runner=runner, edge_port=40000, progress=lambda m: None, **options)
    return backend


@pytest.fixture
def lab(stub, stopped, monkeypatch):
    """A kind backend whose pods are a router, a sidecar pod, an Istio sidecar and the Envoy edge; every new
    port-forward 'listens' where the stub admin does."""
    monkeypatch.setattr(cluster, "free_port", lambda: stub.port)
    runner = FakeRunner().on("get", "pods", stdout=items(ROUTER, SIDECAR, ISTIO, EDGE))
    backend = kind_backend(runner)
    yield backend
    backend.admin.close()


# ---- admin ports ------------------------------------------------------------------------------------


def test_admin_port_of_each_kind_of_proxy():
    assert kubectl.admin_port(ROUTER) == envoyconf.ADMIN_PORT == 15000  # the container port named envoy-admin
    assert kubectl.admin_port(ISTIO) == 15000  # Istio's sidecar admin
    assert kubectl.admin_port(EDGE) == 15000  # the edge's Envoy (its port envoy-admin), not its controller
    assert kubectl.admin_port(pod("plain", [{"name": "app", "image": "python:3.12-slim"}])) is None
    custom = pod("own", [{"name": "envoy", "image": ENVOY, "ports": [{"name": "my-admin", "containerPort": 9901}]}],
                 labels={"meshlab.io/proxy-role": "gateway"})
    assert kubectl.admin_port(custom) == 9901


def test_stage_envoys_bind_their_admin_on_loopback_and_probe_a_readiness_listener():
    from meshlab.backends.local import ingress
    from meshlab.stages import router

    boot = envoyconf.bootstrap("x")
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15000}
    assert ingress.bootstrap()["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    ready = boot["static_resources"]["listeners"][0]
    assert ready["address"]["socket_address"]["port_value"] == envoyconf.READY_PORT
    container = router.deployment()["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": envoyconf.READY_PORT}


def test_kind_and_kube_offer_the_admin_capability():
    assert "admin" in kind_backend(FakeRunner()).capabilities()
    assert "admin" in kube.KubeBackend("t1", learner="ann", context="c", runner=FakeRunner(),
                                       progress=lambda m: None).capabilities()


# ---- lazily started, reused, recorded, stopped --------------------------------------------------------


def test_listing_proxies_starts_no_port_forward_and_every_envoy_gets_an_admin_url(lab):
    first, again = lab.proxies(), lab.proxies()
    assert lab.runner.spawned == []
    urls = {p.name: p.admin_url for p in first}
    gateway = lab.admin.serve()
    assert urls == {"router-ccc": f"http://127.0.0.1:{gateway}/default/router-ccc",
                    "reviews-v2-bbb/envoy": f"http://127.0.0.1:{gateway}/default/reviews-v2-bbb",
                    "ratings-v1-ddd/istio-proxy": f"http://127.0.0.1:{gateway}/default/ratings-v1-ddd",
                    "edge-eee": f"http://127.0.0.1:{gateway}/meshlab-system/edge-eee"}
    assert {p.name: p.admin_url for p in again} == urls
    assert "admin_forwards" not in lab.state.read()


def test_the_first_admin_call_starts_one_forward_that_later_calls_reuse(lab, stub):
    router = next(p for p in lab.proxies() if p.role == "router")
    assert Admin(router.admin_url).stats() == {"server.live": 1}
    assert lab.runner.spawned == [(KUBECTL + ["-n", "default", "port-forward", "--address", "127.0.0.1",
                                              "pod/router-ccc", f"{stub.port}:15000"], False)]
    assert lab.state.read()["admin_forwards"] == {"default/router-ccc": {"pid": 4243, "port": stub.port}}
    # reused: by this listing's URL, by a new listing's, and for a POST with a body
    Admin(router.admin_url).config_dump()
    again = next(p for p in lab.proxies() if p.role == "router")
    request = urllib.request.Request(again.admin_url + "/runtime_modify?x=1", data=b"k=v", method="POST")
    assert DIRECT.open(request, timeout=5).status == 200
    assert len(lab.runner.spawned) == 1
    assert stub.requests == [("GET", "/stats?format=json", b""), ("GET", "/config_dump", b""),
                             ("POST", "/runtime_modify?x=1", b"k=v")]
    # Envoy's own status comes through (a 503 /ready is Envoy's answer, not the gateway's)
    with pytest.raises(urllib.error.HTTPError) as caught:
        DIRECT.open(router.admin_url + "/ready", timeout=5)
    assert caught.value.code == 503


def test_a_new_process_reuses_a_recorded_forward_that_still_answers(lab, stub):
    lab.state.update(admin_forwards={"default/router-ccc": {"pid": 77, "port": stub.port}})
    router = next(p for p in lab.proxies() if p.role == "router")
    assert Admin(router.admin_url).stats() and lab.runner.spawned == []


def test_a_forward_found_dead_is_started_once_more(lab, stub, stopped, monkeypatch):
    dead = StubAdmin()
    dead.close()  # nothing listens on its port any more: kubectl port-forward has exited
    lab.state.update(admin_forwards={"default/router-ccc": {"pid": 77, "port": dead.port}})
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: port == stub.port)
    lab.admin.local[("default", "router-ccc")] = dead.port  # this process used it before
    router = next(p for p in lab.proxies() if p.role == "router")
    assert Admin(router.admin_url).stats() == {"server.live": 1}
    assert stopped == [77] and len(lab.runner.spawned) == 1
    assert lab.state.read()["admin_forwards"]["default/router-ccc"]["port"] == stub.port


def test_a_forward_that_cannot_start_is_a_502_naming_the_pod(lab, stopped, monkeypatch):
    monkeypatch.setattr(cluster, "forward_ready", lambda pid, port, wait: False)  # e.g. the pod is not running
    router = next(p for p in lab.proxies() if p.role == "router")
    with pytest.raises(urllib.error.HTTPError) as caught:
        DIRECT.open(router.admin_url + "/stats", timeout=5)
    assert caught.value.code == 502 and b"pod/router-ccc did not start" in caught.value.read()
    assert stopped == [4243] and lab.state.read()["admin_forwards"] == {}


def test_forwards_of_pods_that_are_gone_are_stopped_when_proxies_are_listed(lab, stopped):
    Admin(next(p for p in lab.proxies() if p.role == "router").admin_url).stats()
    lab.runner.on("get", "pods", stdout=items(SIDECAR, EDGE))  # the router's pod was replaced
    assert [p.name for p in lab.proxies()] == ["reviews-v2-bbb/envoy", "edge-eee"]
    assert stopped == [4243] and lab.state.read()["admin_forwards"] == {}


def test_down_stops_every_forward_and_the_gateway(lab, stopped, monkeypatch):
    url = next(p for p in lab.proxies() if p.role == "router").admin_url
    Admin(url).stats()
    lab.state.update(forwards={"default/frontend:9080": {"pid": 99, "port": 1}})
    lab.runner.on("kind", "get", "clusters", stdout="")  # the cluster is gone already: down only cleans up
    lab.down()
    assert sorted(stopped) == [99, 4243]
    with pytest.raises(urllib.error.URLError):
        DIRECT.open(url + "/stats", timeout=2)
    assert lab.admin.server is None


# ---- the CLI's port-forwards are detached ----------------------------------------------------------


def test_a_cli_lab_starts_detached_forwards_records_them_and_down_ends_them(stopped, monkeypatch):
    monkeypatch.setattr(cluster, "free_port", lambda: 41001)
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: wait > 0)
    runner = FakeRunner().on("get", "service", "frontend", stdout=json.dumps({"spec": {"ports": [{"port": 9080}]}}))
    backend = kind_backend(runner, detached=True)
    assert backend.entrypoint() == "http://127.0.0.1:41001"
    assert runner.spawned == [(KUBECTL + ["-n", "default", "port-forward", "--address", "127.0.0.1", "service/frontend",
                                          "41001:9080"], True)]
    assert backend.state.read()["forwards"] == {"default/frontend:9080": {"pid": 4243, "port": 41001, "detached": True}}
    # the next CLI command (a new backend, a new process) reuses it while it answers
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: True)
    assert kind_backend(runner, detached=True).entrypoint() == "http://127.0.0.1:41001" and len(runner.spawned) == 1
    runner.on("kind", "get", "clusters", stdout="")
    kind_backend(runner, detached=True).down()
    assert stopped == [4243]


def test_a_cli_lab_does_not_reuse_a_notebooks_forward_that_dies_with_its_kernel(stopped, monkeypatch):
    monkeypatch.setattr(cluster, "free_port", lambda: 41002)
    monkeypatch.setattr(cluster, "port_open", lambda port, wait=0.0: True)
    runner = FakeRunner()
    notebook = kind_backend(runner)
    notebook.state.update(forwards={"default/frontend:9080": {"pid": 50, "port": 41000}})
    assert notebook.forward("default", "frontend", 9080) == "http://127.0.0.1:41000" and runner.spawned == []
    assert kind_backend(runner, detached=True).forward("default", "frontend", 9080) == "http://127.0.0.1:41002"
    assert runner.spawned[0][1] is True


@pytest.mark.parametrize("argv, detached", [(["status", "--backend", "kind"], True), (["status", "--backend", "kube"], True),
                                            (["status", "--backend", "local"], None)])
def test_the_cli_asks_kind_and_kube_for_detached_forwards(argv, detached, monkeypatch):
    monkeypatch.setattr(kube, "current_context", lambda runner: "ctx")
    lab = cli._lab(cli.parser().parse_args(argv))
    assert getattr(lab.backend, "detached", None) is detached
    from meshlab.lab import Lab

    assert getattr(Lab("t1", backend=argv[-1]).backend, "detached", None) in (False, None)  # a notebook's lab


def test_runner_spawn_detaches_only_when_asked(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(kubectl.subprocess, "Popen", lambda argv, **kw: seen.append(kw) or type("P", (), {"pid": 1})())
    kubectl.Runner().spawn(["kubectl"], tmp_path / "log")
    kubectl.Runner().spawn(["kubectl"], tmp_path / "log", detached=True)
    assert seen[0]["start_new_session"] and seen[1]["start_new_session"]
    if sys.platform == "linux":
        assert seen[0]["preexec_fn"] is kubectl._die_with_parent
    assert "preexec_fn" not in seen[1]


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("detached", [False, True])
def test_a_spawned_helper_outlives_its_parent_only_when_detached(detached, tmp_path):
    """A real parent process spawns a sleeping child with Runner.spawn and exits; the child lives on only if detached."""
    parent = textwrap.dedent(f"""
        import sys
        from meshlab.backends.kubectl import Runner
        pid = Runner().spawn([sys.executable, "-c", "import time; time.sleep(30)", "port-forward"], {str(tmp_path / 'log')!r},
                             detached={detached})
        print(pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, check=True)
    child = int(out.stdout.split()[0])
    try:
        deadline = time.monotonic() + 5
        while cluster.forward_running(child) != detached and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cluster.forward_running(child) is detached
        if detached:
            assert os.getsid(child) == child  # its own session: a Ctrl-C in the terminal does not reach it
    finally:
        if cluster.forward_running(child):
            os.kill(child, 9)


def test_a_cli_lab_lists_the_direct_url_of_a_running_detached_admin_forward(stub, stopped, monkeypatch):
    """What `meshlab status` prints must work after the command exits: the pod's own forward, not the gateway."""
    monkeypatch.setattr(cluster, "free_port", lambda: stub.port)
    runner = FakeRunner().on("get", "pods", stdout=items(ROUTER, SIDECAR))
    backend = kind_backend(runner, detached=True)
    try:
        router = next(p for p in backend.proxies() if p.role == "router")
        assert router.admin_url.endswith("/default/router-ccc")  # no forward yet: the gateway starts one
        Admin(router.admin_url).stats()
        assert runner.spawned[0][1] is True
        assert backend.state.read()["admin_forwards"]["default/router-ccc"] == {"pid": 4243, "port": stub.port,
                                                                               "detached": True}
        monkeypatch.setattr(cluster, "forward_running", lambda pid: pid == 4243)
        later = kind_backend(runner, detached=True)  # the next CLI command
        urls = {p.name: p.admin_url for p in later.proxies()}
        assert urls["router-ccc"] == f"http://127.0.0.1:{stub.port}"
        assert Admin(urls["router-ccc"]).stats() == {"server.live": 1}
        assert urls["reviews-v2-bbb/envoy"].endswith("/default/reviews-v2-bbb")
        later.admin.close()
    finally:
        backend.admin.close()
