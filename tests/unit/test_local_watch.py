"""The local runtime's list + watch API, the kinds stage 5 adds, the Istio apply check, rollout restart
and the control-plane manifests."""

from __future__ import annotations

import asyncio
import sys
import time
import types
from dataclasses import dataclass, field

import pytest

import meshlab.controlplane
from meshlab import manifests
from meshlab.backends.base import MeshlabError
from meshlab.backends.local import kinds, mesh_check, rollout, rpc, watch, workloads
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.controlplane import deploy
from meshlab.stages import shop


# ---- the revision and its long-poll ---------------------------------------------------------------

def test_since_zero_answers_at_once_and_an_equal_revision_waits_for_a_change():
    async def scenario():
        revisions = watch.Revisions()
        started = time.monotonic()
        assert await revisions.wait(0, 5) == 1 and time.monotonic() - started < 0.5
        started = time.monotonic()
        assert await revisions.wait(1, 0.3) == 1  # nothing happened: the timeout answers
        assert 0.25 < time.monotonic() - started < 2
        waiter = asyncio.create_task(revisions.wait(1, 10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await revisions.bump()
        assert await asyncio.wait_for(waiter, 1) == 2
        assert await revisions.wait(99, 5) == 2  # a revision from another runtime: answered at once
    asyncio.run(scenario())


def test_pod_changes_bump_the_revision_only_when_something_the_watch_shows_changed():
    async def scenario():
        revisions = watch.Revisions()
        await revisions.observe_pods({"a": ("127.9.1.10", False)})
        first = revisions.revision
        await revisions.observe_pods({"a": ("127.9.1.10", False)})
        assert revisions.revision == first
        await revisions.observe_pods({"a": ("127.9.1.10", True)})
        await revisions.observe_pods({})
        assert revisions.revision == first + 2
    asyncio.run(scenario())


@dataclass
class FakePod:
    name: str
    namespace: str = "default"
    ip: str = "127.9.1.10"
    node: str = "node-1"
    labels: dict = field(default_factory=lambda: {"app": "reviews"})
    annotations: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    ready: bool = True


def test_the_payload_lists_watched_kinds_and_every_pod_as_the_contract_says():
    objects = {key_of(d): d for d in [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-reviews"}},
        shop.service("reviews"), shop.deployment("reviews", "v1", 1, [], []),
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r"}, "spec": {}}]}
    spec = {"serviceAccountName": "shop-reviews", "containers": [
        {"name": "app", "ports": [{"containerPort": 9080, "name": "http"}, {"containerPort": 9090}]},
        {"name": "istio-proxy", "ports": [{"containerPort": 15001}]}]}
    pods = [FakePod("b", spec=spec, annotations={"sidecar.istio.io/status": "{}"}), FakePod("a", ready=False)]
    out = watch.payload(7, objects, pods)
    assert out["revision"] == 7 and out["cluster"] == ""
    assert sorted(o["kind"] for o in out["objects"]) == ["Namespace", "Service", "ServiceAccount", "VirtualService"]
    assert [p["name"] for p in out["pods"]] == ["a", "b"]
    assert out["pods"][1] == {"name": "b", "namespace": "default", "ip": "127.9.1.10", "node": "node-1",
                              "labels": {"app": "reviews"}, "annotations": {"sidecar.istio.io/status": "{}"},
                              "service_account": "shop-reviews", "ready": True, "injected": True,
                              "ports": {"http": 9080, "9090": 9090}}
    assert out["pods"][0]["service_account"] == "default" and out["pods"][0]["injected"] is False


def test_abstract_socket_addresses_travel_as_text_with_an_at_sign():
    assert rpc.printable("\0meshlab-abc") == "@meshlab-abc"
    assert rpc.printable("/run/x.sock") == "/run/x.sock"


# ---- kinds ----------------------------------------------------------------------------------------

def test_service_accounts_and_pod_service_account_names_are_accepted():
    kinds.check_supported({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-reviews"},
                           "automountServiceAccountToken": False})
    doc = shop.deployment("reviews", "v1", 1, [shop.app_container("reviews", "v1", [], [
        shop.field_env("SA", "spec.serviceAccountName")])], [])
    doc["spec"]["template"]["spec"].update(serviceAccountName="shop-reviews", automountServiceAccountToken=False)
    kinds.check_supported(doc)


def istio(kind="VirtualService", api="networking.istio.io/v1", spec=None) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "reviews"},
            "spec": spec if spec is not None else {"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}}]}]}}


@pytest.mark.parametrize("api, kind, accepted", [
    ("networking.istio.io/v1", "VirtualService", True),
    ("networking.istio.io/v1alpha3", "DestinationRule", True),
    ("security.istio.io/v1beta1", "PeerAuthentication", True),
    ("security.istio.io/v1", "AuthorizationPolicy", True),
    ("networking.istio.io/v1", "Gateway", False),
    ("security.istio.io/v1alpha3", "PeerAuthentication", False),
])
def test_istio_kinds_are_recognised_by_group_kind_and_version(api, kind, accepted):
    assert kinds.is_istio({"apiVersion": api, "kind": kind}) is accepted


def test_istio_objects_go_through_the_control_planes_schema(monkeypatch):
    seen = []
    monkeypatch.setattr("meshlab.controlplane.schema.check", lambda doc, source: seen.append((doc["kind"], source)))
    kinds.check_supported(istio(), "vs.yaml")
    assert seen == [("VirtualService", "vs.yaml")]
    with pytest.raises(MeshlabError, match="kind Gateway"):
        kinds.check_supported(istio("Gateway"), "gw.yaml")


# ---- the Istio apply check ------------------------------------------------------------------------

@dataclass
class FakeSnapshot:
    version: str
    dangling: list = field(default_factory=list)
    closed: tuple = ()

    def consistent(self):
        return self.dangling


def fake_control_plane(monkeypatch, builds, problem=None):
    validated = []
    monkeypatch.setattr(mesh_check, "build", lambda objects, pods: builds.pop(0))
    module = types.ModuleType("meshlab.controlplane.envoy_check")
    module.validate = lambda snap, source: validated.append(snap.version) or problem
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(meshlab.controlplane, "envoy_check", module, raising=False)
    return validated


NODE = "sidecar~127.9.1.10~reviews-v1-a.default~default.svc.cluster.local"


def test_a_consistent_change_is_validated_for_the_changed_proxies_only(monkeypatch):
    other = NODE.replace("reviews-v1-a", "ratings-v1-b")
    validated = fake_control_plane(monkeypatch, [{NODE: FakeSnapshot("1"), other: FakeSnapshot("9")},
                                                 {NODE: FakeSnapshot("2"), other: FakeSnapshot("9")}])
    asyncio.run(mesh_check.check({}, [], [istio()], "vs.yaml"))
    assert validated == ["2"]


def test_dangling_references_or_an_envoy_rejection_refuse_the_apply(monkeypatch):
    fake_control_plane(monkeypatch, [{}, {NODE: FakeSnapshot("2", ["cluster outbound|9080|v9|reviews"])}])
    with pytest.raises(MeshlabError, match=r"vs.yaml: the config for reviews-v1-a.default would be inconsistent: "
                                           r"cluster outbound\|9080\|v9\|reviews"):
        asyncio.run(mesh_check.check({}, [], [istio()], "vs.yaml"))
    fake_control_plane(monkeypatch, [{}, {NODE: FakeSnapshot("2")}], problem="bad regex")
    with pytest.raises(MeshlabError, match="Envoy would reject the config for reviews-v1-a.default: bad regex"):
        asyncio.run(mesh_check.check({}, [], [istio()], "vs.yaml"))


def test_applies_without_istio_objects_skip_the_check(monkeypatch):
    monkeypatch.setattr(mesh_check, "build", lambda objects, pods: pytest.fail("built"))
    asyncio.run(mesh_check.check({}, [], [shop.service("reviews")], "svc.yaml"))


def test_a_refused_istio_apply_stores_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr("meshlab.controlplane.schema.check", lambda doc, source: None)
    fake_control_plane(monkeypatch, [{}, {NODE: FakeSnapshot("2", ["route 9080"])}])
    rt = Runtime(tmp_path, 9, 1, {})
    with pytest.raises(MeshlabError, match="route 9080"):
        asyncio.run(rt.apply([istio()], "vs.yaml"))
    assert rt.objects == {} and rt.revisions.revision == 1


# ---- rollout restart ------------------------------------------------------------------------------

@dataclass
class PlanPod:
    name: str
    node: str
    template_hash: str
    ready: bool = True
    deleting: bool = False


def test_a_changed_template_rolls_one_surge_pod_at_a_time_never_below_the_replicas():
    doc = shop.deployment("ratings", "v1", 2, [shop.app_container("ratings", "v1", [])], [])
    new_hash = workloads.template_hash(doc["spec"]["template"])
    old = [PlanPod("o1", "node-1", "old"), PlanPod("o2", "node-2", "old")]
    assert workloads.deployment_plan(doc, old, ["node-1", "node-2"], {}) == (["node-1"], [])
    fresh = PlanPod("n1", "node-1", new_hash, ready=False)
    assert workloads.deployment_plan(doc, old + [fresh], ["node-1", "node-2"], {}) == ([], [])
    fresh.ready = True
    assert workloads.deployment_plan(doc, old + [fresh], ["node-1", "node-2"], {}) == ([], [old[0]])
    create, delete = workloads.deployment_plan(doc, [old[1], fresh], ["node-1", "node-2"], {"node-1": 1})
    assert create == ["node-2"] and delete == []
    old[1].ready = False  # an old pod that serves nothing goes at once
    assert workloads.deployment_plan(doc, [old[1], fresh], ["node-1", "node-2"], {})[1] == [old[1]]


def test_restart_stamps_the_template_so_its_hash_changes_and_tracks_progress():
    doc = shop.deployment("reviews", "v1", 1, [shop.app_container("reviews", "v1", [])], [])
    again = rollout.restarted(doc, "2025-01-01T00:00:00Z")
    assert doc["spec"]["template"]["metadata"].get("annotations") is None  # the input is left alone
    assert again["spec"]["template"]["metadata"]["annotations"] == {rollout.RESTARTED_AT: "2025-01-01T00:00:00Z"}
    new_hash = workloads.template_hash(again["spec"]["template"])
    assert new_hash != workloads.template_hash(doc["spec"]["template"])
    old, new = PlanPod("old", "node-1", "x"), PlanPod("new", "node-2", new_hash, ready=False)
    assert rollout.progress(again, [old, new]) == (False, ["new"], ["old (old)", "new (not ready)"])
    new.ready, old.deleting = True, True
    assert rollout.progress(again, [old, new]) == (True, ["new"], [])


@pytest.mark.parametrize("ref, key", [("deployment/reviews-v1", ("Deployment", "default", "reviews-v1")),
                                      ("deploy/reviews-v1", ("Deployment", "default", "reviews-v1")),
                                      ("shop/deployment/reviews-v1", ("Deployment", "shop", "reviews-v1")),
                                      ("ds/node-proxy", ("DaemonSet", "default", "node-proxy"))])
def test_restart_refs_name_a_stored_workload(ref, key):
    objects = {("Deployment", "default", "reviews-v1"): {}, ("Deployment", "shop", "reviews-v1"): {},
               ("DaemonSet", "default", "node-proxy"): {}}
    assert rollout.find(objects, ref) == key


@pytest.mark.parametrize("ref, message", [("pod/x", "give deployment/NAME"), ("deployment/nope", "no Deployment nope")])
def test_bad_restart_refs_are_one_line_errors(ref, message):
    with pytest.raises(MeshlabError, match=message):
        rollout.find({}, ref)


def test_the_grace_period_is_capped_and_follows_the_pod_spec():
    assert rollout.grace_seconds({}) == rollout.GRACE == 2.0
    assert rollout.grace_seconds({"terminationGracePeriodSeconds": 30}) == 2.0
    assert rollout.grace_seconds({"terminationGracePeriodSeconds": 0}) == 0.0


# ---- the control plane's manifests ----------------------------------------------------------------

def test_the_control_plane_manifests_are_valid_kubernetes_and_inside_the_local_subset():
    docs = deploy.documents()
    manifests.validate(docs, "controlplane")
    for doc in docs:
        kinds.check_supported(doc, "controlplane")
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "Deployment", "Service"]
    dep = docs[2]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "meshlab.controlplane"]
    assert container["args"] == ["--xds-port", "15010", "--status-port", "15014"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert {p["name"]: p["port"] for p in docs[3]["spec"]["ports"]} == {"grpc-xds": 15010, "http-monitoring": 15014}


# ---- the mesh client: Services by DNS name ---------------------------------------------------------

class FakeBackend:
    from meshlab.backends.local.mesh_client import MeshClient as _client
    service_url = _client.service_url
    lab = "t"

    def status(self):
        return {"services": [
            {"namespace": "shop", "name": "reviews", "cluster_ip": "127.9.0.11", "endpoints": []},
            {"namespace": "default", "name": "reviews", "cluster_ip": "127.9.0.10", "endpoints": []},
            {"namespace": "default", "name": "reviews-v2", "cluster_ip": "None", "endpoints": ["127.9.2.10:9080"]}]}


@pytest.mark.parametrize("host, url", [("reviews", "http://127.9.0.10:9080"),
                                       ("reviews.shop.svc.cluster.local", "http://127.9.0.11:9080"),
                                       ("reviews-v2", "http://127.9.2.10:9080")])
def test_service_urls_follow_cluster_dns_names(host, url):
    assert FakeBackend().service_url(host, 9080) == url
    with pytest.raises(MeshlabError, match="no Service ratings"):
        FakeBackend().service_url("ratings", 9080)
