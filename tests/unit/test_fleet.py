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

    def __init__(self, name: str, pods=("reviews-a",)):
        self.name, self.lab, self.calls = name, f"lab-{name}", []
        self.pod_names = list(pods)
        self.killed: list[str] = []

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

    def start(self, folder, service, ip, owned):
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
