"""Stage 5 on Kubernetes without a cluster: installing or finding Istio, the trace EnvoyFilter, proxy-status,
Istio's sidecars and istiod in the views, faults and rollout restarts, all against a fake command runner."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest
from istio_samples import PROXY_STATUS_JSON, deployment, injected, istiod
from test_kube_backend import FakeRunner, items

from meshlab import doctor, manifests
from meshlab.app.app import parse_hop
from meshlab.backends import istio, kind, kube
from meshlab.backends.base import MeshlabError

CTX = "kind-meshlab-t1"
KUBECTL = ["kubectl", "--context", CTX]
ISTIOD = KUBECTL + ["-n", "istio-system", "get", "deployment", "istiod", "-o", "json"]
VERSION_ARGV = ["istioctl", "version", "--remote=false", "-o", "json"]
ROLLOUT_ISTIOD = KUBECTL + ["-n", "istio-system", "rollout", "status", "deployment/istiod", "--timeout=300s"]
REVIEWS, FRONTEND = injected("reviews-v2-7d4f9c8b5-abcde", "reviews", "v2"), injected("frontend-v1-6c9d8b7f4-fghij", "frontend", "v1")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def istioctl(version: str = istio.VERSION) -> FakeRunner:
    """A runner with istioctl of `version` on PATH and no Istio on the cluster yet."""
    runner = FakeRunner().on(*VERSION_ARGV, stdout=json.dumps({"clientVersion": {"version": version, "revision": "x"}}))
    return runner.on(*ISTIOD, stderr='Error from server (NotFound): deployments.apps "istiod" not found', rc=1)


def kind_backend(runner) -> kind.KindBackend:
    return kind.KindBackend("t1", runner=runner, edge_port=30123, progress=lambda m: None)


KUBE_NS = "meshlab-ann-shop"  # learner ann's namespace for lab shop, labelled for her
OWN = json.dumps({"meshlab.io/owned": "true", "meshlab.io/learner": "ann", "meshlab.io/lab": "shop"})


def kube_backend(runner, progress=lambda m: None) -> kube.KubeBackend:
    runner.on("get", "namespace", KUBE_NS, stdout=OWN)
    return kube.KubeBackend("shop", learner="ann", context="class", runner=runner, progress=progress)


# ---- the trace EnvoyFilter and the objects meshlab applies ---------------------------------------

ENVOY_FILTER_CONTEXTS = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
ENVOY_FILTER_APPLY_TO = {"LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
                         "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER"}
ENVOY_FILTER_OPERATIONS = {"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}
APPEND_ACTIONS = {"APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_envoy_filter(doc: dict) -> None:
    """The EnvoyFilter CRD's structure (networking.istio.io/v1alpha3), as Istio's schema and validation define it."""
    assert (doc["apiVersion"], doc["kind"]) == ("networking.istio.io/v1alpha3", "EnvoyFilter")
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert DNS_LABEL.match(doc["metadata"]["name"]) and DNS_LABEL.match(doc["metadata"]["namespace"])
    assert set(doc["spec"]) <= {"workloadSelector", "targetRefs", "configPatches", "priority"}
    for patch in doc["spec"]["configPatches"]:
        assert set(patch) == {"applyTo", "match", "patch"} and patch["applyTo"] in ENVOY_FILTER_APPLY_TO
        assert set(patch["match"]) <= {"context", "proxy", "listener", "routeConfiguration", "cluster"}
        assert patch["match"]["context"] in ENVOY_FILTER_CONTEXTS
        assert patch["patch"]["operation"] in ENVOY_FILTER_OPERATIONS
        if patch["applyTo"] == "ROUTE_CONFIGURATION":
            assert patch["patch"]["operation"] == "MERGE"  # the only operation Istio allows on route configs
        for header in patch["patch"]["value"]["request_headers_to_add"]:  # envoy.config.core.v3.HeaderValueOption
            assert set(header) == {"header", "append_action"} and header["append_action"] in APPEND_ACTIONS
            assert set(header["header"]) == {"key", "value"} and header["header"]["key"] == header["header"]["key"].lower()


def test_the_trace_filter_stamps_outbound_and_inbound_hops_in_the_root_namespace():
    doc = istio.trace_filter()
    check_envoy_filter(doc)
    assert doc["metadata"]["namespace"] == "mesh-system"
    hops = {p["match"]["context"]: p["patch"]["value"]["request_headers_to_add"][0]["header"]
            for p in doc["spec"]["configPatches"]}
    assert {h["key"] for h in hops.values()} == {"x-meshlab-trace"}
    filled = {ctx: parse_hop(h["value"].replace("%ENVIRONMENT(POD_NAME)%", "reviews-v2-abc")
                             .replace("%ENVIRONMENT(ISTIO_META_NODE_NAME)%", "meshlab-t1-worker")
                             .replace("%DOWNSTREAM_PEER_URI_SAN%", "spiffe://cluster.local/ns/default/sa/shop-frontend"))
              for ctx, h in hops.items()}
    base = {"kind": "proxy", "role": "sidecar", "name": "reviews-v2-abc", "node": "meshlab-t1-worker"}
    assert filled["SIDECAR_OUTBOUND"] == {**base, "dir": "out"}
    assert filled["SIDECAR_INBOUND"] == {**base, "dir": "in", "peer": "spiffe://cluster.local/ns/default/sa/shop-frontend"}
    check_envoy_filter(istio.trace_filter("meshlab-ann"))


def test_the_root_namespace_is_a_valid_namespace():
    kubernetes_validate.validate(istio.root_namespace(), manifests.KUBERNETES_VERSION, strict=True)
    manifests.validate([istio.root_namespace()], "istio")


# ---- kind: install -------------------------------------------------------------------------------


def test_install_mesh_on_kind_pulls_images_installs_istio_and_waits_for_istiod():
    runner = istioctl().on("kind", "get", "nodes", stdout="meshlab-t1-control-plane\nmeshlab-t1-worker\n")
    backend = kind_backend(runner)
    backend.install_mesh()
    install = ["istioctl", "install", "-y", "--context", CTX, "--set", "profile=minimal",
               "--set", "meshConfig.rootNamespace=mesh-system",
               "--set", "meshConfig.defaultConfig.holdApplicationUntilProxyStarts=true",
               "--set", "values.pilot.env.ENABLE_NATIVE_SIDECARS=false"]
    assert runner.argvs == [
        ["kind", "get", "nodes", "--name", "meshlab-t1"],
        ["docker", "exec", "meshlab-t1-worker", "sh", "-c", kind.MISSING_IMAGES, "sh", *istio.images()],
        ISTIOD, VERSION_ARGV, install, ROLLOUT_ISTIOD, KUBECTL + ["apply", "-f", "-"]]
    applied = manifests.load(runner.inputs("apply")[0])
    assert [d["kind"] for d in applied] == ["Namespace", "EnvoyFilter"]
    assert applied[1] == istio.trace_filter()
    assert backend.istio_found() == istio.IstioFound("istio-system", "", istio.VERSION)
    assert istio.images() == [f"docker.io/istio/pilot:{istio.VERSION}", f"docker.io/istio/proxyv2:{istio.VERSION}"]


def test_install_mesh_skips_istioctl_when_the_pinned_istio_is_there():
    runner = FakeRunner().on(*ISTIOD, stdout=deployment("istiod", "istio-system", f"docker.io/istio/pilot:{istio.VERSION}"))
    istio.install(runner, CTX, say=lambda m: None)
    assert runner.argvs == [ISTIOD, ROLLOUT_ISTIOD, KUBECTL + ["apply", "-f", "-"]]


@pytest.mark.parametrize("version, message", [(None, "needs istioctl"), ("1.24.2", "istioctl 1.24.2 is not Istio 1.30.x")])
def test_install_needs_the_pinned_istioctl(version, message):
    runner = istioctl(version or "")
    if version is None:
        runner.on(*VERSION_ARGV, stderr="sh: istioctl: not found", rc=127)
    with pytest.raises(MeshlabError, match=message) as caught:
        istio.install(runner, CTX, say=lambda m: None)
    assert f"ISTIO_VERSION={istio.VERSION}" in caught.value.hint
    assert not [a for a in runner.argvs if a[:2] == ["istioctl", "install"]]


def test_version_check_and_download_hints():
    assert istio.version_ok("1.30.0") and istio.version_ok(istio.VERSION) and not istio.version_ok("1.29.6")
    assert not istio.version_ok("")
    assert istio.release_asset("Linux", "aarch64").endswith(f"istioctl-{istio.VERSION}-linux-arm64.tar.gz")
    assert istio.release_asset("Darwin", "x86_64").endswith(f"istioctl-{istio.VERSION}-osx.tar.gz")
    assert istio.release_asset("Darwin", "arm64").endswith(f"istioctl-{istio.VERSION}-osx-arm64.tar.gz")
    assert istio.release_asset("Windows").endswith(f"istioctl-{istio.VERSION}-win.zip")
    assert istio.release_asset().startswith(f"https://github.com/istio/istio/releases/download/{istio.VERSION}/")


def test_doctor_reports_istioctl_without_requiring_it():
    missing = doctor.istioctl_lines(FakeRunner(), which=lambda tool: None)
    assert "not found (stages 0-4 do not need it)" in missing[0] and "downloadIstio" in missing[1]
    old = FakeRunner().on(*VERSION_ARGV, stdout='{"clientVersion": {"version": "1.22.1"}}')
    assert "istioctl 1.22.1 is not Istio" in doctor.istioctl_lines(old, which=lambda tool: "/usr/bin/istioctl")[0]
    good = doctor.istioctl_lines(istioctl(), which=lambda tool: "/usr/bin/istioctl")
    assert good == [f"     stage 5: istioctl {istio.VERSION} (pinned Istio {istio.VERSION})"]


def test_label_injection():
    runner = FakeRunner()
    kind_backend(runner).label_injection("default")
    assert runner.argvs == [KUBECTL + ["label", "namespace", "default", "istio-injection=enabled", "--overwrite"]]


# ---- kube: find ----------------------------------------------------------------------------------

KUBE = ["kubectl", "--context", "class"]


def test_install_mesh_on_kube_finds_istiod_and_stamps_traces_in_the_lab_namespace():
    runner = FakeRunner().on("get", "deployment", "istiod", stdout=deployment(
        "istiod", "istio-system", "docker.io/istio/pilot:1.30.1", labels={"istio.io/rev": "default"}))
    runner.on("get", "configmap", "istio", stdout="defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n"
                                                  "rootNamespace: istio-system\n")
    said = []
    backend = kube_backend(runner, said.append)
    backend.install_mesh()
    assert runner.argvs == [KUBE + ["get", "namespace", KUBE_NS, "-o", "jsonpath={.metadata.labels}"],
                            KUBE + ["-n", "istio-system", "get", "deployment", "istiod", "-o", "json"],
                            KUBE + ["-n", "istio-system", "get", "configmap", "istio", "-o", "jsonpath={.data.mesh}"],
                            KUBE + ["-n", KUBE_NS, "apply", "-f", "-"]]
    assert manifests.load(runner.inputs("apply")[0]) == [istio.trace_filter(KUBE_NS)]
    assert backend.istio_found() == istio.IstioFound("istio-system", "", "1.30.1")
    assert "root namespace is istio-system" in said[1]


def test_find_a_revision_only_install_and_label_the_namespace_for_it():
    runner = FakeRunner().on("get", "deployment", "istiod", stderr='Error from server (NotFound): not found', rc=1)
    runner.on("get", "deployments", "-A", "-l", "app=istiod", stdout=items(json.loads(deployment(
        "istiod", "istio-canary", "docker.io/istio/pilot:1.30.3", labels={"istio.io/rev": "canary"}))))
    backend = kube_backend(runner)
    backend.install_mesh()
    assert KUBE + ["get", "deployments", "-A", "-l", "app=istiod", "-o", "json"] in runner.argvs
    assert KUBE + ["label", "namespace", KUBE_NS, "istio.io/rev=canary", "--overwrite"] in runner.argvs
    assert backend.istio_found() == istio.IstioFound("istio-canary", "canary", "1.30.3")


def test_find_refuses_a_cluster_without_istio_in_one_line():
    runner = FakeRunner().on("get", "deployment", "istiod", stderr='Error from server (NotFound): not found', rc=1)
    with pytest.raises(MeshlabError) as caught:
        kube_backend(runner).install_mesh()
    assert str(caught.value).count("\n") == 0 and "no istiod was found" in caught.value.message
    assert "ask the cluster admin to install Istio" in caught.value.hint
    assert not [a for a in runner.argvs if "apply" in a]


# ---- proxy-status ----------------------------------------------------------------------------------


def test_proxy_status_json_is_parsed_into_the_syncz_shape():
    entries = istio.parse_proxy_status(PROXY_STATUS_JSON)
    assert [(e["pod"], e["namespace"]) for e in entries] == [
        ("frontend-v1-6c9d8b7f4-fghij", "default"), ("ratings-v1-5b6c7d8e9-klmno", "default"),
        ("reviews-v2-7d4f9c8b5-abcde", "default")]
    frontend, ratings, reviews = entries
    assert reviews["node_id"] == "sidecar~10.244.1.7~reviews-v2-7d4f9c8b5-abcde.default~default.svc.cluster.local"
    assert (reviews["connected"], reviews["version"], reviews["acked"], reviews["nacked"]) == \
        (True, "2026-07-20T10:11:09.907713Z", "2026-07-20T10:11:09.907713Z", "")
    assert frontend["acked"] == "" and frontend["types"]["ClusterLoadAssignment"] == "STALE"  # not ACKed yet
    assert ratings["nacked"] == ratings["version"] and "virtualInbound: bad filter" in ratings["nack_error"]
    assert ratings["types"]["RouteConfiguration"] == "NOT_SENT"
    assert {"node_id", "pod", "namespace", "connected", "version", "acked", "nacked"} <= set(reviews)
    assert istio.parse_proxy_status("") == []


def test_backend_proxy_status_runs_istioctl_for_its_namespace(state_home):
    runner = FakeRunner().on("istioctl", "proxy-status", stdout=PROXY_STATUS_JSON)
    backend = kube_backend(runner)
    with pytest.raises(MeshlabError, match="no control plane"):
        backend.proxy_status()
    backend.remember_istio(istio.IstioFound("istio-canary", "canary", "1.30.3"))
    status = backend.proxy_status()
    assert runner.argvs[-1] == ["istioctl", "proxy-status", "--context", "class", "-i", "istio-canary", "-o", "json",
                                "-n", KUBE_NS, "--revision", "canary"]
    assert status["version"] == "1.30.3" and len(status["proxies"]) == 3
    kind_runner = FakeRunner().on("istioctl", "proxy-status", stdout=PROXY_STATUS_JSON)
    on_kind = kind_backend(kind_runner)
    on_kind.remember_istio(istio.IstioFound("istio-system", "", istio.VERSION))
    on_kind.proxy_status()
    assert kind_runner.argvs[-1] == ["istioctl", "proxy-status", "--context", CTX, "-i", "istio-system", "-o", "json"]


# ---- views: sidecars and the control plane -----------------------------------------------------------


def test_istio_sidecars_are_sidecars_and_istiod_is_the_control_plane():
    native = injected("ratings-v1-5b6c7d8e9-klmno", "ratings", "v1", native=True)
    runner = FakeRunner().on("get", "pods", stdout=items(REVIEWS, FRONTEND, native, istiod()))
    backend = kind_backend(runner)
    proxies = backend.proxies()
    assert [(p.name, p.role, p.pod, p.state) for p in proxies] == [
        ("reviews-v2-7d4f9c8b5-abcde/istio-proxy", "sidecar", "reviews-v2-7d4f9c8b5-abcde", "running"),
        ("frontend-v1-6c9d8b7f4-fghij/istio-proxy", "sidecar", "frontend-v1-6c9d8b7f4-fghij", "running"),
        ("ratings-v1-5b6c7d8e9-klmno/istio-proxy", "sidecar", "ratings-v1-5b6c7d8e9-klmno", "running")]
    pods = {p.name: p for p in backend.pods()}
    assert [c.name for c in pods["reviews-v2-7d4f9c8b5-abcde"].containers] == ["app", "istio-proxy"]
    assert [c.name for c in pods["ratings-v1-5b6c7d8e9-klmno"].containers] == ["istio-proxy", "app"]
    control = pods["istiod-5d8f7c9b4-q7x2m"]
    assert control.namespace == "istio-system" and control.labels["app"] == "istiod"
    from meshlab.diagrams.facts import pod_role
    assert pod_role(control) == "control-plane"


def test_faults_go_to_the_app_container_not_istio_proxy():
    runner = FakeRunner().on("get", "pods", stdout=items(REVIEWS))
    kind_backend(runner).inject("reviews", errors=0.5)
    argv, _ = runner.calls[-1]
    assert argv[argv.index("-c") + 1] == "app" and argv[-2] == "http://127.0.0.1:9080/_meshlab/fault"


def test_lab_up_stage5_on_kind_installs_istio_before_applying_the_stage(monkeypatch):
    import yaml

    import meshlab
    from meshlab import settle, stages

    monkeypatch.setattr(settle, "settle", lambda lab: True)
    runner = istioctl().on("docker", "inspect", stdout="cp-id-1\n")
    lab = meshlab.Lab("t1", backend="kind", runner=runner, edge_port=30123, progress=lambda m: None).up(stage=5, quiet=True)
    config = yaml.safe_load(runner.inputs("create", "cluster")[0])
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]  # stages.nodes_for(5, "kind") == 2
    install = next(i for i, a in enumerate(runner.argvs) if a[:2] == ["istioctl", "install"])
    applies = [i for i, a in enumerate(runner.argvs) if a[-3:] == ["apply", "-f", "-"]]
    assert applies[0] < install < applies[-1]  # the edge, then Istio, then the stage
    assert list(yaml.safe_load_all(runner.inputs("apply")[-1])) == stages.documents(5) and lab.stage == 5


def test_kind_watch_lists_namespaces_cluster_wide():
    runner = FakeRunner().on("get", "namespaces,services,serviceaccounts", stdout=items(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-system", "uid": "n1", "resourceVersion": "3"}}))
    state = kind_backend(runner).watch(since=0, timeout=0)
    assert KUBECTL + ["get", "namespaces,services,serviceaccounts", "-o", "json", "-A"] in runner.argvs
    assert [o["metadata"]["name"] for o in state["objects"]] == ["mesh-system"] and state["pods"] == []
