"""Stage 6 on two real kind clusters with real Istio multi-primary on two networks: calls cross from cluster-1 to
cluster-2 through cluster-2's east-west gateway with mTLS end to end, and reviews fail over to cluster-2 when
cluster-1 has none left (a DestinationRule with localityLbSetting and outlierDetection, as the lesson's).

Opt-in: `.venv/bin/python -m pytest -m kind tests/kind/test_kind_stage6.py` (needs Docker running with about 8 GiB
for Docker, kind, kubectl and istioctl of the pinned Istio version; `meshlab doctor` checks all of it). The first run
pulls the node, Istio, python and Traefik images into both clusters.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

import meshlab
from meshlab import settle, stages
from meshlab.backends import istio
from meshlab.backends.base import MeshlabError
from meshlab.backends import istio_multicluster as im
from meshlab.backends.kind import KindBackend
from meshlab.backends.kubectl import Runner, labels
from traces import east_west

pytestmark = [pytest.mark.kind, pytest.mark.timeout(5400)]
LAB, N = "kind-stage6", 200
FAILOVER = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-failover}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        enabled: true
        failover:
        - {from: region-1, to: region-2}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 1m
"""


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
    try:
        stages.is_multicluster("multicluster")
    except MeshlabError:
        return "this meshlab has no multi-cluster stage"
    return ""


@pytest.fixture(scope="module")
def lab():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = meshlab.Lab(LAB, backend="kind")
    getattr(lab, "_fit_backend", lambda number: None)(stages.number("multicluster"))
    if lab.clusters() != ["cluster-1", "cluster-2"]:
        pytest.skip("meshlab.Lab does not compose two kind clusters for stage 6 yet (a fleet of "
                    "KindBackend(lab, member='cluster-N'), see meshlab/backends/multikind.py)")
    try:
        lab.up(stage="multicluster", wait=1200, quiet=True)
        assert settle.wait_serving(lab.url, timeout=300), "the edge never served stage 6"
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def one():
    return KindBackend(LAB, member="cluster-1", progress=lambda m: None)


@pytest.fixture(scope="module")
def two():
    return KindBackend(LAB, member="cluster-2", progress=lambda m: None)


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


def test_200_requests_succeed(lab):
    result = lab.traffic(n=N)
    assert result.ok == N, str(result)


def test_a_trace_shows_a_call_that_crossed_to_cluster_2_with_mtls_end_to_end(lab):
    crossed = [(a, hops, b) for a, hops, b in east_west(lab.traffic(n=100))
               if cluster_of(a) == "cluster-1" and cluster_of(b) == "cluster-2"]
    assert crossed, "no call crossed from cluster-1 to cluster-2"
    caller, hops, callee = crossed[0]
    assert [(h["role"], h.get("dir")) for h in hops] == [("sidecar", "out"), ("sidecar", "in")]
    assert hops[1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"  # one root, two intermediates


def test_reviews_fail_over_to_cluster_2_when_cluster_1_has_none(lab, one):
    lab.apply(FAILOVER, "failover")
    deployments = [d for d in one.kubectl.items("deployments")
                   if labels(d["spec"]["template"]).get("app") == "reviews"]
    assert deployments, "cluster-1 runs no reviews"
    try:
        assert until(lambda: set(reviews_clusters(lab.traffic(n=50))) == {"cluster-1"}), \
            "with locality failover, frontend did not prefer cluster-1's reviews"
        for d in deployments:
            one.kubectl.run("scale", f"deployment/{d['metadata']['name']}", "--replicas=0", what="scale reviews down")
        assert until(lambda: not [p for p in one.pods() if p.labels.get("app") == "reviews"]), "reviews pods stayed"
        assert until(lambda: set(reviews_clusters(lab.traffic(n=50))) == {"cluster-2"}), "reviews did not fail over"
        result = lab.traffic(n=100)
        assert result.ok == 100 and set(reviews_clusters(result)) == {"cluster-2"}, str(result)
    finally:
        for d in deployments:
            one.kubectl.run("scale", f"deployment/{d['metadata']['name']}", f"--replicas={d['spec'].get('replicas', 1)}",
                            what="scale reviews back")
        lab.delete(FAILOVER)


def test_down_deletes_both_clusters(lab, one, two):
    lab.down()
    left = one.kind_clusters()
    assert one.cluster_name not in left and two.cluster_name not in left
    lab.down()  # idempotent
