"""Stage 6: two clusters, two networks -> remote endpoints behind east-west gateways, locality, gateway snapshots."""

from __future__ import annotations

from collections import Counter

import pytest
from google.protobuf import json_format

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2  # noqa: F401
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

from meshlab.controlplane import envoy_check, model, snapshot
from meshlab.controlplane.translate import endpoints

MESSAGES = {snapshot.LISTENER_TYPE: listener_pb2.Listener, snapshot.ROUTE_TYPE: route_pb2.RouteConfiguration,
            snapshot.CLUSTER_TYPE: cluster_pb2.Cluster, snapshot.ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment}
FQDN = "reviews.default.svc.cluster.local"
# (cluster, network, region, address block, [(app, version, replicas, node)])
CLUSTER_1 = ("cluster-1", "network-1", "region-1", "127.21", [
    ("frontend", "v1", 1, "node-1"), ("catalog", "v1", 1, "node-1"), ("reviews", "v1", 1, "node-1"),
    ("reviews", "v2", 1, "node-2"), ("reviews", "v3", 1, "node-2"), ("ratings", "v1", 2, "node-1")])
CLUSTER_2 = ("cluster-2", "network-2", "region-2", "127.22", [
    ("reviews", "v1", 1, "node-1"), ("reviews", "v2", 1, "node-1"), ("reviews", "v3", 1, "node-2"),
    ("ratings", "v1", 1, "node-2")])


def service(name, namespace="default", port=9080, selector=None):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector or {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def istio(kind, name, spec, namespace="default"):
    return {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def payload(shape, objects=(), gateway=True, revision=3):
    """One cluster's watch answer with the stage-6 additions (docs/multicluster.md)."""
    cluster, network, region, block, placement = shape
    nodes = [{"name": f"node-{i}", "labels": {model.REGION_LABEL: region, model.ZONE_LABEL: f"zone-{region[-1]}{z}"}}
             for i, z in ((1, "a"), (2, "b"))]
    pods, index = [], 10
    for app, version, replicas, node in placement:
        for replica in range(replicas):
            index += 1
            pods.append({"name": f"{app}-{version}-{replica}", "namespace": "default", "ip": f"{block}.1.{index}",
                         "node": node, "labels": {"app": app, "version": version}, "annotations": {},
                         "service_account": f"shop-{app}", "ready": True, "injected": True, "ports": {"http": 9080},
                         "host_ip": f"{block}.0.{node[-1]}"})
    if gateway:
        pods.append({"name": "istio-eastwestgateway-0", "namespace": "mesh-system", "ip": f"{block}.1.99", "node": "node-1",
                     "labels": {"istio": "eastwestgateway", "app": "istio-eastwestgateway"}, "annotations": {},
                     "service_account": "istio-eastwestgateway", "ready": True, "injected": False,
                     "ports": {"tls": 15443}, "host_ip": f"{block}.0.1", "host_ports": {"tls": 15443}})
    services = [service(n) for n in ("frontend", "catalog", "reviews", "ratings")]
    services.append(service("istio-eastwestgateway", "mesh-system", 15443))
    return {"revision": revision, "cluster": cluster, "network": network, "nodes": nodes,
            "objects": services + list(objects), "pods": pods}


def reviews_dr(traffic_policy=None):
    return istio("DestinationRule", "reviews", {"host": "reviews", "trafficPolicy": traffic_policy or {},
                                                "subsets": [{"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3)]})


OUTLIER = {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s"}}


def two(objects=(), remote_objects=(), gateway=True):
    """cluster-1's Model with cluster-2 as its peer."""
    return model.from_watches(payload(CLUSTER_1, objects), [payload(CLUSTER_2, remote_objects, gateway=gateway)])


def snaps_of(m):
    return snapshot.build_all(m)


def node_of(snaps, prefix):
    return next(n for n in snaps if n.split("~")[2].startswith(prefix))


def endpoints_of(snap, cluster):
    return snap.resources[snapshot.ENDPOINT_TYPE][cluster]["endpoints"]


def flat(groups):
    """(address, port, weight, priority, region, zone) of every lb endpoint."""
    return sorted((e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"],
                   e.get("load_balancing_weight", 1), g.get("priority", 0), g.get("locality", {}).get("region", ""),
                   g.get("locality", {}).get("zone", "")) for g in groups for e in g["lb_endpoints"])


# ---- model ----

def test_from_watches_reads_clusters_networks_localities_and_gateways():
    m = two(remote_objects=[service("only-remote"), reviews_dr()])
    assert (m.cluster, m.network, m.multicluster) == ("cluster-1", "network-1", True)
    frontend = m.pod("frontend-v1-0", "default")
    assert frontend.locality == model.Locality("region-1", "zone-1a") and frontend.cluster == "cluster-1"
    assert {p.cluster for p in m.remote_pods} == {"cluster-2"} and all(p.network == "network-2" for p in m.remote_pods)
    assert "only-remote.default.svc.cluster.local" in {s.fqdn for s in m.services}  # namespace sameness
    assert m.of_kind("DestinationRule") == ()  # config stays local (multi-primary)
    reviews = m.service(FQDN)
    assert [p.name for p in m.remote_pods_of(reviews)] == ["reviews-v1-0", "reviews-v2-0", "reviews-v3-0"]
    assert [g.gateway_address for g in m.gateways("network-2")] == [("127.22.0.1", 15443)]
    assert [g.name for g in m.gateways("network-1")] == ["istio-eastwestgateway-0"]


def test_single_cluster_payload_is_not_multicluster_and_a_pod_locality_field_wins():
    one = payload(CLUSTER_1)
    one.update(cluster="", network="")
    one.pop("nodes")
    one["pods"][0]["locality"] = {"region": "r", "zone": "z", "subzone": "s"}
    m = model.from_watch(one)
    assert not m.multicluster and m.remote_pods == ()
    assert m.pod("frontend-v1-0", "default").locality == model.Locality("r", "z", "s")
    assert m.pod("catalog-v1-0", "default").locality == model.Locality()


def test_peers_without_a_cluster_name_or_with_ours_are_ignored():
    same = payload(CLUSTER_1)
    anonymous = {**payload(CLUSTER_2), "cluster": ""}
    assert model.from_watches(payload(CLUSTER_1), [same, anonymous, {}]).remote_pods == ()
    assert model.merge is model.from_watches


@pytest.mark.parametrize("pod,expected", [
    ({"ip": "10.0.0.5", "ports": {"tls": 15443}, "host_ip": "10.0.0.1", "host_ports": {"tls": 31443}}, ("10.0.0.1", 31443)),
    ({"ip": "10.0.0.5", "ports": {"tls": 15443}, "host_ip": "10.0.0.1"}, ("10.0.0.5", 15443)),
    ({"ip": "10.0.0.5", "ports": {"status": 15021}, "host_ip": "10.0.0.1", "host_ports": {"status": 15021}},
     ("10.0.0.5", 15443)),
])
def test_gateway_address(pod, expected):
    gw = model.from_watch({"pods": [{"name": "gw", "labels": {"istio": "eastwestgateway"}, **pod}]}).pods[0]
    assert gw.is_gateway and gw.gateway_address == expected


def test_gateway_node_id_is_a_router_id():
    gw = two().pod("istio-eastwestgateway-0", "mesh-system")
    assert gw.node_id == "router~127.21.1.99~istio-eastwestgateway-0.mesh-system~mesh-system.svc.cluster.local"
    assert model.parse_proxy_id(gw.node_id) == ("router", "127.21.1.99", "istio-eastwestgateway-0", "mesh-system")
    assert two().by_node_id(gw.node_id) == gw
    with pytest.raises(ValueError):
        model.parse_node_id(gw.node_id)  # a sidecar id parser stays strict


# ---- EDS across networks ----

def test_a_remote_network_is_one_gateway_endpoint_weighted_by_its_pods_in_their_shared_locality():
    snaps = snaps_of(two([reviews_dr()]))
    frontend = snaps[node_of(snaps, "frontend")]
    groups = endpoints_of(frontend, f"outbound|9080||{FQDN}")
    assert flat(groups) == [("127.21.1.13", 15006, 1, 0, "region-1", "zone-1a"),
                            ("127.21.1.14", 15006, 1, 0, "region-1", "zone-1b"),
                            ("127.21.1.15", 15006, 1, 0, "region-1", "zone-1b"),
                            ("127.22.0.1", 15443, 3, 0, "region-2", "")]  # 3 pods in zone-2a and zone-2b
    gateway = [e for g in groups for e in g["lb_endpoints"] if e["endpoint"]["address"]["socket_address"]["port_value"] == 15443]
    assert all(e["metadata"] == {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}} for e in gateway)
    assert [g["load_balancing_weight"] for g in groups] == [1, 2, 3]
    v2 = flat(endpoints_of(frontend, f"outbound|9080|v2|{FQDN}"))  # one remote pod: its own locality
    assert v2 == [("127.21.1.14", 15006, 1, 0, "region-1", "zone-1b"), ("127.22.0.1", 15443, 1, 0, "region-2", "zone-2a")]


def address_counts(snaps):
    """Every (proxy, cluster, address) that a ClusterLoadAssignment lists more than once."""
    out = []
    for node, snap in snaps.items():
        for name, cla in snap.resources[snapshot.ENDPOINT_TYPE].items():
            seen = Counter(str(e["endpoint"]["address"]) for g in cla["endpoints"] for e in g["lb_endpoints"])
            out += [(node, name, address) for address, n in seen.items() if n > 1]
    return out


def test_no_endpoint_address_appears_twice_in_one_assignment():
    """Envoy would keep only the first copy (and its weight) of a repeated address."""
    for build in MODELS.values():
        assert address_counts(snaps_of(build())) == []


def remote_pod(name, network="network-2", zone="zone-2a", region="region-2", ready=True, injected=True, ip=None):
    return model.Pod(name, "default", ip or f"10.2.0.{len(name)}", "node-1", model.freeze({"app": "reviews"}),
                     model.freeze({}), "shop-reviews", ready, injected, model.freeze({"http": 9080}),
                     cluster=f"c-{network}", network=network, locality=model.Locality(region, zone))


def gateway_pod(name, network="network-2", address="10.9.0.1", ready=True):
    return model.Pod(name, "mesh-system", address, "node-1", model.freeze({"istio": "eastwestgateway"}),
                     model.freeze({}), "gw", ready, False, model.freeze({"tls": 15443}), cluster=f"c-{network}",
                     network=network)


PORT = model.ServicePort("http", 9080, 9080)
R2 = model.Locality("region-2")


@pytest.mark.parametrize("pods,gateways,expected", [
    ([remote_pod("a", zone="zone-2a"), remote_pod("bb", zone="zone-2b"), remote_pod("ccc", zone="zone-2c")],
     [gateway_pod("gw")], [(R2, "10.9.0.1", 15443, 3)]),
    ([remote_pod("a"), remote_pod("bb")], [gateway_pod("gw")], [(model.Locality("region-2", "zone-2a"), "10.9.0.1", 15443, 2)]),
    ([remote_pod("a", region="region-2"), remote_pod("bb", region="region-3", zone="zone-3a")], [gateway_pod("gw")],
     [(model.Locality(), "10.9.0.1", 15443, 2)]),  # a network over two regions: no locality in common
    ([remote_pod("a"), remote_pod("bb", zone="zone-2b"), remote_pod("ccc")],
     [gateway_pod("gw-1"), gateway_pod("gw-2", address="10.9.0.2")],
     [(R2, "10.9.0.1", 15443, 2), (R2, "10.9.0.2", 15443, 1)]),  # split over the gateways, one endpoint each
    ([remote_pod("a"), remote_pod("bb", ready=False), remote_pod("ccc", injected=False)], [gateway_pod("gw")],
     [(model.Locality("region-2", "zone-2a"), "10.9.0.1", 15443, 1)]),
    ([remote_pod("a")], [gateway_pod("gw", ready=False)], []),  # no ready gateway: unreachable, dropped
    ([remote_pod("a"), remote_pod("bb", network="network-3", region="region-3", zone="zone-3a")],
     [gateway_pod("gw"), gateway_pod("gw-3", network="network-3", address="10.9.3.1")],
     [(model.Locality("region-2", "zone-2a"), "10.9.0.1", 15443, 1), (model.Locality("region-3", "zone-3a"), "10.9.3.1", 15443, 1)]),
    ([remote_pod("a", network="network-1", ip="10.1.0.7")], [], [(model.Locality("region-2", "zone-2a"), "10.1.0.7", 15006, 1)]),
])
def test_remote_endpoints_table(pods, gateways, expected):
    m = model.Model(1, (), (), (), cluster="c-1", network="network-1", remote_pods=tuple(pods) + tuple(gateways))
    got = endpoints.remote_endpoints(m, pods, PORT, {})
    assert [(loc, e["endpoint"]["address"]["socket_address"]["address"],
             e["endpoint"]["address"]["socket_address"]["port_value"], e.get("load_balancing_weight", 1))
            for loc, e in got] == expected
    assert all(e["metadata"] == endpoints.ISTIO_TLS for _, e in got)


@pytest.mark.parametrize("localities,expected", [
    ([model.Locality("r", "z", "s")], model.Locality("r", "z", "s")),
    ([model.Locality("r", "z", "s"), model.Locality("r", "z", "t")], model.Locality("r", "z")),
    ([model.Locality("r", "z"), model.Locality("r", "y")], model.Locality("r")),
    ([model.Locality("r", "z"), model.Locality("q", "z")], model.Locality()),
])
def test_shared_locality(localities, expected):
    assert endpoints.shared_locality(localities) == expected


def test_clusters_to_remote_services_carry_istio_sni_and_every_cluster_identity():
    snaps = snaps_of(two([reviews_dr()]))
    cluster = snaps[node_of(snaps, "frontend")].resources[snapshot.CLUSTER_TYPE][f"outbound|9080|v2|{FQDN}"]
    tls = cluster["transport_socket_matches"][0]
    assert tls["match"] == {"tlsMode": "istio"}
    assert tls["transport_socket"]["typed_config"]["sni"] == f"outbound_.9080_.v2_.{FQDN}"
    sans = tls["transport_socket"]["typed_config"]["common_tls_context"]["combined_validation_context"]
    assert sans["default_validation_context"]["match_typed_subject_alt_names"][0]["matcher"] == {
        "exact": "spiffe://cluster.local/ns/default/sa/shop-reviews"}


@pytest.mark.parametrize("change,expected", [
    (lambda p: p["pods"].pop(), []),  # no gateway in network-2: its endpoints are unreachable, Istio drops them
    (lambda p: p["pods"][-1].update(ready=False), []),
    (lambda p: [pod.update(ready=False) for pod in p["pods"] if pod["labels"].get("version") == "v2"],
     []),
    (lambda p: p.update(network="network-1"), [("127.22.1.12", 15006, 1, 0, "region-2", "zone-2a")]),  # one network: direct
])
def test_remote_endpoint_edge_cases(change, expected):
    remote = payload(CLUSTER_2)
    change(remote)
    local = payload(CLUSTER_1, [reviews_dr()])
    local["pods"] = [p for p in local["pods"] if p["labels"].get("version") != "v2"]
    snaps = snaps_of(model.from_watches(local, [remote]))
    assert flat(endpoints_of(snaps[node_of(snaps, "frontend")], f"outbound|9080|v2|{FQDN}")) == expected


# ---- locality failover ----

def test_without_outlier_detection_every_locality_is_priority_zero():
    snaps = snaps_of(two([reviews_dr()]))
    frontend = snaps[node_of(snaps, "frontend")]
    assert {g.get("priority", 0) for g in endpoints_of(frontend, f"outbound|9080||{FQDN}")} == {0}
    assert "common_lb_config" not in frontend.resources[snapshot.CLUSTER_TYPE][f"outbound|9080||{FQDN}"]


@pytest.mark.parametrize("policy,expected", [
    (OUTLIER, {("region-1", "zone-1a"): 0, ("region-1", "zone-1b"): 1, ("region-2", ""): 2}),
    ({**OUTLIER, "loadBalancer": {"localityLbSetting": {"failover": [{"from": "region-1", "to": "region-2"}]}}},
     {("region-1", "zone-1a"): 0, ("region-1", "zone-1b"): 1, ("region-2", ""): 2}),
    ({**OUTLIER, "loadBalancer": {"localityLbSetting": {"enabled": False}}},
     {("region-1", "zone-1a"): 0, ("region-1", "zone-1b"): 0, ("region-2", ""): 0}),
])
def test_failover_priorities_seen_from_frontend(policy, expected):
    snaps = snaps_of(two([reviews_dr(policy)]))
    frontend = snaps[node_of(snaps, "frontend")]
    groups = endpoints_of(frontend, f"outbound|9080||{FQDN}")
    assert {(g["locality"]["region"], g["locality"].get("zone", "")): g.get("priority", 0) for g in groups} == expected
    cluster = frontend.resources[snapshot.CLUSTER_TYPE][f"outbound|9080||{FQDN}"]
    assert ("locality_weighted_lb_config" in cluster["common_lb_config"]) == (
        policy["loadBalancer"]["localityLbSetting"].get("enabled", True) if "loadBalancer" in policy else True)
    assert cluster["common_lb_config"]["update_merge_window"] == "0s"  # outlierDetection: ejections act at once


def test_distribute_moves_the_share_between_localities():
    policy = {**OUTLIER, "loadBalancer": {"localityLbSetting": {"distribute": [
        {"from": "region-1/zone-1a/*", "to": {"region-1/*": 20, "region-2/*": 80}}]}}}
    snaps = snaps_of(two([reviews_dr(policy)]))
    groups = endpoints_of(snaps[node_of(snaps, "frontend")], f"outbound|9080||{FQDN}")
    weights = {(g["locality"]["region"], g["locality"].get("zone", "")): g["load_balancing_weight"] for g in groups}
    assert weights == {("region-1", "zone-1a"): 7, ("region-1", "zone-1b"): 14, ("region-2", ""): 80}
    assert {g.get("priority", 0) for g in groups} == {0}


# ---- the east-west gateway ----

def test_gateway_snapshot_passes_sni_through_to_local_pods():
    m = two([reviews_dr(OUTLIER)])
    snaps = snaps_of(m)
    gw = snaps[m.pod("istio-eastwestgateway-0", "mesh-system").node_id]
    assert gw.names(snapshot.ROUTE_TYPE) == set()
    listener = gw.resources[snapshot.LISTENER_TYPE]["0.0.0.0_15443"]
    assert listener["address"]["socket_address"] == {"address": "127.21.1.99", "port_value": 15443}
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    chains = {c["filter_chain_match"]["server_names"][0]: c for c in listener["filter_chains"]}
    name = f"outbound_.9080_.v2_.{FQDN}"
    assert chains[name]["filters"][0]["typed_config"]["cluster"] == name
    assert f"outbound_.9080_._.{FQDN}" in chains and "transport_socket" not in chains[name]  # never terminates TLS
    cluster = gw.resources[snapshot.CLUSTER_TYPE][name]
    assert "transport_socket" not in cluster and "transport_socket_matches" not in cluster
    assert cluster["outlier_detection"]["consecutive_5xx"] == 1
    assert flat(endpoints_of(gw, name)) == [("127.21.1.14", 15006, 1, 0, "region-1", "zone-1b")]
    assert len(flat(endpoints_of(gw, f"outbound_.9080_._.{FQDN}"))) == 3  # local pods only, never the peer's


def test_the_peer_gateway_serves_its_own_pods():
    m = model.from_watches(payload(CLUSTER_2, [reviews_dr()]), [payload(CLUSTER_1)])
    snaps = snaps_of(m)
    gw = snaps[m.pod("istio-eastwestgateway-0", "mesh-system").node_id]
    assert [a for a, *_ in flat(endpoints_of(gw, f"outbound_.9080_.v3_.{FQDN}"))] == ["127.22.1.13"]
    reviews = snaps[node_of(snaps, "reviews-v1")]  # cluster-2's reviews reach cluster-1's ratings through its gateway
    assert ("127.21.0.1", 15443, 2, 0, "region-1", "zone-1a") in flat(
        endpoints_of(reviews, "outbound|9080||ratings.default.svc.cluster.local"))


def only_in_cluster_2(defined_in_cluster_1: bool):
    """Both clusters' payloads with an app `ledger` whose only pod runs in cluster-2."""
    remote = payload(CLUSTER_2, [service("ledger")])
    remote["pods"].append({"name": "ledger-v1-0", "namespace": "default", "ip": "127.22.1.50", "node": "node-2",
                           "labels": {"app": "ledger"}, "annotations": {}, "service_account": "shop-ledger",
                           "ready": True, "injected": True, "ports": {"http": 9080}})
    return payload(CLUSTER_1, [service("ledger")] if defined_in_cluster_1 else []), remote


@pytest.mark.parametrize("defined_in_cluster_1", [True, False])
def test_a_service_with_pods_only_in_the_peer_is_reached_through_its_gateway(defined_in_cluster_1):
    local, remote = only_in_cluster_2(defined_in_cluster_1)
    name, host = "outbound|9080||ledger.default.svc.cluster.local", "ledger.default.svc.cluster.local:9080"
    snaps = snaps_of(model.from_watches(local, [remote]))
    frontend = snaps[node_of(snaps, "frontend")]
    assert host in [v["name"] for v in frontend.resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"]]
    assert frontend.resources[snapshot.CLUSTER_TYPE][name]["transport_socket_matches"][0]["transport_socket"][
        "typed_config"]["sni"] == "outbound_.9080_._.ledger.default.svc.cluster.local"
    assert flat(endpoints_of(frontend, name)) == [("127.22.0.1", 15443, 1, 0, "region-2", "zone-2b")]
    peer = model.from_watches(remote, [local])  # cluster-2's gateway has the chain and the pod behind it
    gw = snaps_of(peer)[peer.pod("istio-eastwestgateway-0", "mesh-system").node_id]
    sni_name = "outbound_.9080_._.ledger.default.svc.cluster.local"
    chains = gw.resources[snapshot.LISTENER_TYPE]["0.0.0.0_15443"]["filter_chains"]
    assert sni_name in {c["filter_chain_match"]["server_names"][0] for c in chains}
    assert flat(endpoints_of(gw, sni_name)) == [("127.22.1.50", 15006, 1, 0, "region-2", "zone-2b")]


# ---- every snapshot ----

MODELS = {"cluster-1": lambda: two([reviews_dr(OUTLIER)]),
          "cluster-2": lambda: model.from_watches(payload(CLUSTER_2, [reviews_dr(OUTLIER)]), [payload(CLUSTER_1)])}


@pytest.mark.parametrize("name", MODELS)
def test_every_snapshot_is_consistent_and_parses_into_protobuf(name):
    snaps = snaps_of(MODELS[name]())
    assert sum(n.startswith("router~") for n in snaps) == 1 and len(snaps) == (8 if name == "cluster-1" else 5)
    for node, snap in snaps.items():
        assert snap.consistent() == [], node
        for type_url, items in snap.resources.items():
            for body in items.values():
                json_format.ParseDict(body, MESSAGES[type_url]())


def test_trace_hops_name_the_cluster_only_in_a_multicluster_lab():
    def hops(m):
        snaps = snaps_of(m)
        snap = snaps[node_of(snaps, "reviews-v1")]
        out = snap.resources[snapshot.ROUTE_TYPE]["9080"]["request_headers_to_add"][0]["header"]["value"]
        chain = snap.resources[snapshot.LISTENER_TYPE]["virtualInbound"]["filter_chains"][0]
        inbound = chain["filters"][0]["typed_config"]["route_config"]["request_headers_to_add"][0]["header"]["value"]
        return out, inbound
    out, inbound = hops(two())
    assert out.endswith(";dir=out;cluster=%ENVIRONMENT(CLUSTER_NAME)%")
    assert inbound.endswith(";peer=%DOWNSTREAM_PEER_URI_SAN%;cluster=%ENVIRONMENT(CLUSTER_NAME)%")
    single = payload(CLUSTER_1)
    single.update(cluster="", network="")
    assert all("cluster=" not in hop for hop in hops(model.from_watch(single)))


def test_envoy_accepts_a_sidecar_and_a_gateway_of_the_two_cluster_mesh():
    m = two([reviews_dr({**OUTLIER, "loadBalancer": {"localityLbSetting": {"failover": [{"from": "region-1", "to": "region-2"}]}}})])
    snaps = snaps_of(m)
    assert envoy_check.validate(snaps[node_of(snaps, "frontend")], "stage6.yaml") is None
    assert envoy_check.validate(snaps[m.pod("istio-eastwestgateway-0", "mesh-system").node_id], "stage6.yaml") is None


def test_a_gateway_with_nothing_to_pass_through_has_no_listener():
    alone = {"cluster": "cluster-1", "network": "network-1", "pods": [payload(CLUSTER_1)["pods"][-1]]}
    m = model.from_watch(alone)
    snap = snapshot.build_all(m)[m.pods[0].node_id]
    assert snap.resources[snapshot.LISTENER_TYPE] == {} and snap.consistent() == []


def test_a_build_that_shares_parts_matches_each_proxys_own_build_in_every_locality():
    m = two([reviews_dr({**OUTLIER, "loadBalancer": {"localityLbSetting": {"enabled": True}}})])
    together = snapshot.build_all(m)
    assert len({p.locality for p in m.pods if p.node_id in together}) > 1  # several localities, several endpoint sets
    for pod in m.pods:
        if pod.node_id in together:
            alone = snapshot.build(m, pod)
            assert (together[pod.node_id].version, together[pod.node_id].resources) == (alone.version, alone.resources)
