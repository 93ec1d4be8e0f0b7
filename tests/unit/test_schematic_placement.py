"""Stage schematics draw every pod a stage deploys, on the node the local lab runs it on (read from the stage's
manifests, checked against the local runtime's own scheduling), and stage 3's calls pass the right node proxies."""

from __future__ import annotations

from collections import Counter

import pytest

from meshlab import diagrams, stages
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.controlplane import deploy
from meshlab.diagrams import placement
from meshlab.stages import info

SINGLE = [n for n in stages.deployable() if not stages.is_multicluster(n)]


def runtime_placement(stage: int, folder) -> Counter:
    """(workload, node) of every pod a real local Runtime creates for the stage (no process is started)."""
    runtime = Runtime(folder, 77, stages.nodes_for(stage), {})
    for docs in ([deploy.documents()] if stages.needs_mesh(stage) else []) + [stages.documents(stage)]:
        for doc in docs:
            runtime.objects[key_of(doc)] = doc
        runtime._sync_edge()
        runtime._sync_workloads()
    return Counter((p.owner.split("/")[-1], p.node) for p in runtime.pods.values())


def declared_apps(stage: int) -> Counter:
    """(service, version) of every app pod the stage's Deployments ask for."""
    return Counter((d["metadata"]["labels"]["app"], d["metadata"]["labels"]["version"])
                   for d in stages.documents(stage) if d["kind"] == "Deployment" and "version" in d["metadata"]["labels"]
                   for _ in range(d["spec"].get("replicas", 1)))


@pytest.mark.parametrize("stage", SINGLE)
def test_the_placement_is_the_local_runtimes(stage, tmp_path):
    assert Counter((p.owner.split("/")[-1], p.node) for p in placement.place(stage)) == runtime_placement(stage, tmp_path)


@pytest.mark.parametrize("stage", SINGLE)
def test_the_schematic_draws_every_pod_of_the_stage_where_the_lab_runs_it(stage, tmp_path):
    topo = diagrams.from_stage(stage)
    assert Counter((p.service, p.version) for p in topo.pods) == declared_apps(stage)
    drawn = Counter(p.node for p in topo.pods) + Counter(p.node for p in topo.proxies if p.role != "sidecar")
    assert drawn == Counter(node for (_, node), count in runtime_placement(stage, tmp_path).items() for _ in range(count))
    assert [n.name for n in topo.nodes] == [f"node-{i}" for i in range(1, stages.nodes_for(stage) + 1)]


@pytest.mark.parametrize("stage", SINGLE)
def test_reviews_v3_is_drawn_on_the_node_the_stage_places_it(stage, tmp_path):
    where = [node for (workload, node) in runtime_placement(stage, tmp_path) if workload == "reviews-v3"]
    assert [p.node for p in diagrams.from_stage(stage).pods if (p.service, p.version) == ("reviews", "v3")] == where


def test_every_proxy_replica_is_drawn():
    two = diagrams.from_stage("router")
    assert sorted(p.node for p in two.proxies if p.role == "router") == ["node-2", "node-3"]
    five = diagrams.from_stage("control-plane")
    assert [p.node for p in five.proxies if p.role == "control-plane"] == ["node-1"]  # installed first
    assert len(five.sidecars()) == len(five.pods) == 7


def test_stage3_calls_pass_the_node_proxies_of_the_callers_and_callees_nodes():
    topo = diagrams.from_stage("per-node")
    node_of = {p.id: p.node for p in (*topo.pods, *topo.proxies)}
    proxy_nodes = {p.id for p in topo.proxies if p.role == "node"}
    hops = [e for e in topo.edges if e.label in ("out", "in")]
    assert hops
    for edge in hops:
        pod, proxy = (edge.src, edge.dst) if edge.label == "out" else (edge.dst, edge.src)
        assert proxy in proxy_nodes and node_of[pod] == node_of[proxy], (edge.src, edge.dst, edge.label)


def test_the_multicluster_drawing_names_every_pod_its_manifests_place():
    six = diagrams.from_stage(6)  # placed per cluster (tests/unit/test_stage6_schematic.py); no pod needs a new name
    assert {(p.cluster, p.name) for p in six.pods} == {(p.cluster, p.name) for p in info.get(6).schematic.parts
                                                       if not p.role}
