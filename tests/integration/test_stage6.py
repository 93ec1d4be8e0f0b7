"""Stage 6 on the local backend: two complete runtimes composed into one lab, joined by east-west gateways.

Calls cross from cluster-1 to cluster-2 through cluster-2's gateway with end-to-end mTLS (the callee names the
caller's SPIFFE id); gateway stats move only where traces show a crossing; the legacy service outside both
clusters is reached through a ServiceEntry whose retries hide its errors; with locality failover, killing every
reviews pod of cluster-1 moves reviews to cluster-2 with few failures, a dead cluster-2 then fails only the calls
that needed it, restore brings traffic home, and a copy that fails while ready is ejected at once. Without a
locality policy calls cross as often as the other cluster holds endpoints. One lab for the module, taken down by
the last test."""

from __future__ import annotations

import collections
import json
import time
import urllib.error
import urllib.request

import pytest

import meshlab
from meshlab import diagrams
from meshlab.envoy.admin import Admin
from traces import east_west
from labs import running

pytestmark = pytest.mark.integration

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FAILOVER = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover: [{from: region-1, to: region-2}, {from: region-2, to: region-1}]
    outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 1, interval: 1s, baseEjectionTime: 30s,
                       maxEjectionPercent: 100}
"""


@pytest.fixture(scope="module")
def lab():
    with running("stage6", "multicluster") as lab:
        yield lab


def gateway_bytes(lab) -> dict[tuple[str, str], int]:
    """{(cluster, service): bytes its east-west gateway passed through to that service's pods}."""
    out = {}
    for proxy in (p for p in lab.proxies() if p.role == "gateway"):
        for stat, value in Admin(proxy.admin_url).stats().items():
            if stat.startswith("tcp.outbound_.9080_.") and stat.endswith(".downstream_cx_rx_bytes_total"):
                service = stat.split("_.")[-1].split(".")[0]
                out[(proxy.cluster, service)] = int(value)
    return out


def reviews_cluster(url: str) -> tuple[int, str]:
    """One request: (status, the cluster whose reviews pod answered, or '')."""
    try:
        with DIRECT.open(url, timeout=10) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""
    hops = [h for path in body.get("paths", []) for h in path if h.get("kind") == "app" and h.get("service") == "reviews"]
    return status, (hops[0].get("cluster", "") if hops else "")


def shares(result) -> tuple[dict, collections.Counter]:
    """({(caller, its cluster, callee): share of those calls answered in the other cluster}, {same key: calls})."""
    calls, crossed = collections.Counter(), collections.Counter()
    for path in result.paths:
        apps = [h for h in path["hops"] if h["kind"] == "app"]
        for a, b in zip(apps, apps[1:]):
            if a.get("cluster") and b.get("cluster"):
                key = (a["service"], a["cluster"], b["service"])
                calls[key] += path["count"]
                crossed[key] += path["count"] * (a["cluster"] != b["cluster"])
    return {key: crossed[key] / n for key, n in calls.items()}, calls


def gateway_weights(lab, service: str) -> list[int]:
    """The weight of every east-west gateway host (port 15443) in the frontend sidecar's cluster for a service."""
    frontend = next(p for p in lab.proxies() if p.role == "sidecar" and p.pod.startswith("frontend-"))
    status = Admin(frontend.admin_url).json("/clusters?format=json")
    name = f"outbound|9080||{service}.default.svc.cluster.local"
    hosts = next(c for c in status["cluster_statuses"] if c["name"] == name).get("host_statuses", [])
    return [h.get("weight", 1) for h in hosts if h["address"]["socket_address"]["port_value"] == 15443]


def test_the_shop_spans_two_clusters_and_crosses_through_the_peer_gateway_with_mtls(lab):
    assert lab.clusters() == ["cluster-1", "cluster-2"]
    placed = collections.defaultdict(set)
    for pod in lab.pods():
        placed[pod.service].add(pod.cluster)
    assert placed["frontend"] == placed["catalog"] == {"cluster-1"}
    assert placed["reviews"] == placed["ratings"] == placed["istio-eastwestgateway"] == {"cluster-1", "cluster-2"}
    assert {n.cluster for n in lab.nodes()} == {"cluster-1", "cluster-2"}
    assert all(p.cluster for p in lab.proxies())
    before = gateway_bytes(lab)
    result = lab.traffic(n=200, concurrency=4)
    after = gateway_bytes(lab)
    assert result.ok == 200, str(result)
    calls = [(a, proxies, b) for a, proxies, b in east_west(result) if b.get("cluster")]  # not the legacy service
    crossed = {(b["cluster"], b["service"]) for a, _, b in calls if a["cluster"] != b["cluster"]}
    assert ("cluster-2", "reviews") in crossed, crossed  # no locality policy yet: both clusters share the load
    for caller, proxies, callee in calls:
        assert proxies[-1]["cluster"] == callee["cluster"] and proxies[0]["cluster"] == caller["cluster"]
        assert proxies[-1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"
    # no locality policy: a call crosses as often as the other cluster holds the service's endpoints (binomially;
    # cluster-2's pods are one gateway endpoint weighted by their number, as Envoy keeps one host per address)
    ready = collections.Counter((p.service, p.cluster) for p in lab.pods() if p.ready)
    assert gateway_weights(lab, "reviews") == [ready[("reviews", "cluster-2")]]
    share, counts = shares(result)
    for (caller, here, callee), crossing in share.items():
        if callee in ("reviews", "ratings") and counts[(caller, here, callee)] >= 40:
            there = ready[(callee, "cluster-2" if here == "cluster-1" else "cluster-1")]
            expected, n = there / (there + ready[(callee, here)]), counts[(caller, here, callee)]
            assert abs(crossing - expected) <= 4.5 * (expected * (1 - expected) / n) ** 0.5, (caller, here, callee, crossing)
    print("\nshare crossing: " + ", ".join(f"{a} ({c}) -> {b}: {v:.0%} of {counts[(a, c, b)]}"
                                         for (a, c, b), v in sorted(share.items()) if b in ("reviews", "ratings")))
    grew = {key for key, value in after.items() if value > before.get(key, 0)}
    assert grew == crossed, f"gateway bytes grew for {sorted(grew)}, traces crossed into {sorted(crossed)}"
    topo = diagrams.from_lab(lab, result)  # the diagram draws a gateway arrow only into clusters traffic entered
    drawn = {g.cluster for g in topo.proxies if g.role == "gateway"
             for e in topo.edges if e.kind == "call" and g.id in (e.src, e.dst)}
    assert drawn == {cluster for cluster, _ in crossed}


def test_the_legacy_service_outside_the_clusters_is_retried_through_its_service_entry(lab):
    frontend = next(p for p in lab.proxies() if p.role == "sidecar" and p.pod.startswith("frontend-"))
    retries = "cluster.outbound|9080||payments.legacy.example.upstream_rq_retry"
    before = Admin(frontend.admin_url).stats().get(retries, 0)
    assert lab.call("frontend", "http://payments.legacy.example:9080/").ok
    lab.inject("payments", errors=0.2)
    try:
        result = lab.traffic(n=100, concurrency=4)
    finally:
        lab.restore()
    # 20% of first tries fail; with 3 retries a request fails only if 4 tries do (p = 0.0016 each)
    # every answered request called payments; a request the loaded machine left unanswered (client timeout 5 s)
    # counts among the tolerated failures
    answered = result.requests - result.statuses[0]
    assert result.ok >= 96 and result.calls["frontend->payments"]["total"] == answered, str(result)
    assert Admin(frontend.admin_url).stats()[retries] - before >= 5


def failover(lab, fault) -> tuple[int, float | None]:
    """Requests one after the other from the moment `fault()` is called until cluster-2 has answered reviews for a
    second: (how many failed, seconds until cluster-2 first answered, or None)."""
    started = time.monotonic()
    fault()
    failed, first_remote = 0, None
    while time.monotonic() - started < 20:
        status, cluster = reviews_cluster(lab.url)
        failed += status != 200
        if cluster == "cluster-2":
            first_remote = first_remote or time.monotonic() - started
            if time.monotonic() - started > first_remote + 1.0:
                break
    return failed, first_remote


def test_locality_failover_to_the_other_cluster_and_back(lab):
    took = lab.convergence(FAILOVER)  # a fleet: each cluster timed against its own revision
    assert set(took.clusters) == {"cluster-1", "cluster-2"} and took.proxies, took
    assert took.seconds == max(took.clusters.values()) < 10, took
    result = lab.traffic(n=100)
    assert result.ok == 100 and {b["cluster"] for a, _, b in east_west(result) if b["service"] == "reviews"} == {"cluster-1"}
    local = [p.name for p in lab.pods() if p.service == "reviews" and p.cluster == "cluster-1"]
    failed, first_remote = failover(lab, lambda: [lab.kill(pod=name) for name in local])
    assert first_remote is not None, "reviews never answered from cluster-2"
    print(f"\nfailover: {failed} failed requests, cluster-2 answered {first_remote * 1000:.0f} ms after the kill")
    assert failed <= 10
    result = lab.traffic(n=50)
    assert result.ok == 50, str(result)

    lab.kill(cluster="cluster-2")  # now reviews has nowhere to go; catalog and payments do not need cluster-2
    time.sleep(1)
    result = lab.traffic(n=30)
    assert result.ok == 0 and result.calls["frontend->reviews"]["failed"] == 30, str(result)
    assert result.calls["frontend->catalog"]["failed"] == result.calls["frontend->payments"]["failed"] == 0
    reached = {h.get("service") for path in result.paths for h in path["hops"] if h.get("kind") == "app"}
    assert {"frontend", "catalog", "payments"} <= reached and "reviews" not in reached, str(result)

    lab.restore()
    result = lab.traffic(n=100)
    assert result.ok == 100 and {b["cluster"] for a, _, b in east_west(result) if b["service"] == "reviews"} == {"cluster-1"}

    # cluster-1's copy fails while its pods stay ready: only ejection moves the calls, each ejection at once
    failed, first_remote = failover(lab, lambda: lab.backend.inject("reviews", errors=1.0, cluster="cluster-1"))
    lab.restore()
    print(f"failing while ready: {failed} failed requests, cluster-2 answered {(first_remote or 0) * 1000:.0f} ms "
          "after the fault")
    assert first_remote is not None and failed <= 6 and first_remote < 2.0  # 1 s merge window: ~50 failed


def test_down_removes_both_clusters_and_the_legacy_process(lab, no_leaks):
    lab.down()
    assert not meshlab.Lab("stage6").clusters()
