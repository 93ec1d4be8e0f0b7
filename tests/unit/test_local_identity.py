"""A runtime that is one cluster of several: labelled nodes, CLUSTER_NAME in every container, the watch additions."""

from __future__ import annotations

from meshlab.backends.local import watch
from meshlab.backends.local.identity import REGION_LABEL, ZONE_LABEL, ClusterIdentity
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.controlplane import deploy
from meshlab.stages import shop

TWO = ClusterIdentity("cluster-2", "network-2", "region-2")


def runtime(tmp_path, identity=ClusterIdentity()) -> Runtime:
    rt = Runtime(tmp_path, 9, 3, {}, identity)
    for doc in deploy.documents(identity.name, identity.network) + deploy.gateway_documents() + \
            [deploy.remote_secret("cluster-1", "network-1", "@meshlab-one"), shop.app_configmap()]:
        rt.objects[key_of(doc)] = doc
    rt._sync_workloads()
    return rt


def test_nodes_carry_region_and_zone_and_everything_names_the_cluster(tmp_path):
    rt = runtime(tmp_path, TWO)
    assert [n.labels for n in rt.nodes.values()] == [
        {REGION_LABEL: "region-2", ZONE_LABEL: f"zone-2{z}"} for z in "abc"]
    assert {n["cluster"] for n in rt.node_infos()} == {p["cluster"] for p in rt.pod_infos()} == {"cluster-2"}
    assert TWO.argv() == ["--cluster", "cluster-2", "--network", "network-2", "--region", "region-2"]


def test_every_container_of_a_cluster_gets_cluster_name_and_a_single_cluster_lab_none(tmp_path):
    for identity, wanted in ((TWO, "cluster-2"), (ClusterIdentity(), None)):
        rt = runtime(tmp_path / (identity.name or "one"), identity)
        for pod in rt.pods.values():
            for container in pod.spec["containers"]:
                assert pod.env_for(container).get("CLUSTER_NAME") == wanted


def test_the_watch_answer_adds_network_nodes_gateway_ports_and_remote_secrets_only_with_clusters(tmp_path):
    answer = runtime(tmp_path / "two", TWO).watch_payload()
    assert answer["cluster"] == "cluster-2" and answer["network"] == "network-2"
    assert answer["nodes"][0] == {"name": "node-1", "ip": "127.9.1.1", "ready": True,
                                  "labels": {REGION_LABEL: "region-2", ZONE_LABEL: "zone-2a"}}
    gateway = next(p for p in answer["pods"] if p["labels"].get("istio") == "eastwestgateway")
    assert gateway["ports"]["tls"] == 15443 and gateway["host_ports"] == {"tls": 15443}
    assert gateway["host_ip"] == f"127.9.{gateway['node'][-1]}.1" and not gateway["injected"]
    assert [o["metadata"]["name"] for o in answer["objects"] if o["kind"] == "ConfigMap"] == ["istio-remote-secret-cluster-1"]
    single = runtime(tmp_path / "one").watch_payload()
    assert single["cluster"] == "" and "nodes" not in single and "network" not in single
    assert not [o for o in single["objects"] if o["kind"] == "ConfigMap"]
    assert all("host_ip" not in p for p in single["pods"])


def test_the_control_plane_of_a_cluster_is_told_its_name_network_and_the_shared_root():
    (container,) = deploy.documents("cluster-1", "network-1", "/state/fleet/ca")[2]["spec"]["template"]["spec"]["containers"]
    assert container["args"][-6:] == ["--cluster", "$(CLUSTER_ID)", "--network", "$(NETWORK)", "--root-ca", "/state/fleet/ca"]
    assert {"name": "CLUSTER_ID", "value": "cluster-1"} in container["env"]
    assert deploy.documents("cluster-1", "network-1")[0]["metadata"]["labels"] == {"topology.istio.io/network": "network-1"}
    assert "labels" not in deploy.documents()[0]["metadata"] and "--cluster" not in str(deploy.documents())
    assert watch.is_remote_secret(deploy.remote_secret("cluster-2", "network-2", "@x"))
