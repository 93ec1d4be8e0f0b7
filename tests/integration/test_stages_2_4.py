"""Stages 2-4 on the local backend with real Envoy: every east-west call passes the stage's proxies,
a failure reaches exactly as far as the stage says, the router retries, and a sidecar hot-reloads
a traffic split under load without dropping a request.

One lab per stage (module-scoped), taken down by that stage's last test, which checks for leaks."""

from __future__ import annotations

import time

import pytest

from meshlab import manifests, settle, traffic
from meshlab.checks.stats import required_samples, split_matches
from meshlab.stages import router, sidecar
from traces import east_west
from labs import started

pytestmark = pytest.mark.integration
SPLIT = {"v1": 80, "v2": 20, "v3": 0}


def start(stage: int):
    return started(f"stage{stage}", stage)


@pytest.fixture(scope="module")
def stage2():
    lab = start(2)
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def stage3():
    lab = start(3)
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def stage4():
    lab = start(4)
    yield lab
    lab.down()


def all_succeed(lab, n=200):
    result = lab.traffic(n=n, concurrency=4)
    assert result.ok == n, str(result)
    calls = east_west(result)
    assert {(a["service"], b["service"]) for a, _, b in calls} == {
        ("frontend", "catalog"), ("frontend", "reviews"), ("reviews", "ratings")}
    return calls


def app_pods(lab, node=None):
    return [p for p in lab.pods() if p.labels.get("version") and (node is None or p.node == node)]


# ---- stage 2: router mesh --------------------------------------------------------------------
def test_stage2_every_call_goes_through_the_router(stage2):
    routers = {p.name for p in stage2.proxies() if p.role == "router"}
    assert len(routers) == 2
    for caller, proxies, callee in all_succeed(stage2):
        assert [(h["role"], h["name"] in routers) for h in proxies] == [("router", True)], (caller, callee)


def test_stage2_killing_the_router_fails_every_east_west_call(stage2):
    result = stage2.blast_radius(kill=dict(proxy="router"), n=100)
    assert result.calls_after and result.failed_after == result.calls_after, str(result)
    assert result.before.ok == 100 and "whole mesh" in result.verdict
    assert stage2.traffic(n=20).ok == 20  # restored


def test_stage2_router_retries_hide_a_flaky_pod(stage2):
    flaky = next(p.name for p in app_pods(stage2) if p.service == "ratings")
    stage2.inject("ratings", errors=0.5, pod=flaky)
    try:
        stage2.apply(manifests.dump([router.config_map(retries=0)]))
        assert settle.wait_config(stage2, role="router", lacks="retry_policy")
        without = stage2.traffic(n=200)
        stage2.apply(manifests.dump([router.config_map(retries=2)]))
        assert settle.wait_config(stage2, role="router", has='"num_retries": 2')
        with_retries = stage2.traffic(n=200)
    finally:
        stage2.restore()
        stage2.apply(manifests.dump([router.config_map()]))
    assert without.success_rate < 0.95, str(without)
    assert with_retries.success_rate >= 0.99, str(with_retries)


def test_stage2_down_leaves_nothing(stage2, no_leaks):
    stage2.down()


# ---- stage 3: proxy per node -----------------------------------------------------------------
def test_stage3_every_call_leaves_through_the_callers_node_proxy_and_enters_through_the_callees(stage3):
    proxies = [p for p in stage3.proxies() if p.role == "node"]
    assert sorted(p.node for p in proxies) == ["node-1", "node-2", "node-3"]
    on_node = {p.name: p.node for p in proxies}
    for caller, hops, callee in all_succeed(stage3):
        assert [(h["role"], h.get("dir"), h["node"]) for h in hops] == [
            ("node", "out", caller["node"]), ("node", "in", callee["node"])], (caller, callee)
        assert [on_node[h["name"]] for h in hops] == [caller["node"], callee["node"]]


def off_entry_node(lab):
    """A node without the frontend (the entry), preferring the one that runs reviews v2."""
    frontend = next(p.node for p in app_pods(lab) if p.service == "frontend")
    nodes = [p.node for p in app_pods(lab) if p.service == "reviews" and p.version == "v2"]
    nodes += sorted({p.node for p in app_pods(lab)})
    return next(n for n in nodes if n != frontend)


def test_stage3_a_dead_node_proxy_cuts_its_pods_off_in_both_directions(stage3):
    node = off_entry_node(stage3)
    here = app_pods(stage3, node)
    there = [p for p in app_pods(stage3) if p.node != node]
    callee = next(s for s in ("catalog", "ratings", "reviews") if any(p.service == s for p in there))
    proxy = next(p.name for p in stage3.proxies() if p.role == "node" and p.node == node)
    stage3.kill(proxy=proxy)
    try:
        after = stage3.traffic(n=100)
        out_here = stage3.call(here[0].name, f"http://{callee}:9080/")  # a call made on the node
        out_there = stage3.call(there[0].name, f"http://{callee}:9080/")
    finally:
        stage3.restore()
        stage3.backend.wait_ready(timeout=60)
        settle.settle(stage3)
    reached = {h["pod"] for path in after.paths for h in path["hops"] if h["kind"] == "app"}
    assert not reached & {p.name for p in here}, str(after)  # nothing enters the node any more
    assert reached & {p.name for p in there}, str(after)  # pods elsewhere still serve
    assert out_here.status != 200 and out_there.status == 200, (out_here, out_there)  # nothing leaves it either


def test_stage3_the_blast_radius_of_a_node_proxy_is_every_pod_on_its_node(stage3):
    node = off_entry_node(stage3)
    result = stage3.blast_radius(kill=dict(proxy="node", node=node), n=200)
    here = {p.name for p in app_pods(stage3, node)}
    assert set(result.lost_pods) == here, str(result)  # the seed: every service on that node is unreachable
    assert result.lost_nodes == [node] and "one node" in result.verdict, str(result)
    assert f"lost connectivity: pods {', '.join(sorted(here))}; nodes {node}" in str(result)
    for row in result.rows:  # a call that failed was made on the node or was headed for a pod on it
        assert not row.after_failed or row.node == node or row.callee in {
            p.service for p in app_pods(stage3, node)}, str(result)


def test_stage3_down_leaves_nothing(stage3, no_leaks):
    stage3.down()


# ---- stage 4: sidecars ---------------------------------------------------------------------
def test_stage4_every_call_passes_both_sidecars(stage4):
    for caller, hops, callee in all_succeed(stage4):
        assert [(h["role"], h["name"], h.get("dir")) for h in hops] == [
            ("sidecar", caller["pod"], "out"), ("sidecar", callee["pod"], "in")], (caller, callee)


def test_stage4_killing_one_sidecar_fails_only_calls_through_that_pod(stage4):
    pod = next(p.name for p in app_pods(stage4) if p.service == "reviews" and p.version == "v2")
    result = stage4.blast_radius(kill=dict(proxy="sidecar", pod=pod), n=200)
    assert result.killed == [f"{pod}/envoy"]
    failing = [r for r in result.rows if r.after_failed]
    assert failing and all(r.callee == "reviews" for r in failing), str(result)
    reviews = sum(r.after_calls for r in result.rows if r.callee == "reviews")
    assert 0 < result.failed_after < reviews, str(result)  # only the share routed to that pod
    assert "one pod" in result.verdict


def test_stage4_hot_reload_of_a_split_drops_nothing_and_matches(stage4):
    config = manifests.dump([sidecar.config_map("frontend", "v1", weights={"reviews": SPLIT})])
    with traffic.background(stage4.url, concurrency=4) as load:
        time.sleep(1)  # some load before the change
        stage4.apply(config)
        assert settle.wait_config(stage4, pod="frontend", has='"weight": 80')
        time.sleep(1)  # and some after
    during = load.result()
    assert during.requests > 50 and during.failed == 0, str(during)
    result = stage4.traffic(n=required_samples(SPLIT), concurrency=8)
    ok, _, why = split_matches(result.versions["reviews"], SPLIT)
    assert ok and result.failed == 0, why


def test_stage4_down_leaves_nothing(stage4, no_leaks):
    stage4.down()
