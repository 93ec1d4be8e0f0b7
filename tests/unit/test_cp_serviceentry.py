"""ServiceEntry -> a virtual host (VirtualService applied), a plaintext cluster and its endpoints, in every sidecar."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2  # noqa: F401

from meshlab.controlplane import envoy_check, model, snapshot
from meshlab.controlplane.translate import serviceentry

HOST = "payments.legacy.example"
CLUSTER = f"outbound|9080||{HOST}"


def pod(name, app):
    return {"name": name, "namespace": "default", "ip": f"127.20.1.{len(name)}", "node": "node-1",
            "labels": {"app": app}, "annotations": {}, "service_account": app, "ready": True, "injected": True,
            "ports": {"http": 9080}}


def service(name):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}


def entry(name=HOST, created="1", **spec):
    body = {"hosts": [name], "location": "MESH_EXTERNAL", "resolution": "STATIC",
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.0.0.9"}], **spec}
    return {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": name.split(".")[0], "namespace": "default", "creationTimestamp": created}, "spec": body}


PAYMENTS_VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "payments", "namespace": "default"},
               "spec": {"hosts": [HOST], "http": [{"timeout": "3s", "retries": {"attempts": 3, "perTryTimeout": "1s",
                                                                                 "retryOn": "5xx,connect-failure,reset"},
                                                   "route": [{"destination": {"host": HOST, "port": {"number": 9080}}}]}]}}


def frontend_snapshot(*objects):
    m = model.from_watch({"revision": 1, "objects": [service("frontend"), *objects], "pods": [pod("frontend-0", "frontend")]})
    return snapshot.build_all(m)[m.pods[0].node_id]


def test_static_entry_gets_a_virtual_host_with_the_virtual_service_and_a_plaintext_cluster():
    snap = frontend_snapshot(entry(), PAYMENTS_VS)
    assert snap.consistent() == []
    hosts = {h["name"]: h for h in snap.resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"]}
    payments = hosts[f"{HOST}:9080"]
    assert payments["domains"] == [HOST]
    action = payments["routes"][0]["route"]
    assert action["cluster"] == CLUSTER and action["timeout"] == "3s"
    assert action["retry_policy"]["num_retries"] == 3 and action["retry_policy"]["per_try_timeout"] == "1s"
    assert list(hosts)[-1] == "block_all"  # the catch-all stays last
    cluster = snap.resources[snapshot.CLUSTER_TYPE][CLUSTER]
    assert cluster["type"] == "EDS" and "transport_socket" not in cluster and "transport_socket_matches" not in cluster
    assert snap.resources[snapshot.ENDPOINT_TYPE][CLUSTER]["endpoints"] == [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.9", "port_value": 9080}}}}]}]
    assert envoy_check.validate(snap, "payments.yaml") is None


def test_without_a_virtual_service_the_entry_gets_istio_default_route():
    route = frontend_snapshot(entry()).resources[snapshot.ROUTE_TYPE]["9080"]["virtual_hosts"][1]["routes"][0]
    assert route["route"]["cluster"] == CLUSTER and route["route"]["timeout"] == "0s"
    assert route["route"]["retry_policy"]["num_retries"] == 2


@pytest.mark.parametrize("spec,expected", [
    ({"resolution": "DNS", "endpoints": []}, [("payments.legacy.example", 9080)]),
    ({"resolution": "DNS", "endpoints": [{"address": "legacy.internal", "ports": {"http": 8080}}]}, [("legacy.internal", 8080)]),
])
def test_dns_entry_is_a_strict_dns_cluster(spec, expected):
    snap = frontend_snapshot(entry(**spec))
    cluster = snap.resources[snapshot.CLUSTER_TYPE][CLUSTER]
    assert cluster["cluster_type"]["name"] == "envoy.cluster.dns" and "eds_cluster_config" not in cluster
    assert "type" not in cluster  # strict DNS is the cluster extension in current Envoy
    got = [(e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"])
           for g in cluster["load_assignment"]["endpoints"] for e in g["lb_endpoints"]]
    assert got == expected and CLUSTER not in snap.names(snapshot.ENDPOINT_TYPE) and snap.consistent() == []
    json_format.ParseDict(cluster, cluster_pb2.Cluster())
    assert envoy_check.validate(snap, "payments.yaml") is None


@pytest.mark.parametrize("location,tls,expected", [
    ("MESH_EXTERNAL", None, set()),
    ("MESH_EXTERNAL", {"mode": "ISTIO_MUTUAL"}, {"transport_socket"}),
    ("MESH_INTERNAL", None, {"transport_socket_matches"}),
    ("MESH_INTERNAL", {"mode": "DISABLE"}, set()),
])
def test_entry_tls(location, tls, expected):
    objects = [entry(location=location)]
    if tls:
        objects.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                        "metadata": {"name": "payments", "namespace": "default"},
                        "spec": {"host": HOST, "trafficPolicy": {"tls": tls}}})
    cluster = frontend_snapshot(*objects).resources[snapshot.CLUSTER_TYPE][CLUSTER]
    assert {"transport_socket", "transport_socket_matches"} & set(cluster) == expected


def test_hosts_that_name_a_service_or_an_older_entry_are_skipped_and_tcp_ports_get_no_route():
    tcp = entry(created="2", ports=[{"number": 5432, "name": "db", "protocol": "TCP"}])
    objects = [entry(created="1"), tcp, entry("frontend", created="3")]
    m = model.from_watch({"objects": [service("frontend"), *objects], "pods": [pod("frontend-0", "frontend")]})
    assert [(h, e.spec["ports"][0]["number"]) for h, e in serviceentry.entry_hosts(m, "default")] == [(HOST, 9080)]
    only_tcp = model.from_watch({"objects": [tcp], "pods": [pod("frontend-0", "frontend")]})
    proxy = only_tcp.pods[0]
    assert serviceentry.entry_virtual_hosts(only_tcp, proxy) == []
    assert [c["name"] for c in serviceentry.entry_clusters(only_tcp, proxy)] == [f"outbound|5432||{HOST}"]
