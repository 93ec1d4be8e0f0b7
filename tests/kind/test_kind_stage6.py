"""Stage 6 on two real kind clusters through `Lab.up(stage="multicluster")` with backend kind: Istio multi-primary on two
networks, calls crossing from cluster-1 to cluster-2 through cluster-2's east-west gateway with mTLS end to end, reviews
failing over to cluster-2 when cluster-1 has none left (a DestinationRule with localityLbSetting and outlierDetection, as
the lesson's), the legacy service outside both reached through its ServiceEntry, and nothing left after down (issue 8's
"done means" on kind).

Opt-in: `.venv/bin/python -m pytest -m kind tests/kind/test_kind_stage6.py` (needs Docker running with about 8 GiB and
4 CPUs for Docker, kind, kubectl and istioctl of the pinned Istio version; `meshlab doctor` checks all of it). The first
run pulls the node, Istio, python and Envoy images.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

import meshlab
from meshlab import settle
from meshlab.stages import multicluster
from meshlab.backends import istio, kindlegacy, multikind
from meshlab.backends import istio_multicluster as im
from meshlab.backends.kind import KindBackend
from meshlab.backends.kubectl import Runner, labels
from meshlab.kindfleet import KindFleet, is_kind_fleet
from traces import east_west

pytestmark = [pytest.mark.kind, pytest.mark.timeout(5400)]
LAB, N = "kind-stage6", 200
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
FAILOVER = multicluster.FAILOVER_RULE  # lesson 06's rule


def skip_reason() -> str:
    """Why this machine cannot run stage 6 on kind ("" when it can)."""
    found = KindBackend.availability()
    if not found.ok:
        return f"kind backend not available here: missing {', '.join(found.missing)}"
    if not shutil.which("istioctl"):
        return f"stage 6 on kind needs istioctl {istio.VERSION}, not on PATH; {istio.download_hint()}"
    version = istio.client_version(Runner())
    if not istio.version_ok(version):
        return f"stage 6 on kind needs istioctl {istio.VERSION} (found: {version or 'none'}); {istio.download_hint()}"
    return ""


@pytest.fixture(scope="module")
def lab():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = meshlab.Lab(LAB, backend="kind")
    try:
        lab.up(stage="multicluster", wait=1200, quiet=True)
        assert isinstance(lab.backend, KindFleet) and lab.clusters() == ["cluster-1", "cluster-2"]
        assert settle.wait_serving(lab.url, timeout=300), "the edge never served stage 6"
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def one(lab):
    return lab.backend.member("cluster-1")


@pytest.fixture(scope="module")
def two(lab):
    return lab.backend.member("cluster-2")


def until(check, wait: float = 120.0, every: float = 3.0):
    """check() until it returns something true, or its last answer after `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def cluster_of(hop: dict) -> str:
    """The cluster a hop ran in: its `cluster=` when the app stamps one, else the kind node's name."""
    if hop.get("cluster"):
        return hop["cluster"]
    return next((c for c in ("cluster-1", "cluster-2") if hop.get("node", "").startswith(f"meshlab-{LAB}-{c}-")), "")


def reviews_clusters(result) -> list[str]:
    """The cluster of every reviews instance that served a call from frontend."""
    return [cluster_of(callee) for caller, _, callee in east_west(result)
            if caller["service"] == "frontend" and callee["service"] == "reviews"]


def crossings(result) -> list[tuple[dict, list, dict]]:
    """Calls whose caller ran in cluster-1 and callee in cluster-2."""
    return [(a, hops, b) for a, hops, b in east_west(result)
            if cluster_of(a) == "cluster-1" and cluster_of(b) == "cluster-2"]


def reviews_endpoints(member: KindBackend) -> set[str]:
    """address:port of every healthy reviews endpoint that frontend's sidecar sends to (`istioctl proxy-config
    endpoint`): local pods at their pod IP, the other network's pods behind its east-west gateway."""
    [frontend] = [p.name for p in member.pods() if p.labels.get("app") == "frontend"]
    text = member.run(["istioctl", "proxy-config", "endpoint", f"{frontend}.default", "--context", member.kubectl.context,
                       "--cluster", REVIEWS, "-o", "json"], "istioctl proxy-config endpoint")
    found = set()
    for cluster in json.loads(text):
        for host in cluster.get("hostStatuses") or []:
            status = host.get("healthStatus") or {}
            if status.get("edsHealthStatus", "HEALTHY") == "HEALTHY" and not status.get("failedOutlierCheck"):
                socket = (host.get("address") or {}).get("socketAddress") or {}
                found.add(f"{socket.get('address')}:{socket.get('portValue')}")
    return found


def test_two_clusters_each_with_istiod_a_gateway_and_the_others_remote_secret(lab, one, two):
    for member, peer in ((one, two), (two, one)):
        assert member.cluster_name in member.kind_clusters()
        ready = [p for p in member.pods() if p.ready]
        assert [p for p in ready if p.labels.get("app") == "istiod"], f"istiod is not running in {member.member}"
        assert [p for p in ready if p.labels.get("istio") == "eastwestgateway"], f"no gateway in {member.member}"
        assert member.eastwest_address() == f"{member.node_address()}:{im.GATEWAY_PORT}"
        secrets = json.loads(member.kubectl.run("get", "secrets", "-l", "istio/multiCluster=true", "-o", "json",
                                                namespace="istio-system"))["items"]
        assert [s["metadata"]["name"] for s in secrets] == [f"istio-remote-secret-{peer.member}"]
        nodes = json.loads(member.kubectl.run("get", "nodes", "-o", "json", namespace=None))["items"]
        assert {labels(n).get(im.REGION_LABEL) for n in nodes} == {member.region}
    placed = {}
    for pod in lab.pods():
        placed.setdefault(pod.service, set()).add(pod.cluster)
    assert placed["frontend"] == placed["catalog"] == {"cluster-1"}
    assert placed["reviews"] == placed["ratings"] == {"cluster-1", "cluster-2"}


def test_200_requests_succeed_and_reach_the_legacy_service_outside(lab):
    result = lab.traffic(n=N)
    assert result.ok == N, str(result)
    assert result.calls["frontend->payments"]["total"] == N and result.calls["frontend->payments"]["failed"] == 0
    legacy = [b for a, _, b in east_west(result) if b["service"] == "payments"]
    assert legacy and {b.get("node") for b in legacy} == {"legacy-host"}  # the container, not a pod of either cluster
    assert lab.backend.legacy_address() and lab.backend.stage_options()["payments_address"] == lab.backend.legacy_address()


def test_a_trace_shows_a_call_that_crossed_to_cluster_2_with_mtls_end_to_end(lab):
    crossed = until(lambda: crossings(lab.traffic(n=100)), wait=60)
    assert crossed, "no call crossed from cluster-1 to cluster-2"
    caller, hops, callee = crossed[0]
    assert [(h["role"], h.get("dir")) for h in hops] == [("sidecar", "out"), ("sidecar", "in")]
    # the callee's sidecar verified the caller's certificate: one root, an intermediate per cluster
    assert hops[1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"


def test_reviews_fail_over_through_cluster_2s_gateway_when_cluster_1_has_none(lab, one, two):
    lab.apply(FAILOVER, "failover")
    deployments = [d for d in one.kubectl.items("deployments") if labels(d["spec"]["template"]).get("app") == "reviews"]
    assert deployments, "cluster-1 runs no reviews"
    try:
        assert until(lambda: set(reviews_clusters(lab.traffic(n=50))) == {"cluster-1"}), \
            "with locality failover, frontend did not prefer cluster-1's reviews"
        started, failed = time.monotonic(), 0
        for d in deployments:
            one.kubectl.run("scale", f"deployment/{d['metadata']['name']}", "--replicas=0", what="scale reviews down")

        def switched():
            nonlocal failed
            result = lab.traffic(n=20)
            failed += result.calls.get("frontend->reviews", {}).get("failed", 0)
            return set(reviews_clusters(result)) == {"cluster-2"}

        assert until(switched, every=0.5), "reviews did not fail over"
        print(f"\nfailover on kind: {failed} failed calls to reviews, cluster-2 served "
              f"{time.monotonic() - started:.1f} s after the scale-down")
        gateway = two.eastwest_address()
        assert until(lambda: reviews_endpoints(one) == {gateway}), \
            f"frontend's reviews endpoints are {reviews_endpoints(one)}, not only cluster-2's gateway {gateway}"
        result = lab.traffic(n=100)
        assert result.ok == 100 and set(reviews_clusters(result)) == {"cluster-2"}, str(result)
        for caller, hops, callee in crossings(result):
            assert hops[-1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"
    finally:
        for d in deployments:
            one.kubectl.run("scale", f"deployment/{d['metadata']['name']}", f"--replicas={d['spec'].get('replicas', 1)}",
                            what="scale reviews back")
        lab.delete(FAILOVER)


def test_down_leaves_nothing_of_either_cluster(lab, one, two):
    lab.down()
    left = one.kind_clusters()
    assert one.cluster_name not in left and two.cluster_name not in left
    assert not kindlegacy.ours(Runner(), LAB), "the legacy container is still there"
    assert not is_kind_fleet(LAB) and not multikind.ca_folder(LAB).exists()
    lab.down()  # idempotent
