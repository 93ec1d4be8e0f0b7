"""The lab's service proxy (kube-proxy as one Envoy): listeners and clusters from Services and endpoints, the
files and their version, reading Envoy's admin answers, the mode switch, and readiness that waits for the sync."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from meshlab.backends.base import MeshlabError
from meshlab.backends.local import kubeproxy
from meshlab.backends.local.forwarder import Forwarders
from meshlab.backends.local.runtime import Runtime, key_of
from meshlab.stages import shop

CIP, POD_A, POD_B = "127.9.0.10", "127.9.1.10", "127.9.2.10"


def tcp_proxy(listener: dict) -> dict:
    (chain,) = listener["filter_chains"]
    (proxy,) = chain["filters"]
    return proxy["typed_config"]


def hosts(cluster: dict) -> list[str]:
    (group,) = cluster["load_assignment"]["endpoints"]
    return [f"{h['endpoint']['address']['socket_address']['address']}:"
            f"{h['endpoint']['address']['socket_address']['port_value']}" for h in group["lb_endpoints"]]


# ---- config from routes --------------------------------------------------------------------------------

@pytest.mark.parametrize("routes, listeners, clusters", [
    ({}, [], {}),
    ({(CIP, 9080): [(POD_A, 9080)]}, ["127.9.0.10:9080"], {"127.9.0.10:9080": ["127.9.1.10:9080"]}),
    ({(CIP, 9080): [(POD_A, 15006), (POD_B, 9080)]}, ["127.9.0.10:9080"],
     {"127.9.0.10:9080": ["127.9.1.10:15006", "127.9.2.10:9080"]}),  # an injected pod's endpoint is its sidecar
    ({(CIP, 9080): [], (CIP, 15014): [(POD_A, 15014)]}, ["127.9.0.10:9080", "127.9.0.10:15014"],
     {"127.9.0.10:9080": [], "127.9.0.10:15014": ["127.9.1.10:15014"]}),  # two ports; one with no ready pod
    ({("127.9.3.1", 15001): [(POD_A, 15001)]}, ["127.9.3.1:15001"], {"127.9.3.1:15001": ["127.9.1.10:15001"]}),
])
def test_one_listener_and_one_cluster_of_the_ready_endpoints_per_address(routes, listeners, clusters):
    lds, cds = kubeproxy.resources(routes)
    assert [item["name"] for item in lds] == listeners
    assert {item["name"]: hosts(item) for item in cds} == clusters
    for item in lds:
        ip, port = item["name"].rsplit(":", 1)
        assert item["address"]["socket_address"] == {"address": ip, "port_value": int(port)}
        assert tcp_proxy(item)["cluster"] == item["name"]  # the listener's own cluster
        assert item["enable_reuse_port"] is False


def test_listeners_skip_dead_endpoints_and_never_time_out_idle_connections():
    (item,), (cl,) = kubeproxy.resources({(CIP, 15010): [(POD_A, 15010)]})
    assert tcp_proxy(item)["max_connect_attempts"] > 1
    assert tcp_proxy(item)["idle_timeout"] == "0s"  # an xDS stream through a ClusterIP stays up
    assert cl["type"] == "STATIC" and cl["lb_policy"] == "ROUND_ROBIN"


def test_the_version_follows_the_content_not_the_order():
    one, files = kubeproxy.files({(CIP, 9080): [(POD_A, 9080)], (CIP, 9081): []})
    same, _ = kubeproxy.files({(CIP, 9081): [], (CIP, 9080): [(POD_A, 9080)]})
    other, _ = kubeproxy.files({(CIP, 9080): [(POD_B, 9080)], (CIP, 9081): []})
    assert one == same != other
    assert set(files) == {"lds.json", "cds.json"}
    for text in files.values():
        assert json.loads(text)["version_info"] == one


def test_the_bootstrap_watches_the_config_folder_and_serves_admin_on_the_lab_block(tmp_path):
    boot = kubeproxy.bootstrap("127.9.0.4", tmp_path)
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.9.0.4", "port_value": 15000}
    for kind in ("lds_config", "cds_config"):
        source = boot["dynamic_resources"][kind]["path_config_source"]
        assert source["watched_directory"] == {"path": str(tmp_path)}
        assert source["path"].startswith(str(tmp_path) + "/")


# ---- reading the admin API -----------------------------------------------------------------------------

def test_stats_text_and_chunked_bodies_are_read():
    parts = [b'name: "v1"\nx', b"count: 3\nother: 4" * 2]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    assert kubeproxy.dechunk(body) == b"".join(parts)
    assert kubeproxy.parse_stats('a.version_text: "abc"\nb.update_rejected: 2\nnoise') == \
        {"a.version_text": "abc", "b.update_rejected": "2"}


def test_an_address_held_by_another_process_is_a_one_line_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    address = holder.getsockname()
    try:
        with pytest.raises(MeshlabError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"):
            kubeproxy.check_free(address)
    finally:
        holder.close()
    kubeproxy.check_free(address)  # free again


# ---- the switch ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kind", [("envoy", kubeproxy.KubeProxy), ("Envoy ", kubeproxy.KubeProxy),
                                         ("python", Forwarders)])
def test_the_mode_picks_the_service_proxy(monkeypatch, tmp_path, value, kind):
    monkeypatch.setenv("MESHLAB_CLUSTERIP", value)
    assert isinstance(kubeproxy.service_proxy(tmp_path, "127.9.0.4"), kind)


def test_an_unknown_mode_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHLAB_CLUSTERIP", "iptables")
    with pytest.raises(MeshlabError, match="MESHLAB_CLUSTERIP=iptables is not a ClusterIP mode"):
        kubeproxy.service_proxy(tmp_path, "127.9.0.4")


# ---- in the runtime: what is served, and readiness that waits for the proxy ----------------------------

class Running:
    def poll(self):
        return None


class SlowProxy:
    """A service proxy whose sync records the routes of that moment and returns when the test lets it."""

    def __init__(self):
        self.synced: list[dict] = []
        self.release = asyncio.Event()

    async def sync(self, wanted) -> None:
        routes = {address: backends() for address, backends in wanted.items()}
        await self.release.wait()
        self.synced.append(routes)

    def running(self) -> bool:
        return True

    def pids(self) -> list:
        return []


def runtime(tmp_path) -> Runtime:
    rt = Runtime(tmp_path, 9, 2, {})
    container = shop.app_container("reviews", "v1", [])
    docs = [shop.deployment("reviews", "v1", 1, [container], []), shop.service("reviews"),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews-headless"},
             "spec": {"clusterIP": "None", "selector": {"app": "reviews"}, "ports": [{"port": 9080}]}},
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-proxy"},
             "spec": {"selector": {"matchLabels": {"app": "node-proxy"}}, "template": {
                 "metadata": {"labels": {"app": "node-proxy"}},
                 "spec": {"containers": [{"name": "p", "image": "python:3.11", "command": ["python", "x.py"],
                                          "ports": [{"containerPort": 15001, "hostPort": 15001}]}]}}}}]
    for doc in docs:
        rt.objects[key_of(doc)] = doc
    rt.service_proxy = SlowProxy()
    return rt


def make_ready(pod) -> None:
    for c in pod.containers:
        c.proc = Running()
        pod.probe_ok[c.name] = True


def test_services_and_host_ports_are_served_headless_ones_not(tmp_path):
    async def scenario():
        rt = runtime(tmp_path)
        rt.service_proxy.release.set()
        rt._sync_workloads()
        for pod in rt.pods.values():
            make_ready(pod)
        await rt._sync_services()
        return rt

    rt = asyncio.run(scenario())
    (routes,) = rt.service_proxy.synced
    reviews = next(p for p in rt.pods.values() if p.labels.get("app") == "reviews")
    proxies = {p.host_ip: p.ip for p in rt.pods.values() if p.labels.get("app") == "node-proxy"}
    assert routes == {(rt.cluster_ips[("default", "reviews")], 9080): [(reviews.ip, 9080)],
                      **{(host, 15001): [(ip, 15001)] for host, ip in proxies.items()}}
    lds, _ = kubeproxy.resources(routes)
    assert len(lds) == 1 + len(rt.nodes)  # the ClusterIP and one hostPort per node; no headless listener


def test_a_pod_is_reported_ready_only_once_the_service_proxy_routes_to_it(tmp_path):
    async def scenario():
        rt = runtime(tmp_path)
        rt.service_proxy.release.set()
        async with rt.lock:
            await rt.reconcile()
        rt.synced_ready = {name: pod.ready for name, pod in rt.pods.items()}
        rt.service_proxy.release.clear()
        reviews = next(p for p in rt.pods.values() if p.labels.get("app") == "reviews")
        make_ready(reviews)  # the probe passed, in the tick
        follow = asyncio.create_task(rt.follow())
        await asyncio.sleep(0.01)
        status = asyncio.create_task(rt.settle())  # what the status and watch answers wait for
        await asyncio.sleep(0.05)
        waited = not status.done()
        rt.service_proxy.release.set()
        await asyncio.gather(follow, status)
        return rt, reviews, waited

    rt, reviews, waited = asyncio.run(scenario())
    assert waited, "status answered while the service proxy was still syncing"
    address = (rt.cluster_ips[("default", "reviews")], 9080)
    assert rt.service_proxy.synced[-1][address] == [(reviews.ip, 9080)]
