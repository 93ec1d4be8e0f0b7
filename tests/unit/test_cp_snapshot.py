"""Snapshots of the shop: one per sidecar, consistent, parseable by xds-protos, versioned by content, valid for Envoy."""

from __future__ import annotations

import copy

import pytest
from google.protobuf import json_format

# every message the snapshots carry, so nested Any (@type) resolve
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

from meshlab.backends.base import MeshlabError
from meshlab.controlplane import envoy_check, model, snapshot

MESSAGES = {snapshot.LISTENER_TYPE: listener_pb2.Listener, snapshot.ROUTE_TYPE: route_pb2.RouteConfiguration,
            snapshot.CLUSTER_TYPE: cluster_pb2.Cluster, snapshot.ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment}
SHOP = (("frontend", "v1", 1), ("catalog", "v1", 1), ("reviews", "v1", 1), ("reviews", "v2", 1), ("reviews", "v3", 1),
        ("ratings", "v1", 2))


def shop_objects() -> list[dict]:
    services = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                 "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080, "targetPort": "http"}]}}
                for name in ("frontend", "catalog", "reviews", "ratings")]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}}
    return [namespace] + services


def shop_pods(injected=True) -> list[dict]:
    pods, index = [], 10
    for service, version, replicas in SHOP:
        for replica in range(replicas):
            index += 1
            pods.append({"name": f"{service}-{version}-5d4f9-{replica}", "namespace": "default", "ip": f"127.20.1.{index}",
                         "node": f"node-{index % 3 + 1}", "labels": {"app": service, "version": version},
                         "annotations": {}, "service_account": f"shop-{service}", "ready": True,
                         "injected": injected, "ports": {"http": 9080}})
    return pods


REVIEWS_DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": "default"},
              "spec": {"host": "reviews", "trafficPolicy": {"connectionPool": {"http": {"maxRequestsPerConnection": 1}},
                                                            "outlierDetection": {"consecutive5xxErrors": 3, "interval": "1s"}},
                       "subsets": [{"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2)] + [
                           {"name": "v3", "labels": {"version": "v3"},
                            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}, "tls": {"mode": "DISABLE"}}}]}}
RATINGS_DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "ratings"},
              "spec": {"host": "ratings.default.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}


def reviews_vs(v1=90, v2=10) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [
                {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}, {"uri": {"regex": "^/beta/[a-z]+"}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v3"}}],
                 "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 50}}}},
                {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": v1},
                           {"destination": {"host": "reviews", "subset": "v2"}, "weight": v2}],
                 "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx,503"}, "timeout": "2s"}]}}


POLICIES = [
    {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default", "namespace": "mesh-system"},
     "spec": {"mtls": {"mode": "STRICT"}}},
    {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "catalog", "namespace": "default"},
     "spec": {"selector": {"matchLabels": {"app": "catalog"}}, "mtls": {"mode": "DISABLE"}}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "ratings", "namespace": "default"},
     "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "rules": [
         {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/shop-reviews"], "namespaces": ["default"]}}],
          "to": [{"operation": {"methods": ["GET"], "notPaths": ["*.secret"]}}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "no-admin", "namespace": "mesh-system"},
     "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]},
                                          {"from": [{"source": {"notNamespaces": ["default", "mesh-system"]}}]}]}},
]


def shop(extra=(), revision=7, pods=None) -> model.Model:
    return model.from_watch({"revision": revision, "cluster": "", "objects": shop_objects() + list(extra),
                             "pods": shop_pods() if pods is None else pods})


FULL = shop([REVIEWS_DR, RATINGS_DR, reviews_vs()] + POLICIES)


def node_of(snapshots: dict, pod_prefix: str) -> str:
    return next(node for node in snapshots if node.split("~")[2].startswith(pod_prefix))


# ---- model ----

def test_from_watch_reads_services_pods_and_policies():
    m = FULL
    assert m.revision == 7
    assert [s.fqdn for s in m.services] == [f"{n}.default.svc.cluster.local" for n in ("catalog", "frontend", "ratings", "reviews")]
    reviews = m.service("reviews.default.svc.cluster.local")
    assert [p.name for p in m.pods_of(reviews)] == ["reviews-v1-5d4f9-0", "reviews-v2-5d4f9-0", "reviews-v3-5d4f9-0"]
    assert [s.name for s in m.services_of(m.pod("ratings-v1-5d4f9-1", "default"))] == ["ratings"]
    assert {p.kind for p in m.policies} == {"VirtualService", "DestinationRule", "PeerAuthentication", "AuthorizationPolicy"}
    assert m.of_kind("DestinationRule")[1].namespace == "default"  # a namespace-less object lands in default
    with pytest.raises(TypeError):
        m.services[0].selector["app"] = "x"


def test_identity_and_node_id_round_trip():
    pod = FULL.pod("reviews-v2-5d4f9-0", "default")
    assert pod.identity == "spiffe://cluster.local/ns/default/sa/shop-reviews"
    assert pod.node_id == "sidecar~127.20.1.14~reviews-v2-5d4f9-0.default~default.svc.cluster.local"
    assert model.parse_node_id(pod.node_id) == ("127.20.1.14", "reviews-v2-5d4f9-0", "default")
    assert FULL.by_node_id(pod.node_id) == pod
    assert model.spiffe_id("prod", "") == "spiffe://cluster.local/ns/prod/sa/default"


@pytest.mark.parametrize("bad", ["router~1.2.3.4~x.default~default.svc.cluster.local", "sidecar~1.2.3.4~nodots~x",
                                 "sidecar~1.2.3.4~pod.ns~other.svc.cluster.local", "garbage"])
def test_parse_node_id_refuses_other_ids(bad):
    with pytest.raises(ValueError):
        model.parse_node_id(bad)


@pytest.mark.parametrize("host,expected", [
    ("reviews", "reviews.default.svc.cluster.local"),
    ("reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"),
    ("reviews.prod", "reviews.prod"),  # as Istio: only a short name (no dot) is read in the rule's namespace
    ("*", "*"),
])
def test_resolve_host(host, expected):
    assert model.resolve_host(host, "default") == expected


# ---- snapshots ----

def test_build_all_one_snapshot_per_injected_pod_with_an_ip():
    pods = shop_pods()
    pods[0]["injected"] = False
    pods[1]["ready"] = False  # a proxy starts before its app is ready: it still gets config
    pods[2]["ip"] = ""
    snapshots = snapshot.build_all(shop(pods=pods))
    assert len(snapshots) == len(pods) - 2
    assert all(node.startswith("sidecar~127.20.1.") for node in snapshots)


def test_resource_names_follow_istio():
    snap = snapshot.build_all(FULL)[node_of(snapshot.build_all(FULL), "frontend")]
    assert snap.names(snapshot.LISTENER_TYPE) == {"virtualOutbound", "virtualInbound"}
    assert snap.names(snapshot.ROUTE_TYPE) == {"9080"}
    assert {"outbound|9080|v2|reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local",
            "inbound|9080||"} <= snap.names(snapshot.CLUSTER_TYPE)
    assert snap.names(snapshot.ENDPOINT_TYPE) == snap.names(snapshot.CLUSTER_TYPE) - {"inbound|9080||"}


@pytest.mark.parametrize("m", [shop(), FULL], ids=["bare", "policies"])
def test_every_snapshot_is_consistent_and_parses_into_protobuf(m):
    for node, snap in snapshot.build_all(m).items():
        assert snap.consistent() == [], node
        for type_url, items in snap.resources.items():
            for name, body in items.items():
                json_format.ParseDict(body, MESSAGES[type_url]())


def test_version_is_stable_for_the_same_input_and_changes_with_a_virtual_service():
    before = snapshot.build_all(FULL)
    again = snapshot.build_all(shop([REVIEWS_DR, RATINGS_DR, reviews_vs()] + POLICIES, revision=8))
    assert {n: s.version for n, s in before.items()} == {n: s.version for n, s in again.items()}
    after = snapshot.build_all(shop([REVIEWS_DR, RATINGS_DR, reviews_vs(50, 50)] + POLICIES))
    assert all(before[n].version != after[n].version for n in before)


def test_policy_for_one_workload_changes_only_its_snapshot():
    before = snapshot.build_all(shop())
    allow = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "x"},
             "spec": {"selector": {"matchLabels": {"app": "catalog"}}}}
    after = snapshot.build_all(shop([allow]))
    assert [n.split("~")[2] for n in before if before[n].version != after[n].version] == ["catalog-v1-5d4f9-0.default"]


def test_shop_translation_end_to_end():
    snaps = snapshot.build_all(FULL)
    frontend = snaps[node_of(snaps, "frontend")]
    hosts = {h["name"]: h for h in frontend.resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"]}
    reviews = hosts["reviews.default.svc.cluster.local:9080"]
    assert reviews["domains"][-1] == "reviews"
    assert [r["match"] for r in reviews["routes"]] == [
        {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
        {"safe_regex": {"regex": "^/beta/[a-z]+"}}, {"prefix": "/"}]
    assert reviews["routes"][2]["route"]["weighted_clusters"]["clusters"][1] == {
        "name": "outbound|9080|v2|reviews.default.svc.cluster.local", "weight": 10}
    clusters = frontend.resources[snapshot.CLUSTER_TYPE]
    assert "transport_socket" in clusters["outbound|9080||ratings.default.svc.cluster.local"]  # ISTIO_MUTUAL
    assert "transport_socket_matches" in clusters["outbound|9080||catalog.default.svc.cluster.local"]
    catalog = frontend.resources[snapshot.ENDPOINT_TYPE]["outbound|9080||catalog.default.svc.cluster.local"]
    assert "metadata" not in catalog["endpoints"][0]["lb_endpoints"][0]  # catalog's mTLS is DISABLEd
    inbound = {ch["name"] for ch in frontend.resources[snapshot.LISTENER_TYPE]["virtualInbound"]["filter_chains"]}
    assert inbound == {"inbound-mtls"}  # STRICT mesh-wide
    ratings = snaps[node_of(snaps, "ratings")].resources[snapshot.LISTENER_TYPE]["virtualInbound"]
    filters = ratings["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    assert [f["typed_config"].get("rules", {}).get("action") for f in filters] == ["DENY", "ALLOW", None]
    clusters = snaps[node_of(snaps, "ratings")].resources[snapshot.CLUSTER_TYPE]
    v3 = clusters["outbound|9080|v3|reviews.default.svc.cluster.local"]
    assert v3["lb_policy"] == "RANDOM" and "transport_socket_matches" not in v3 and "transport_socket" not in v3
    assert clusters["outbound|9080|v2|reviews.default.svc.cluster.local"]["outlier_detection"]["consecutive_5xx"] == 3


def test_routes_to_undefined_subsets_go_to_the_blackhole_and_are_reported():
    snaps = snapshot.build_all(shop([reviews_vs()]))  # subsets v1/v2/v3 named, but no DestinationRule
    frontend = snaps[node_of(snaps, "frontend")]
    assert frontend.consistent() == []  # pushable: the proxy answers 503 for those routes, as Istio's does
    assert "route config 9080: virtual host reviews.default.svc.cluster.local:9080 routes to undefined cluster " \
           "outbound|9080|v3|reviews.default.svc.cluster.local (no DestinationRule subset v3 for " \
           "reviews.default.svc.cluster.local)" in frontend.closed
    assert "BlackHoleCluster" in frontend.resources[snapshot.CLUSTER_TYPE]
    assert snapshot.refusal({}, snaps).startswith("the config for frontend-")  # a new apply of it is refused
    assert snapshot.refusal(snaps, snaps) is None  # ... but once there (a DestinationRule deleted), others go on
    assert envoy_check.validate(frontend, "vs.yaml") is None


def test_consistent_reports_dangling_references():
    snaps = snapshot.build_all(shop([reviews_vs()]))
    good = snapshot.build_all(FULL)[node_of(snaps, "frontend")]
    resources = copy.deepcopy(good.resources)
    del resources[snapshot.ROUTE_TYPE]["9080"]
    del resources[snapshot.ENDPOINT_TYPE]["outbound|9080||catalog.default.svc.cluster.local"]
    tls = resources[snapshot.CLUSTER_TYPE]["outbound|9080||ratings.default.svc.cluster.local"]["transport_socket"]
    tls["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"] = "mine"
    assert sorted(snapshot.Snapshot.of(resources).consistent()) == [
        "cluster outbound|9080||catalog.default.svc.cluster.local: endpoints "
        "outbound|9080||catalog.default.svc.cluster.local (EDS) are not defined",
        "cluster outbound|9080||ratings.default.svc.cluster.local: secret mine (SDS) is not provided",
        "listener virtualOutbound: route config 9080 (RDS) is not defined"]


def test_envoy_accepts_the_shop_snapshot():
    snaps = snapshot.build_all(FULL)
    for prefix in ("ratings", "catalog"):  # RBAC + STRICT, and a workload with mTLS disabled
        assert envoy_check.validate(snaps[node_of(snaps, prefix)], "shop.yaml") is None


def test_envoy_rejection_is_one_line_with_its_reason():
    snaps = snapshot.build_all(FULL)
    resources = copy.deepcopy(snaps[node_of(snaps, "frontend")].resources)
    hosts = resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"]
    hosts[1]["domains"] = hosts[0]["domains"]
    with pytest.raises(MeshlabError) as caught:
        envoy_check.validate(snapshot.Snapshot.of(resources), "shop.yaml")
    assert caught.value.message.startswith("shop.yaml: Envoy would reject the sidecar config")
    assert "Only unique values for domains are permitted" in caught.value.message
    assert "\n" not in str(caught.value)


def test_validate_bootstrap_is_static():
    boot = envoy_check.bootstrap(snapshot.build_all(FULL)[node_of(snapshot.build_all(FULL), "reviews-v1")])
    text = str(boot)
    assert "'ads'" not in text and "eds_cluster_config" not in text and "'rds'" not in text
    assert {s["name"] for s in boot["static_resources"]["secrets"]} == {"default", "ROOTCA"}


@pytest.mark.parametrize("state", [FULL, shop([reviews_vs()]), shop([REVIEWS_DR])], ids=["full", "dangling", "dr"])
def test_a_build_that_shares_parts_gives_every_proxy_what_its_own_build_gives(state):
    together = snapshot.build_all(state)
    for pod in state.pods:
        alone = snapshot.build(state, pod)  # nothing shared, every resource hashed on its own
        assert together[pod.node_id].version == alone.version
        assert together[pod.node_id].resources == alone.resources and together[pod.node_id].closed == alone.closed
    frontend, ratings = together[node_of(together, "frontend")], together[node_of(together, "ratings")]
    assert frontend.resources[snapshot.ROUTE_TYPE]["9080"] is ratings.resources[snapshot.ROUTE_TYPE]["9080"]  # one copy


def test_the_version_follows_the_content_only():
    resources = {snapshot.CLUSTER_TYPE: {"a": {"name": "a", "type": "STATIC"}}}
    same = {snapshot.CLUSTER_TYPE: {"a": {"type": "STATIC", "name": "a"}}}
    other = {snapshot.CLUSTER_TYPE: {"a": {"name": "a", "type": "EDS"}}}
    assert snapshot.content_version(resources) == snapshot.content_version(same) == \
        snapshot.content_version(same, digests={})
    assert snapshot.content_version(resources) != snapshot.content_version(other)
    renamed = {snapshot.CLUSTER_TYPE: {"b": {"name": "a", "type": "STATIC"}}}
    assert snapshot.content_version(resources) != snapshot.content_version(renamed)
