"""Stages 2-4 on real kind clusters, as on the local backend: 50 requests all succeed, every east-west call
passes the stage's proxies, and killing one proxy reaches exactly as far as the stage says.

Opt-in: `.venv/bin/python -m pytest -m kind tests/kind` (needs Docker running, kind and kubectl; one
cluster per stage, created and deleted in turn; the first run pulls the node, Envoy and python images).
"""

from __future__ import annotations

import time

import pytest

import meshlab
from meshlab import settle, stages
from meshlab.backends.kind import KindBackend
from traces import east_west

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]
N = 50


def app_pods(lab):
    return [p for p in lab.pods() if p.labels.get("version")]


def all_ok(lab, n: int = 20, wait: float = 90.0):
    """n requests in a row succeed within `wait` seconds (a thawed pod takes a moment to be back in DNS)."""
    deadline = time.monotonic() + wait
    while True:
        result = lab.traffic(n=n)
        if result.ok == n or time.monotonic() > deadline:
            return result
        time.sleep(2)


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda stage: f"stage{stage}")
def lab(request):
    found = KindBackend.availability()
    if not found.ok:
        pytest.skip(f"kind backend not available here: missing {', '.join(found.missing)}")
    lab = meshlab.Lab(f"kind-stage{request.param}", backend="kind")
    try:
        lab.up(stage=request.param, wait=600, quiet=True)
        assert settle.wait_serving(lab.url, timeout=120), "the edge never served the stage"
        yield lab
    finally:
        lab.down()


def test_the_cluster_has_the_stages_shape(lab):
    nodes = lab.nodes()
    workers = {n.name for n in nodes if not n.name.endswith("-control-plane")}
    assert len(nodes) == stages.nodes_for(lab.stage, "kind") and all(n.ready for n in nodes)
    assert {p.node for p in app_pods(lab)} <= workers  # the control-plane node runs Kubernetes and the edge
    if lab.stage == 3:
        assert sorted(p.node for p in lab.proxies() if p.role == "node") == sorted(workers)


def test_50_requests_succeed_through_the_stages_proxies(lab):
    result = lab.traffic(n=N)
    assert result.ok == N, str(result)
    assert all(path["hops"][0].get("role") == "edge" for path in result.paths)
    calls = east_west(result)
    assert {(a["service"], b["service"]) for a, _, b in calls} == {
        ("frontend", "catalog"), ("frontend", "reviews"), ("reviews", "ratings")}
    proxies = {p.name: p for p in lab.proxies()}
    for caller, hops, callee in calls:
        if lab.stage == 2:
            assert [(h["role"], proxies[h["name"]].role) for h in hops] == [("router", "router")], (caller, callee)
        elif lab.stage == 3:  # out through the caller's node proxy, in through the callee's
            assert [(h["role"], h.get("dir")) for h in hops] == [("node", "out"), ("node", "in")], (caller, callee)
            assert [proxies[h["name"]].node for h in hops] == [caller["node"], callee["node"]], (caller, callee)
        else:
            assert [(h["role"], h["name"], h.get("dir")) for h in hops] == [
                ("sidecar", caller["pod"], "out"), ("sidecar", callee["pod"], "in")], (caller, callee)


def test_killing_one_proxy_reaches_as_far_as_the_stage_says(lab):
    pods = app_pods(lab)
    if lab.stage == 2:
        result = lab.blast_radius(kill=dict(proxy="router"), n=N)
        assert sorted(result.killed) == sorted(f"{p.pod}/envoy" for p in lab.proxies() if p.role == "router")
        assert result.calls_after and result.failed_after == result.calls_after, str(result)
        assert result.before.ok == N and "whole mesh" in result.verdict
    elif lab.stage == 3:
        front = next(p.node for p in pods if p.service == "frontend")
        node = sorted({p.node for p in pods} - {front})[0]  # a node without the entry
        result = lab.blast_radius(kill=dict(proxy="node", node=node), n=N)
        assert result.failed_after, str(result)
        here = {p.name for p in pods if p.node == node}
        assert set(result.lost_pods) == here, str(result)  # every pod on the node, cut off both ways
        assert result.lost_nodes == [node] and "one node" in result.verdict
    else:
        pod = next(p.name for p in pods if p.service == "reviews" and p.version == "v2")
        result = lab.blast_radius(kill=dict(proxy="sidecar", pod=pod), n=N)
        assert result.killed == [f"{pod}/envoy"]
        failing = [r for r in result.rows if r.after_failed]
        assert failing and all(r.callee == "reviews" for r in failing), str(result)
        reviews = sum(r.after_calls for r in result.rows if r.callee == "reviews")
        assert 0 < result.failed_after < reviews, str(result)
        assert "one pod" in result.verdict
    assert not [p for p in lab.proxies() if p.state == "killed"]
    assert all_ok(lab).ok == 20  # restored


def test_down_deletes_the_stages_cluster(lab):
    lab.down()
    assert f"meshlab-kind-stage{lab.stage}" not in lab.backend.kind_clusters()
    lab.down()  # idempotent
