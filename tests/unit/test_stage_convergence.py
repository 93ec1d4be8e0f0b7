"""Lab.up on a running lab converges to exactly the new stage through the Backend interface (fake backends and
kind's fake runner), and Lab.restore waits for a serving lab only when something was down."""

from __future__ import annotations

import pytest
import yaml
from test_kube_backend import FakeRunner

import meshlab
from meshlab import applied, lab as lab_module, manifests, settle, stages
from meshlab.backends.base import Backend, NodeInfo, PodInfo

NOTES = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: learner-notes}\ndata: {note: mine}\n"


class StoreBackend(Backend):
    """A backend that keeps objects in a dict (per cluster when it has several) and counts waits."""

    name = "fake"

    def __init__(self, clusters=()):
        self.cluster_names = list(clusters)
        self.stores = {c: {} for c in self.cluster_names or [""]}
        self.deleted: list[list[str]] = []
        self.waits = 0
        self.ready = True
        self.restored = 0
        self.started = False

    @classmethod
    def availability(cls):
        raise NotImplementedError

    def clusters(self):
        return list(self.cluster_names)

    def running(self):
        return self.started

    def up(self, nodes=3, clusters=1):
        self.started = True

    def install_mesh(self):
        pass

    def stage_options(self):
        return {"payments_address": "127.9.0.1"}

    def apply(self, docs, source="<yaml>", cluster=None):
        for store in [self.stores[cluster]] if cluster else self.stores.values():
            store.update({applied.key(d): d for d in docs})
        return [manifests.ref(d) for d in docs]

    def objects(self, kind):
        return [d for store in self.stores.values() for d in store.values() if d["kind"] == kind]

    def delete(self, docs):
        self.deleted.append(sorted(manifests.ref(d) for d in docs))
        for store in self.stores.values():
            for d in docs:
                store.pop(applied.key(d), None)
        return [manifests.ref(d) for d in docs]

    def names(self, kind, cluster=""):
        return {k[2] for k in self.stores[cluster or next(iter(self.stores))] if k[0] == kind}

    def wait_ready(self, timeout=60.0):
        self.waits += 1

    def pods(self):
        return [PodInfo("ratings-v1-a", "default", "node-1", "127.0.1.10", self.ready, "Running", {"app": "ratings"})]

    def nodes(self):
        return [NodeInfo("node-1", "127.0.1.1", True)]

    def proxies(self):
        return []

    def entrypoint(self):
        return "http://127.0.0.1:1/"

    def kill(self, pod=None, node=None, proxy=None):
        self.ready = False
        return [pod or node or proxy]

    def restore(self):
        self.restored += 1
        self.ready = True

    def inject(self, service, errors=0.0, latency_ms=0, pod=None):
        return []

    def logs(self, dest):
        return dest

    def down(self):
        pass


@pytest.fixture
def settled(monkeypatch):
    """settle.settle recorded, not run; schema validation skipped (tested elsewhere, and slow)."""
    calls = []
    monkeypatch.setattr(manifests, "validate", lambda docs, source="<yaml>", istio_subset=True: None)
    monkeypatch.setattr(settle, "settle", lambda lab: calls.append(lab) or True)
    return calls


def fake_lab(monkeypatch, backend: StoreBackend) -> meshlab.Lab:
    monkeypatch.setattr(lab_module, "make_backend", lambda *args, **kwargs: backend)
    return meshlab.Lab("t", backend="kube")


# ---- what goes ------------------------------------------------------------------------------------


def test_the_earlier_stages_objects_go_unless_the_new_stage_has_them():
    before = {"stage": applied.idents(stages.documents(2)), "learner": []}
    gone, kept = applied.plan(before, stages.documents(3), keep=False)
    assert sorted(manifests.ref(d) for d in gone) == ["ConfigMap/router-envoy", "Deployment/router", "Service/router"]
    assert kept == [] and all(set(d) == {"apiVersion", "kind", "metadata"} for d in gone)


def test_the_learners_objects_go_unless_kept_and_a_changed_stage_object_is_the_stages():
    notes = manifests.load(NOTES)[0]
    router_cm = next(d for d in stages.documents(2) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "router-envoy")
    shop_app = {**stages.documents(2)[0], "metadata": {"name": "shop-app", "namespace": "default"}}  # the same object
    before = {"stage": applied.idents(stages.documents(2)), "learner": applied.idents([notes, router_cm, shop_app])}
    gone, kept = applied.plan(before, stages.documents(3), keep=True)
    assert "ConfigMap/learner-notes" not in {manifests.ref(d) for d in gone}
    assert [manifests.ref(d) for d in kept] == ["ConfigMap/learner-notes"]
    gone, kept = applied.plan(before, stages.documents(3), keep=False)
    assert sorted(manifests.ref(d) for d in gone) == ["ConfigMap/learner-notes", "ConfigMap/router-envoy",
                                                      "Deployment/router", "Service/router"] and kept == []


def test_with_no_record_every_other_stages_objects_go_and_no_learner_object_is_known():
    gone, kept = applied.plan(None, stages.documents(0), keep=False)
    refs = {manifests.ref(d) for d in gone}
    assert {"Deployment/router", "DaemonSet/node-proxy", "Ingress/shop", "ConfigMap/sidecar-frontend-v1",
            "ServiceAccount/shop-ratings"} <= refs
    assert not refs & {manifests.ref(d) for d in stages.documents(0)} and kept == []


# ---- through the Backend interface ----------------------------------------------------------------


def test_up_on_a_running_lab_converges_and_keep_keeps_only_the_learners_own(monkeypatch, settled):
    backend = StoreBackend()
    lab = fake_lab(monkeypatch, backend)
    lab.up(stage="router", quiet=True)
    assert backend.deleted == []  # a cluster just made: nothing to clear
    lab.apply(NOTES, wait=0)
    lab.up(stage="per-node", quiet=True, keep=True)
    assert {"router", "node-proxy"} & backend.names("Deployment") == set()
    assert "node-proxy" in backend.names("DaemonSet") and "learner-notes" in backend.names("ConfigMap")
    assert "router-envoy" not in backend.names("ConfigMap") and "router" not in backend.names("Service")
    lab.up(stage="per-node", quiet=True)
    assert backend.deleted[-1] == ["ConfigMap/learner-notes"]
    assert {applied.key(d) for d in stages.documents(3)} == set(backend.stores[""])  # exactly the stage


def test_a_deleted_learner_object_leaves_the_record(monkeypatch, settled):
    backend = StoreBackend()
    lab = fake_lab(monkeypatch, backend)
    lab.up(stage=0, quiet=True)
    lab.apply(NOTES, wait=0)
    lab.delete(NOTES)
    assert applied.recorded(backend)["learner"] == []


def test_several_clusters_converge_each_share(monkeypatch, settled):
    backend = StoreBackend(clusters=("cluster-1", "cluster-2"))
    lab = fake_lab(monkeypatch, backend)
    lab.up(stage="multicluster", quiet=True)
    assert "shop" in backend.names("Ingress", "cluster-1") and "shop" not in backend.names("Ingress", "cluster-2")
    lab.apply(NOTES, wait=0, cluster="cluster-2")
    lab.up(stage="multicluster", quiet=True)
    assert backend.deleted[-1] == ["ConfigMap/learner-notes"]
    assert "shop" in backend.names("Ingress", "cluster-1")  # one cluster's object is still the stage's


def test_kind_deletes_the_earlier_stages_objects_with_kubectl(monkeypatch, settled):
    runner = FakeRunner().on("docker", "inspect", stdout="cp-id-1\n")
    lab = meshlab.Lab("t1", backend="kind", runner=runner, edge_port=30123, progress=lambda m: None)
    lab.up(stage="router", quiet=True)
    lab.up(stage="per-node", quiet=True)
    deleted = list(yaml.safe_load_all(runner.inputs("delete", "-f")[-1]))
    assert sorted(manifests.ref(d) for d in deleted) == ["ConfigMap/router-envoy", "Deployment/router", "Service/router"]
    assert "--ignore-not-found" in next(a for a in runner.argvs if "delete" in a and "-f" in a)


def test_a_new_process_on_a_running_kind_cluster_still_clears_an_earlier_stage(monkeypatch, settled):
    runner = FakeRunner().on("docker", "inspect", stdout="cp-id-1\n")
    lab = meshlab.Lab("t1", backend="kind", runner=runner, edge_port=30123, progress=lambda m: None)
    lab.up(stage="per-node", quiet=True)  # no record in this process: the cluster may hold any stage
    deleted = {manifests.ref(d) for d in yaml.safe_load_all(runner.inputs("delete", "-f")[-1])}
    assert {"Deployment/router", "ConfigMap/router-envoy", "ConfigMap/sidecar-reviews-v3"} <= deleted
    assert "DaemonSet/node-proxy" not in deleted


# ---- restore --------------------------------------------------------------------------------------


def test_restore_waits_for_a_serving_lab_when_something_was_down(monkeypatch, settled):
    backend = StoreBackend()
    lab = fake_lab(monkeypatch, backend)
    lab.kill(pod="ratings")
    lab.restore()
    assert backend.restored == 1 and backend.waits == 1 and settled == [lab]


def test_restore_returns_at_once_when_nothing_was_down(monkeypatch, settled):
    backend = StoreBackend()
    lab = fake_lab(monkeypatch, backend)
    lab.inject("ratings", errors=0.5)
    lab.restore()
    assert backend.restored == 1 and backend.waits == 0 and settled == []


def test_a_fleets_restore_waits_for_every_cluster(monkeypatch, settled):
    from test_fleet import FakeMember

    from meshlab import fleet

    class Down(FakeMember):
        def pods(self):
            return [PodInfo(p, "default", "node-1", "127.0.0.9", False, "Killed", {"app": "reviews"})
                    for p in self.pod_names]

    members = {"cluster-1": FakeMember("cluster-1"), "cluster-2": Down("cluster-2", pods=("reviews-b",))}
    lab = fake_lab(monkeypatch, fleet.Fleet("t", members=members))
    lab.restore()
    for member in members.values():
        assert [c[0] for c in member.calls] == ["restore", "wait_ready"]
    assert settled == [lab]


def test_meshlab_up_keep_passes_keep_to_lab_up(monkeypatch):
    from meshlab import cli

    seen = {}

    class FakeLab:
        stage, url = 1, "http://127.0.0.1:1"

        def up(self, **options):
            seen.update(options)

    monkeypatch.setattr(cli, "_lab", lambda args: FakeLab())
    for argv, keep in ((["up", "--stage", "edge", "--keep"], True), (["up", "--stage", "edge"], False)):
        args = cli.parser().parse_args(argv)
        assert args.func(args) == 0 and seen["keep"] is keep
