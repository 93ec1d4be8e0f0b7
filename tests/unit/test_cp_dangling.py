"""Routes to undefined clusters -> the BlackHoleCluster, one table row per route shape."""

from __future__ import annotations

import pytest

from meshlab.controlplane.translate import dangling

KNOWN = {"outbound|9080|v1|reviews", "outbound|9080||ratings"}
V1, V2, V3 = "outbound|9080|v1|reviews", "outbound|9080|v2|reviews", "outbound|9080|v3|reviews"


def weighted(*pairs):
    return {"weighted_clusters": {"clusters": [{"name": n, "weight": w} for n, w in pairs]}}


@pytest.mark.parametrize("action, closed_action, missing", [
    ({"cluster": V1}, {"cluster": V1}, []),
    ({"cluster": V2}, {"cluster": dangling.BLACKHOLE}, [V2]),
    ({"cluster": V2, "timeout": "1s"}, {"cluster": dangling.BLACKHOLE, "timeout": "1s"}, [V2]),
    (weighted((V1, 80), (V2, 20)), weighted((V1, 80), (dangling.BLACKHOLE, 20)), [V2]),
    (weighted((V2, 30), (V1, 40), (V3, 30)), weighted((dangling.BLACKHOLE, 60), (V1, 40)), [V2, V3]),
    (weighted((V2, 50), (V3, 50)), weighted((dangling.BLACKHOLE, 100)), [V2, V3]),
    ({"cluster_header": "x-cluster"}, {"cluster_header": "x-cluster"}, []),
])
def test_close_action(action, closed_action, missing):
    assert dangling.close_action(action, KNOWN) == (closed_action, missing)


def test_close_keeps_direct_responses_and_names_what_it_closed():
    config = {"name": "9080", "virtual_hosts": [
        {"name": "reviews:9080", "routes": [{"match": {"prefix": "/"}, "route": {"cluster": V2}}]},
        {"name": "block_all", "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 404}}]}]}
    closed_config, closed = dangling.close(config, KNOWN)
    assert closed == ["route config 9080: virtual host reviews:9080 routes to undefined cluster "
                      "outbound|9080|v2|reviews (no DestinationRule subset v2 for reviews)"]
    assert closed_config["virtual_hosts"][0]["routes"][0]["route"] == {"cluster": dangling.BLACKHOLE}
    assert closed_config["virtual_hosts"][1] == config["virtual_hosts"][1]
    assert config["virtual_hosts"][0]["routes"][0]["route"] == {"cluster": V2}  # the input is left as it was
    assert dangling.close(closed_config, KNOWN | {dangling.BLACKHOLE}) == (closed_config, [])


@pytest.mark.parametrize("cluster, hint", [
    ("outbound|9080|v2|reviews", " (no DestinationRule subset v2 for reviews)"),
    ("outbound|8080||pay", " (no Service pay with port 8080)"),
    ("inbound|9080||", ""),
])
def test_missing_cluster_hint(cluster, hint):
    assert dangling.missing_cluster_hint(cluster) == hint


def test_proxy_status_warns_of_routes_that_answer_503_once_per_route():
    from meshlab.controlplane.cache import SnapshotCache
    from meshlab.controlplane.snapshot import Snapshot
    from meshlab.mesh import ProxyStatus, ProxyStatusTable

    problem = ("route config 9080: virtual host reviews:9080 routes to undefined cluster outbound|9080|v2|reviews "
               "(no DestinationRule subset v2 for reviews)")
    cache = SnapshotCache()
    node = "sidecar~127.9.1.10~frontend-a.default~default.svc.cluster.local"
    assert cache.set(node, Snapshot.of({}, closed=[problem]))
    assert cache.status()["proxies"][0]["closed"] == [problem]
    table = ProxyStatusTable([ProxyStatus("frontend-a", "frontend-a", "default", "SYNCED", "v", "v", closed=(problem,)),
                              ProxyStatus("reviews-b", "reviews-b", "default", "SYNCED", "v", "v", closed=(problem,)),
                              ProxyStatus("ratings-c", "ratings-c", "default", "SYNCED", "v", "v")])
    assert repr(table).splitlines()[-1] == (
        "warning: virtual host reviews:9080 routes to undefined cluster outbound|9080|v2|reviews "
        "(no DestinationRule subset v2 for reviews): 2 sidecar(s) answer 503")
    assert "warning" not in repr(ProxyStatusTable(table[2:]))
