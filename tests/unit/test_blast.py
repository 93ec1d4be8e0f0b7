"""Blast radius from traces: calls per caller pod, charged to the failing hop, and the verdict."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from meshlab import blast, cli
from meshlab.backends.base import MeshlabError, ProxyInfo
from meshlab.traffic import TrafficResult, normalize_hop


def app(service, pod, node):
    return {"kind": "app", "service": service, "version": "v1", "pod": pod, "node": node}


def proxy(role, name, node):
    return {"kind": "proxy", "role": role, "name": name, "node": node}


def err(target, status=503):
    return {"kind": "error", "target": target, "status": status}


FE, RV, RT = app("frontend", "fe-1", "node-1"), app("reviews", "rv-2", "node-2"), app("ratings", "rt-3", "node-3")
NP1, NP2 = proxy("node", "np-1", "node-1"), proxy("node", "np-2", "node-2")


def result(*chains) -> TrafficResult:
    """A traffic result from (count, hops) pairs; ok = requests whose chains have no error."""
    paths = [{"hops": [normalize_hop(h) for h in hops], "count": count} for count, hops in chains]
    total = max(sum(c for c, _ in chains), 1)
    failed = sum(c for c, hops in chains if hops[-1]["kind"] == "error")
    return TrafficResult(requests=total, ok=total - failed, failed=failed, paths=paths)


def calls(hops):
    return [(c["pod"], callee, ok) for c, callee, ok in blast.chain_calls([normalize_hop(h) for h in hops])]


def test_chain_calls_reads_reached_and_failed_calls():
    assert calls([FE, NP1, RV, NP2, RT]) == [("fe-1", "reviews", True), ("rv-2", "ratings", True)]
    assert calls([FE, NP1, RV, err("ratings")]) == [("fe-1", "reviews", True), ("rv-2", "ratings", False)]
    assert calls([FE, err("reviews")]) == [("fe-1", "reviews", False)]


def test_a_callee_that_answers_with_its_own_error_fails_the_call_to_it():
    assert calls([FE, RV, RT, err("ratings", 500)]) == [("fe-1", "reviews", True), ("rv-2", "ratings", False)]


def measured(scope, killed_pods, services, before, after):
    return blast.BlastRadius({"proxy": "x"}, [f"{p}/envoy" for p in killed_pods], scope, killed_pods, services,
                             before, after)


def test_a_node_proxy_kill_is_reported_per_caller_node():
    before = result((10, [FE, NP1, RV, NP2, RT]))
    after = result((10, [FE, NP1, RV, err("ratings")]))
    br = measured("node", {"np-2": "node-2"}, [], before, after)
    row = next(r for r in br.rows if r.pod == "rv-2")
    assert (row.before_calls, row.before_failed, row.after_calls, row.after_failed) == (10, 0, 10, 10)
    assert br.lost_pods == ["rv-2"] and br.lost_nodes == ["node-2", "node-3"]  # node-3: nothing there still worked
    assert br.unseen == ["rt-3"]  # its only caller was cut off: the run cannot tell
    assert br.verdict.startswith("the pods on node-2 were cut off (rv-2): 10 of 20 east-west calls failed")
    assert "one node" in br.verdict


# Stage 3 as Linkerd 1 ran it: a call passes the caller's node proxy and the callee's. node-3's proxy dies.
F2, C1, V1_3, V2_3, R1, R3 = (app("frontend", "fe", "node-2"), app("catalog", "cat", "node-1"),
                              app("reviews", "rv3", "node-1"), app("reviews", "rv2", "node-3"),
                              app("ratings", "rt1", "node-1"), app("ratings", "rt3", "node-3"))
BEFORE_3 = result((50, [F2, C1]), (25, [F2, V2_3, R3]), (25, [F2, V1_3, R1]), (25, [F2, V1_3, R3]), (25, [F2, V2_3, R1]))
AFTER_3 = result((50, [F2, C1]), (25, [F2, err("reviews")]), (50, [F2, V1_3, R1]))


def test_a_dead_node_proxy_cuts_its_pods_off_in_both_directions():
    br = measured("node", {"np-3": "node-3"}, [], BEFORE_3, AFTER_3)
    assert br.failing_callers == [] and br.unreachable == ["rt3", "rv2"]  # called, never reached
    assert br.lost_pods == ["rt3", "rv2"] and br.lost_nodes == ["node-3"] and br.unseen == []
    assert br.verdict.startswith("the pods on node-3 were cut off (rt3, rv2): 25 of 175")
    assert "pods on other nodes kept working: blast radius = one node" in br.verdict
    assert "lost connectivity: pods rt3, rv2; nodes node-3" in str(br)  # the summary line says what the verdict says


def test_the_summary_of_a_layer_kill_names_every_node():
    after = result((10, [F2, err("catalog")]), (10, [F2, err("reviews")]))
    br = measured("layer", {"router-a": "node-3"}, [], BEFORE_3, after)
    assert br.lost_pods == ["fe"] and br.unseen == ["cat", "rt1", "rt3", "rv2", "rv3"]
    assert br.lost_nodes == ["node-1", "node-2", "node-3"]  # not just the frontend's node
    assert "whole mesh" in br.verdict and "only their callers were cut off" in str(br)


def test_a_layer_kill_that_breaks_every_call_is_the_whole_mesh():
    after = result((5, [FE, err("reviews")]), (5, [app("frontend", "fe-1", "node-1"), err("catalog")]))
    br = measured("layer", {"router-a": "node-2"}, [], result((5, [FE, RV])), after)
    assert br.failed_after == br.calls_after == 10
    assert "whole mesh" in br.verdict


def test_a_pod_kill_reaches_only_the_calls_routed_to_it():
    after = result((7, [FE, RV, RT]), (3, [FE, err("reviews")]))
    br = measured("pod", {"rv-9": "node-3"}, ["reviews"], result((10, [FE, RV, RT])), after)
    assert br.failed_after == 3 and "one pod" in br.verdict
    assert br.lost_pods == []  # rv-9 was never seen in the traces


def test_a_dead_sidecar_shows_its_pod_as_lost_in_the_summary():
    v2 = app("reviews", "rv-9", "node-3")
    before = result((5, [FE, RV, RT]), (5, [FE, v2, RT]))
    after = result((5, [FE, RV, RT]), (5, [FE, err("reviews")]))
    br = measured("pod", {"rv-9": "node-3"}, ["reviews"], before, after)
    assert br.lost_pods == ["rv-9"] and "lost connectivity: pods rv-9;" in str(br)


def test_nothing_broke_and_everything_failed_at_the_entry():
    ok = result((4, [FE, RV]))
    assert measured("layer", {}, [], ok, ok).verdict.startswith("nothing broke")
    dead = TrafficResult(requests=4, ok=0, failed=4)
    assert measured("pod", {"fe-1": "node-1"}, ["frontend"], ok, dead).verdict.startswith("every request failed at the entry")


def test_outputs_text_html_and_json():
    br = measured("node", {"np-2": "node-2"}, [], result((2, [FE, NP1, RV])), result((2, [FE, err("reviews")])))
    text = str(br)
    assert br.verdict in text and "fe-1" in text and "2/2" in text
    assert "<table>" in br._repr_html_() and "fde2e1" in br._repr_html_()
    data = json.loads(json.dumps(br.to_dict()))
    assert data["rows"][0]["after_failed"] == 2 and data["lost_nodes"] == ["node-1", "node-2"] and data["unseen"] == ["rv-2"]


PROXIES = [ProxyInfo("np-a", "node", "np-a", "node-1", "running"), ProxyInfo("np-b", "node", "np-b", "node-2", "running"),
           ProxyInfo("reviews-v2-abc-x/envoy", "sidecar", "reviews-v2-abc-x", "node-2", "running")]


def test_kill_targets_by_role_node_pod_or_name():
    lab = SimpleNamespace(proxies=lambda: PROXIES)
    assert blast.kill_targets(lab, {"proxy": "node"}) == [{"proxy": "np-a"}, {"proxy": "np-b"}]
    assert blast.kill_targets(lab, {"proxy": "node", "node": "node-2"}) == [{"proxy": "np-b"}]
    assert blast.kill_targets(lab, {"proxy": "sidecar", "pod": "reviews-v2"}) == [{"proxy": "reviews-v2-abc-x/envoy"}]
    assert blast.kill_targets(lab, {"node": "node-3"}) == [{"node": "node-3"}]
    assert blast.kill_targets(lab, {"pod": "ratings"}) == [{"pod": "ratings"}]
    for bad in ({}, {"proxy": "router"}, {"proxy": "node", "node": "node-9"}, {"cluster": "x"}):
        with pytest.raises(MeshlabError):
            blast.kill_targets(lab, bad)


def test_cli_parses_kill_specs():
    assert cli.parse_kill(["proxy=node", "node=node-2"]) == {"proxy": "node", "node": "node-2"}
    assert cli.parse_kill(["proxy=node,node=node-2"]) == {"proxy": "node", "node": "node-2"}
    with pytest.raises(MeshlabError):
        cli.parse_kill(["router"])
    args = cli.parser().parse_args(["blast-radius", "--kill", "proxy=router", "-n", "50", "--json"])
    assert (args.kill, args.n, args.json) == (["proxy=router"], 50, True)
