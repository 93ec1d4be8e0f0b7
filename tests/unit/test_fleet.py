"""The fleet's composition, with fake member backends: what goes to which cluster, what it reports, what it kills."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from meshlab import fleet, stages
from meshlab.backends.base import MeshlabError, NodeInfo, PodInfo, ProxyInfo
from meshlab.backends.local import paths, procs
from meshlab.lab import make_backend


class FakeMember:
    """A cluster's backend that records what it was asked."""

    def __init__(self, name: str, pods=("reviews-a",), payload: dict | None = None):
        self.name, self.lab, self.calls = name, f"lab-{name}", []
        self.pod_names = list(pods)
        self.killed: list[str] = []
        self.payload = payload  # its watch answer, when it has a watch API (a local runtime)

    def capabilities(self):
        return {"watch"} if self.payload is not None else set()

    def watch(self, since=0, timeout=30.0):
        return self.payload

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.calls.append((method, args, kwargs))

    def apply(self, docs, source="<yaml>"):
        self.calls.append(("apply", docs, source))
        return [f"{d['kind']}/{d['metadata']['name']}" for d in docs]

    def status(self):
        return {"cluster": self.name, "network": f"net-{self.name}", "api": f"@api-{self.name}"}

    def link(self, peer):
        self.calls.append(("link", peer.name))

    def pods(self):
        return [PodInfo(p, "default", "node-1", "127.0.0.9", True, "Running", {"app": p.split("-")[0]})
                for p in self.pod_names]

    def nodes(self):
        return [NodeInfo(f"node-{i}", f"127.0.{i}.1", True) for i in (1, 2)]

    def proxies(self):
        return [ProxyInfo("gw", "gateway", "gw", "node-1", "running", cluster=self.name)]

    def kill(self, pod=None, node=None, proxy=None):
        if pod and pod not in self.pod_names:
            raise MeshlabError(f"no pod {pod}")
        self.killed.append(pod or node or proxy)
        return [f"{self.name}:{pod or node or proxy}"]

    def inject(self, service, errors=0.0, latency_ms=0, pod=None):
        if not any(p.startswith(service) for p in self.pod_names):
            raise MeshlabError(f"no ready pod of {service} to inject into")
        return [f"{self.name}:{service}"]


class FakeLegacy:
    """The legacy process: a real harmless process, so down() can be seen to kill it."""

    def __init__(self):
        self.faults = []

    def start(self, folder, service, ip, owned, held=None):
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.started = (folder, service, ip, owned)
        return proc, procs.start_time(proc.pid)

    def set_fault(self, ip, settings):
        self.faults.append((ip, settings))


@pytest.fixture
def fleet_of_two(state_root):
    members = {"cluster-1": FakeMember("cluster-1", ["frontend-a", "reviews-a"]), "cluster-2": FakeMember("cluster-2")}
    made = fleet.Fleet("shop", owned=True, members=members, legacy=FakeLegacy())
    made.up(nodes=3)
    yield made
    made.down()


def test_up_starts_every_cluster_and_the_legacy_process_and_keeps_a_private_state(fleet_of_two):
    folder = paths.lab_dir("shop")
    assert all(("up", (), {"nodes": 3}) in m.calls for m in fleet_of_two.members.values())
    assert fleet.is_fleet("shop") and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ca" / "root-key.pem").stat().st_mode) == 0o600
    address = fleet_of_two.stage_options()["payments_address"]
    assert fleet_of_two.legacy.started == (folder, "payments", address, True)
    assert address == f"127.{paths.read_state('shop')['octet']}.0.1"
    assert isinstance(make_backend("local", "shop"), fleet.Fleet)  # `meshlab status --lab shop` finds both


def test_objects_go_to_every_cluster_or_to_the_one_named(fleet_of_two):
    doc = {"kind": "ConfigMap", "metadata": {"name": "x"}}
    assert fleet_of_two.apply([doc]) == ["ConfigMap/x"]
    assert fleet_of_two.apply([doc], cluster="cluster-2") == ["ConfigMap/x"]
    one, two = fleet_of_two.members.values()
    assert [c[0] for c in one.calls].count("apply") == 1 and [c[0] for c in two.calls].count("apply") == 2
    with pytest.raises(MeshlabError, match="no cluster 'cluster-9'"):
        fleet_of_two.apply([doc], cluster="cluster-9")


def test_every_pod_node_and_proxy_names_its_cluster(fleet_of_two):
    assert {(p.name, p.cluster) for p in fleet_of_two.pods()} == {
        ("frontend-a", "cluster-1"), ("reviews-a", "cluster-1"), ("reviews-a", "cluster-2")}
    assert [n.cluster for n in fleet_of_two.nodes()] == ["cluster-1", "cluster-1", "cluster-2", "cluster-2"]
    assert [p.cluster for p in fleet_of_two.proxies()] == ["cluster-1", "cluster-2"]


def test_install_mesh_links_each_cluster_to_every_other(fleet_of_two):
    fleet_of_two.install_mesh()
    one, two = fleet_of_two.members.values()
    assert ("link", "cluster-2") in one.calls and ("link", "cluster-1") in two.calls
    assert ("link", "cluster-1") not in one.calls


def test_a_whole_cluster_is_killed_node_by_node_and_only_that_one(fleet_of_two):
    assert fleet_of_two.kill(cluster="cluster-2") == ["cluster-2:node-1", "cluster-2:node-2"]
    assert not fleet_of_two.members["cluster-1"].killed
    with pytest.raises(MeshlabError, match="exists in every cluster"):
        fleet_of_two.kill(node="node-1")
    assert fleet_of_two.kill(pod="frontend-a") == ["cluster-1:frontend-a"]
    assert fleet_of_two.kill(pod="reviews-a", cluster="cluster-2") == ["cluster-2:reviews-a"]
    with pytest.raises(MeshlabError, match="no pod nothing"):
        fleet_of_two.kill(pod="nothing")


def test_faults_reach_the_legacy_process_and_restore_clears_them_everywhere(fleet_of_two):
    address = fleet_of_two.legacy_address()
    assert fleet_of_two.inject("payments", errors=0.5) == ["payments-legacy"]
    assert fleet_of_two.inject("frontend", errors=0.5) == ["cluster-1:frontend"]
    assert fleet_of_two.inject("reviews", latency_ms=5) == ["cluster-1:reviews", "cluster-2:reviews"]
    fleet_of_two.restore()
    assert fleet_of_two.legacy.faults == [(address, {"error_rate": 0.5, "latency_ms": 0}), (address, None)]
    assert all(("restore", (), {}) in m.calls for m in fleet_of_two.members.values())


def test_down_after_a_crash_finds_the_legacy_process_from_the_state_file(state_root):
    members = {"cluster-1": FakeMember("cluster-1"), "cluster-2": FakeMember("cluster-2")}
    fleet.Fleet("crashed", members=members, legacy=FakeLegacy()).up()
    pid, started = paths.read_state("crashed")["processes"][0]
    again = fleet.Fleet("crashed", owned=False, members=members)  # a new process: `meshlab down --lab crashed`
    again.down()
    assert procs.wait_gone(pid, started, timeout=5)
    assert not paths.lab_dir("crashed").exists() and not fleet.is_fleet("crashed")
    assert all(("down", (), {}) in m.calls for m in members.values())


def test_stage6_places_frontend_catalog_and_the_edge_in_cluster_1_only():
    def names(cluster):
        return {(d["kind"], d["metadata"]["name"]) for d in stages.documents(6, cluster=cluster, payments_address="127.9.0.1")}
    one, two = names("cluster-1"), names("cluster-2")
    assert two < one and one - two == {("Deployment", "frontend-v1"), ("Deployment", "catalog-v1"), ("Ingress", "shop")}
    assert {("Service", s) for s in ("frontend", "catalog", "reviews", "ratings")} <= two
    entry = next(d for d in stages.documents(6, cluster="cluster-2", payments_address="127.9.0.1")
                 if d["kind"] == "ServiceEntry")
    assert entry["spec"]["endpoints"] == [{"address": "127.9.0.1"}] and entry["spec"]["resolution"] == "STATIC"
    frontend = next(d for d in stages.documents(6) if d["metadata"]["name"] == "frontend-v1")
    assert "http://payments.legacy.example:9080/" in frontend["spec"]["template"]["spec"]["containers"][0]["args"]


def test_member_labs_are_named_after_the_lab_and_must_fit_a_name():
    assert fleet.member_lab("shop", "cluster-2") == "shop-cluster-2"
    with pytest.raises(MeshlabError):
        fleet.member_lab("a-very-long-lab-name-for-this", "cluster-1")


def test_the_fleet_folder_is_not_left_readable(fleet_of_two):
    for path in Path(paths.lab_dir("shop")).rglob("*"):
        assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path


# ---- convergence on a fleet: each cluster from its own stored change to its own last ACK ----

class SyncingMember:
    """A cluster's control plane whose /debug/syncz moves on one step per call."""

    def __init__(self, steps, revision, stored_at):
        self.steps, self.calls, self._revision, self.stored_at = list(steps), 0, revision, stored_at

    def proxy_status(self):
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        return step

    def revision(self):
        return self._revision

    def revision_time(self):
        return self.stored_at


class ConvergingLab:
    """A lab of two clusters as mesh.convergence sees it."""

    def __init__(self, members):
        self.members, self.applied = members, []
        self.backend = self
        self.member = members.__getitem__

    def clusters(self):
        return list(self.members)

    def apply(self, text, source="<cell>", wait=30, cluster=None):
        self.applied.append((text, cluster))

    def proxies(self):
        return [ProxyInfo(f"{pod}/istio-proxy", "sidecar", pod, "node-1", "running", f"http://{name}/{pod}", cluster=name)
                for name, m in self.members.items() for pod in ("frontend", "reviews")]


def synced(pod, version, acked_at=0.0):
    return {"pod": pod, "namespace": "default", "connected": True, "version": version, "acked": version,
            "acked_at": acked_at}


def two_syncing():
    one = SyncingMember([{"built_revision": 4, "proxies": [synced("frontend", "a1")]},
                         {"built_revision": 5, "proxies": [synced("frontend", "a2", acked_at=100.05)]}], 5, 100.0)
    two = SyncingMember([{"built_revision": 8, "proxies": [synced("reviews", "b1"), synced("frontend", "c1")]},
                         {"built_revision": 8, "proxies": [synced("reviews", "b1"), synced("frontend", "c1")]},
                         {"built_revision": 9, "proxies": [synced("reviews", "b2", acked_at=200.2),
                                                           synced("frontend", "c1")]}], 9, 200.0)
    return ConvergingLab({"cluster-1": one, "cluster-2": two})


def test_convergence_on_a_fleet_times_each_cluster_against_its_own_revision(monkeypatch):
    from meshlab import mesh

    serving = {"http://cluster-1/frontend": {"a2"}, "http://cluster-2/reviews": {"b2"}}  # each Envoy's own version
    asked = []
    monkeypatch.setattr(mesh, "envoy_versions", lambda url: asked.append(url) or serving.get(url, set()))
    lab = two_syncing()
    result = mesh.convergence(lab, "kind: DestinationRule")
    assert lab.applied == [("kind: DestinationRule", None)]  # every cluster
    assert result.clusters == pytest.approx({"cluster-1": 0.05, "cluster-2": 0.2})
    assert result.seconds == pytest.approx(0.2) and result.unchanged == 1
    assert result.proxies == pytest.approx({"cluster-1/frontend": 50.0, "cluster-2/reviews": 200.0})
    assert "cluster-2 200 ms" in repr(result) and sorted(asked) == sorted(serving)


def test_convergence_in_one_cluster_of_a_fleet_applies_and_waits_there_only(monkeypatch):
    from meshlab import mesh

    monkeypatch.setattr(mesh, "envoy_versions", lambda url: {"b2"})
    lab = two_syncing()
    result = mesh.convergence(lab, "kind: DestinationRule", cluster="cluster-2")
    assert lab.applied == [("kind: DestinationRule", "cluster-2")] and lab.members["cluster-1"].calls == 0
    assert list(result.clusters) == ["cluster-2"] and list(result.proxies) == ["cluster-2/reviews"]


def test_convergence_on_a_fleet_names_the_cluster_it_still_waits_for(monkeypatch):
    from meshlab import mesh

    monkeypatch.setattr(mesh, "envoy_versions", lambda url: {"a2"})
    lab = two_syncing()
    lab.members["cluster-2"].steps = [{"built_revision": 9, "proxies": [synced("reviews", "b1")]},
                                      {"built_revision": 9, "proxies": [{**synced("reviews", "b2"), "acked": "b1"}]}]
    with pytest.raises(MeshlabError, match=r"within 0s: reviews \(cluster-2\)"):
        mesh.convergence(lab, "kind: DestinationRule", timeout=0.05)
    with pytest.raises(MeshlabError, match="one cluster"):
        mesh.convergence(type("One", (), {"backend": None})(), "x", cluster="cluster-2")


# ---- admission: every target cluster checks an apply before any stores it ----

def admitting_fleet(state_root, one_objects=(), two_objects=()):
    from test_cp_multicluster import CLUSTER_1, CLUSTER_2, payload

    members = {"cluster-1": FakeMember("cluster-1", payload=payload(CLUSTER_1, list(one_objects))),
               "cluster-2": FakeMember("cluster-2", payload=payload(CLUSTER_2, list(two_objects)))}
    return fleet.Fleet("shop", owned=True, members=members, legacy=FakeLegacy())


def applied(made):
    return {name: [c for c in m.calls if c[0] == "apply"] for name, m in made.members.items()}


VS_V2 = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}


@pytest.fixture
def envoy_checks(monkeypatch):
    """envoy --mode validate, faked: records the proxies it is asked about, answers from `reasons`."""
    from meshlab.controlplane import envoy_check

    asked, reasons = [], {}
    monkeypatch.setattr(envoy_check, "problem", lambda snap: asked.append(snap) or reasons.get("next"))
    return asked, reasons


def test_an_object_one_cluster_would_refuse_is_stored_in_none(state_root, envoy_checks):
    from test_cp_multicluster import reviews_dr

    made = admitting_fleet(state_root, one_objects=[reviews_dr()])  # the subsets are defined in cluster-1 only
    with pytest.raises(MeshlabError) as error:
        made.apply([VS_V2], "vs.yaml")
    message = str(error.value)
    assert message.startswith("vs.yaml: refused by cluster-2, so applied to no cluster: the config for ")
    assert "v2" in message and "\n" not in message and "nothing was changed in any cluster" in message
    assert applied(made) == {"cluster-1": [], "cluster-2": []}


def test_an_object_every_cluster_accepts_is_validated_by_envoy_for_the_later_clusters_only(state_root, envoy_checks):
    from test_cp_multicluster import reviews_dr

    asked, _ = envoy_checks
    made = admitting_fleet(state_root, one_objects=[reviews_dr()], two_objects=[reviews_dr()])
    assert made.apply([VS_V2], "vs.yaml") == ["VirtualService/reviews"]
    assert [len(calls) for calls in applied(made).values()] == [1, 1]
    assert len(asked) == 1  # cluster-1 validates with Envoy itself before it stores; cluster-2's config here
    assert made.apply([VS_V2], "vs.yaml", cluster="cluster-2") and len(asked) == 1  # one target: its own check


def test_envoy_refusing_a_later_cluster_s_config_stores_nothing(state_root, envoy_checks):
    from test_cp_multicluster import reviews_dr

    _, reasons = envoy_checks
    reasons["next"] = "Proto constraint validation failed"
    made = admitting_fleet(state_root, one_objects=[reviews_dr()], two_objects=[reviews_dr()])
    with pytest.raises(MeshlabError, match="refused by cluster-2, so applied to no cluster: Envoy would reject"):
        made.apply([VS_V2], "vs.yaml")
    assert applied(made) == {"cluster-1": [], "cluster-2": []}


def test_a_namespace_missing_in_one_cluster_stores_nothing_anywhere(state_root):
    shop = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    made = admitting_fleet(state_root, one_objects=[shop])
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}
    with pytest.raises(MeshlabError, match='refused by cluster-2, so applied to no cluster: ConfigMap "x": namespaces "shop" not found'):
        made.apply([doc], "cm.yaml")
    assert applied(made) == {"cluster-1": [], "cluster-2": []}
    assert made.apply([shop, doc], "cm.yaml") == ["Namespace/shop", "ConfigMap/x"]  # created in the same apply: fine
