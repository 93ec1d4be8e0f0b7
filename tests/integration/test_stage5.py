"""Stage 5 on the local backend: injected sidecars configured over real xDS by meshlab's control plane.

Every east-west call passes both sidecars and names the verified caller; one VirtualService reroutes every
sidecar (no ConfigMap touched); a bad one changes nothing; STRICT refuses a plaintext client; an
AuthorizationPolicy answers 403; with the control plane dead traffic flows and a new pod waits for it.
One lab for the module, taken down by the last test, which checks for leaks."""

from __future__ import annotations

import time

import pytest

import meshlab
from meshlab import traffic
from meshlab.stages import controlplane
from meshlab.checks.stats import required_samples, split_matches
from traces import east_west
from labs import running

pytestmark = pytest.mark.integration

SUBSETS = controlplane.subsets_yaml()


def route_reviews(v1: int, v3: int) -> str:
    return controlplane.split_yaml({"v1": v1, "v3": v3})


@pytest.fixture(scope="module")
def lab():
    with running("stage5", "control-plane") as lab:
        yield lab


def test_every_east_west_call_passes_both_sidecars_with_the_callers_identity(lab):
    result = lab.traffic(n=200, concurrency=4)
    assert result.ok == 200, str(result)
    calls = east_west(result)
    assert {(a["service"], b["service"]) for a, _, b in calls} == {
        ("frontend", "catalog"), ("frontend", "reviews"), ("reviews", "ratings")}
    for caller, proxies, callee in calls:
        assert [(p["role"], p.get("dir")) for p in proxies] == [("sidecar", "out"), ("sidecar", "in")], proxies
        assert proxies[0]["name"] == caller["pod"] and proxies[1]["name"] == callee["pod"]
        assert proxies[1]["peer"] == f"spiffe://cluster.local/ns/default/sa/shop-{caller['service']}"


def test_sidecars_are_injected_not_written_in_the_manifests(lab):
    shop = [p for p in lab.pods() if p.service in ("frontend", "catalog", "reviews", "ratings")]
    assert shop and all([c.name for c in p.containers] == ["app", "istio-proxy"] for p in shop)
    assert "istio-proxy" not in lab.manifests()
    states = lab.proxy_status()
    assert len(states) == len(shop) and states.by_state() == {"SYNCED": len(shop)}, str(states)


def test_one_virtualservice_reroutes_every_sidecar(lab):
    lab.apply(SUBSETS)
    took = lab.convergence(route_reviews(0, 100))
    assert len(took.proxies) == len(lab.proxy_status()), str(took)  # every sidecar knows every service
    result = lab.traffic(n=60)
    assert result.ok == 60 and dict(result.versions["reviews"]) == {"v3": 60}, str(result)


def test_a_weighted_split_is_what_the_sidecars_do(lab):
    lab.apply(route_reviews(90, 10))
    n = required_samples({"v1": 90, "v3": 10})
    result = lab.traffic(n=n, concurrency=4)
    ok, _, why = split_matches(dict(result.versions["reviews"]), {"v1": 90, "v3": 10})
    assert result.ok == n and ok, why


def test_a_bad_virtualservice_changes_nothing(lab):
    before = {p.pod: p.version for p in lab.proxy_status()}
    with traffic.background(lab.url, concurrency=2) as load:
        with pytest.raises(meshlab.MeshlabError) as error:
            lab.apply(route_reviews(0, 0))  # weights are relative (50/40 is fine), but Istio refuses an all-zero split
        time.sleep(0.5)
    assert "\n" not in str(error.value) and "spec.http[0].route: total destination weight = 0" in str(error.value)
    assert load.result().failed == 0, str(load.result())
    assert {p.pod: p.version for p in lab.proxy_status()} == before


def test_deleting_a_destinationrule_a_route_still_names_answers_503_until_it_is_back(lab):
    lab.apply(SUBSETS)
    lab.apply(route_reviews(100, 0))
    lab.delete(SUBSETS)  # Kubernetes accepts the delete; Istio's sidecars then answer 503 for the subset
    states = lab.proxy_status()
    assert states.by_state() == {"SYNCED": len(states)}, str(states)
    assert "(no DestinationRule subset v1 for reviews.default.svc.cluster.local)" in str(states), str(states)
    assert [lab.call("frontend", "http://reviews:9080/").status for _ in range(3)] == [503] * 3
    assert lab.call("frontend", "http://ratings:9080/").ok  # routes to clusters that exist are untouched
    lab.apply(SUBSETS)
    assert lab.call("frontend", "http://reviews:9080/").ok


def test_strict_mtls_refuses_a_plaintext_client(lab):
    assert lab.call(None, "http://ratings:9080/").ok  # PERMISSIVE: plaintext still accepted
    lab.apply("""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: frontend}
spec:
  selector: {matchLabels: {app: frontend}}
  mtls: {mode: PERMISSIVE}
""")
    time.sleep(1)
    refused = lab.call(None, "http://ratings:9080/")
    assert not refused.ok and refused.status in (0, 502, 503), str(refused)
    assert lab.call("reviews", "http://ratings:9080/").ok
    assert lab.traffic(n=50).ok == 50  # the edge (outside the mesh) still reaches frontend


def test_an_authorization_policy_denies_an_unlisted_caller(lab):
    lab.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/shop-reviews]}}]
""")
    time.sleep(1)
    assert lab.call("catalog", "http://ratings:9080/").status == 403
    assert lab.call("reviews", "http://ratings:9080/").ok


def test_without_the_control_plane_traffic_flows_and_new_pods_wait(lab, no_leaks):
    lab.kill(pod="meshlab-controlplane")
    assert lab.traffic(n=100).ok == 100
    with pytest.raises(meshlab.MeshlabError):
        lab.restart("deployment/catalog-v1", timeout=5)  # its new sidecar gets no config: never ready
    lab.restore()
    assert lab.traffic(n=50).ok == 50
    lab.down()
