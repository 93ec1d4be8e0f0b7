"""Stage 5's runtime on the local backend, for real: a namespace labelled for injection gives its pods an
istio-proxy that stays unready without a control plane, the watch API long-polls, a rollout restart keeps
every request succeeding, and (once the control-plane program exists) install_mesh() makes the sidecar ready."""

from __future__ import annotations

import importlib.util
import threading
import time
import urllib.request

import pytest

from meshlab.backends.local import LocalBackend
from meshlab.stages import shop
import waiting

pytestmark = pytest.mark.integration
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HAS_CONTROL_PLANE = importlib.util.find_spec("meshlab.controlplane.__main__") is not None


def namespace(name: str, inject: bool) -> dict:
    labels = {"istio-injection": "enabled"} if inject else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def app_objects(ns: str, service: str = "reviews") -> list[dict]:
    return [shop.app_configmap(ns), shop.service(service, ns),
            shop.deployment(service, "v1", 1, [shop.app_container(service, "v1", [])], [dict(shop.APP_VOLUME)], ns)]


def pods_of(backend, ns: str) -> list[dict]:
    return [p for p in backend.status()["pods"] if p["namespace"] == ns]


def wait_for(what, predicate, timeout: float = 30.0):
    return waiting.wait_for(what, predicate, timeout, interval=0.1)


def cluster_url(backend, ns: str, name: str) -> str:
    (svc,) = [s for s in backend.status()["services"] if (s["namespace"], s["name"]) == (ns, name)]
    return f"http://{svc['cluster_ip']}:{shop.APP_PORT}/"


class Load:
    """Background requests to one URL, counting failures."""

    def __init__(self, url: str):
        self.url, self.ok, self.failed = url, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                NO_PROXY.open(self.url, timeout=5).read()
                self.ok += 1
            except OSError as exc:
                self.failed.append(str(exc))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def backend():
    lab = LocalBackend("meshrt")
    try:
        lab.up(nodes=2)
        yield lab
    finally:
        lab.down()


CREATED = {}
FIRST_FETCH_TIMEOUT = 15.0  # Envoy's default initial_fetch_timeout: the injected bootstrap must not let it expire into "ready"


def test_an_injected_pod_has_an_unready_sidecar_without_a_control_plane(backend):
    start = backend.watch(0, 0)["revision"]
    backend.apply([namespace("mesh", True)] + app_objects("mesh"), "mesh.yaml")
    CREATED["mesh"] = time.monotonic()
    (pod,) = wait_for("the app container running", lambda: [
        p for p in pods_of(backend, "mesh") if p["containers"][0]["state"] == "running"])
    assert [c["name"] for c in pod["containers"]] == ["app", "istio-proxy"]
    time.sleep(3)  # plenty of time for a sidecar with config to get ready
    (pod,) = pods_of(backend, "mesh")
    assert not pod["ready"] and pod["containers"][1]["state"] == "running"
    state = backend.watch(start, 5)
    assert state["revision"] > start
    (entry,) = [p for p in state["pods"] if p["namespace"] == "mesh"]
    assert entry["injected"] and not entry["ready"] and entry["ports"] == {"http": 9080}
    assert "sidecar.istio.io/status" in entry["annotations"]
    assert {"Namespace", "Service"} <= {o["kind"] for o in state["objects"] if o["metadata"].get("namespace") in
                                        (None, "mesh")}
    deployment = backend.objects("Deployment")
    assert all(len(d["spec"]["template"]["spec"]["containers"]) == 1 for d in deployment)  # the pod, not the Deployment


def test_watch_waits_for_a_change_or_its_timeout(backend):
    now = backend.watch(0, 0)["revision"]
    started = time.monotonic()
    assert backend.watch(now, 0.5)["revision"] == now
    assert 0.4 < time.monotonic() - started < 3
    assert backend.status()["revision"] == now


def test_a_rollout_restart_serves_every_request(backend):
    backend.apply([namespace("plain", False)] + app_objects("plain", "ratings"), "plain.yaml")
    wait_for("ratings ready", lambda: [p for p in pods_of(backend, "plain") if p["ready"]])
    (old,) = [p["name"] for p in pods_of(backend, "plain")]
    with Load(cluster_url(backend, "plain", "ratings")) as load:
        time.sleep(0.5)
        (new,) = backend.restart("plain/deployment/ratings-v1", timeout=30)
        time.sleep(2.5)  # past the old pod's grace period
    assert new != old and load.ok > 20 and not load.failed, load.failed[:3]
    assert [p["name"] for p in pods_of(backend, "plain")] == [new]


@pytest.mark.skipif(not HAS_CONTROL_PLANE, reason="the control-plane program (meshlab.controlplane) is not there yet")
def test_with_the_control_plane_the_sidecar_gets_ready_and_serves_through_port_15006(backend):
    time.sleep(max(0.0, CREATED["mesh"] + FIRST_FETCH_TIMEOUT + 1 - time.monotonic()))
    assert not any(p["ready"] for p in pods_of(backend, "mesh"))  # still waiting for its first config
    backend.install_mesh()
    wait_for("the injected pod ready", lambda: all(p["ready"] for p in pods_of(backend, "mesh")), timeout=30)
    (svc,) = [s for s in backend.status()["services"] if (s["namespace"], s["name"]) == ("mesh", "reviews")]
    assert svc["endpoints"][0].endswith(":15006")
    body = NO_PROXY.open(cluster_url(backend, "mesh", "reviews"), timeout=5).read()
    assert b'"reviews"' in body


@pytest.mark.skipif(not HAS_CONTROL_PLANE, reason="the control-plane program (meshlab.controlplane) is not there yet")
def test_a_service_joins_the_mesh_under_load_without_a_failed_request(backend):
    backend.apply([namespace("plain", True)], "label.yaml")  # brownfield: label, then restart
    with Load(cluster_url(backend, "plain", "ratings")) as load:
        (new,) = backend.restart("plain/deployment/ratings-v1", timeout=30)
        time.sleep(2.5)
    (pod,) = pods_of(backend, "plain")
    assert pod["name"] == new and [c["name"] for c in pod["containers"]] == ["app", "istio-proxy"]
    assert load.ok > 20 and not load.failed, load.failed[:3]
    (svc,) = [s for s in backend.status()["services"] if (s["namespace"], s["name"]) == ("plain", "ratings")]
    assert svc["endpoints"] == [f"{pod['ip']}:15006"]
