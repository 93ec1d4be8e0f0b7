"""The control plane program without Envoy: debounced builds, status HTTP, and the ADS protocol
(ACK, NACK without resend, stale nonces, named EDS, SDS identity) spoken by a plain gRPC client."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import grpc
import pytest

from meshlab.controlplane import ads, server
from cryptography import x509
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

NODE = "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Snapshot:
    version: str
    resources: dict = field(default_factory=dict)
    dangling: list = field(default_factory=list)
    closed: tuple = ()

    def consistent(self):
        return list(self.dangling)


def snapshot_for(payload: dict) -> dict:
    """A translate stand-in: one cluster per object name, endpoints named alike; errors on `bad`."""
    names = [o["metadata"]["name"] for o in payload["objects"]]
    if "bad" in names:
        raise ValueError("VirtualService bad: http[0]: route is required")
    clusters = {n: {"name": n, "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}}} for n in names}
    endpoints = {n: {"cluster_name": n} for n in names}
    return {f"sidecar~127.0.0.1~{p['name']}.{p['namespace']}~{p['namespace']}.svc.cluster.local":
            Snapshot("r" + "-".join(names), {ads.CLUSTER_TYPE: clusters, ads.ENDPOINT_TYPE: endpoints},
                     dangling=["dangling"] if "dangling" in names else [])
            for p in payload["pods"]}


def payload(revision: int, *names: str) -> dict:
    return {"revision": revision, "cluster": "", "objects": [{"metadata": {"name": n}} for n in names],
            "pods": [{"name": "web-1", "namespace": "shop", "service_account": "shop-web", "ip": "127.0.0.1"}]}


@pytest.fixture
def plane(tmp_path):
    lines: list[str] = []
    cp = server.ControlPlane("127.0.0.1", 0, 0, tmp_path / "ca", debounce=0.05, translate=snapshot_for,
                             log=lines.append).start()
    cp.lines = lines
    try:
        yield cp
    finally:
        cp.stop()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("timed out")


def syncz(cp) -> dict:
    return json.loads(NO_PROXY.open(f"http://127.0.0.1:{cp.status_port}/debug/syncz", timeout=5).read())


class AdsClient:
    """A bare ADS client: send requests, read responses with a timeout."""

    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = stub.StreamAggregatedResources(iter(self.requests.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError:
            pass

    def send(self, type_url, version="", nonce="", names=(), error=""):
        request = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=NODE), type_url=type_url,
                                                 version_info=version, response_nonce=nonce,
                                                 resource_names=list(names))
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put(request)

    def receive(self, timeout=5.0) -> discovery_pb2.DiscoveryResponse:
        return self.responses.get(timeout=timeout)

    def nothing(self, wait=0.3) -> bool:
        try:
            self.responses.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self):
        self.requests.put(None)
        self.call.cancel()
        self.channel.close()


def test_debounce_builds_the_newest_state_once(plane):
    for revision in range(1, 6):
        plane.offer(payload(revision, "a", f"x{revision}"))
    wait_until(lambda: syncz(plane)["built_revision"] == 5)
    time.sleep(0.1)
    builds = [line for line in plane.lines if line.startswith("build ")]
    assert len(builds) == 1 and "revision=5" in builds[0]
    status = syncz(plane)
    assert status["revision"] == 5 and status["proxies"][0]["version"] == "ra-x5"
    assert NO_PROXY.open(f"http://127.0.0.1:{plane.status_port}/healthz", timeout=5).read() == b"ok\n"
    with pytest.raises(urllib.error.HTTPError):
        NO_PROXY.open(f"http://127.0.0.1:{plane.status_port}/nope", timeout=5)


def test_failed_build_and_refused_snapshot_keep_the_old_config(plane):
    plane.offer(payload(1, "a"))
    wait_until(lambda: syncz(plane)["built_revision"] == 1)
    plane.offer(payload(2, "bad"))
    wait_until(lambda: syncz(plane)["error"])
    status = syncz(plane)
    assert status["revision"] == 2 and status["built_revision"] == 1 and "route is required" in status["error"]
    plane.offer(payload(3, "dangling"))
    wait_until(lambda: syncz(plane)["built_revision"] == 3)
    row = syncz(plane)["proxies"][0]
    assert row["version"] == "ra" and "dangling" in row["refused"] and row["built_revision"] == 1


def test_ads_protocol(plane):
    plane.offer(payload(1, "a", "b"))
    wait_until(lambda: syncz(plane)["built_revision"] == 1)
    client = AdsClient(plane.xds_port)
    try:
        client.send(ads.CLUSTER_TYPE)
        cds = client.receive()
        assert (cds.version_info, cds.type_url, len(cds.resources)) == ("ra-b", ads.CLUSTER_TYPE, 2)
        client.send(ads.ENDPOINT_TYPE, names=["b", "missing"])
        client.send(ads.CLUSTER_TYPE, version="ra-b", nonce=cds.nonce)  # ACK
        eds = client.receive()
        assert eds.type_url == ads.ENDPOINT_TYPE and len(eds.resources) == 1
        client.send(ads.ENDPOINT_TYPE, version="ra-b", nonce=eds.nonce, names=["b", "missing"])
        assert client.nothing()
        row = wait_until(lambda: (r := syncz(plane)["proxies"][0])["acked"] == "ra-b" and r)
        assert row["connected"] and row["types"]["ClusterLoadAssignment"]["version_acked"] == "ra-b"

        client.send(ads.ENDPOINT_TYPE, version="ra-b", nonce=eds.nonce, names=["a", "b"])  # new names
        eds = client.receive()
        assert eds.version_info == "ra-b" and len(eds.resources) == 2

        plane.offer(payload(2, "a", "b", "c"))  # a change is pushed on every subscribed type
        pushed = {r.type_url: r for r in (client.receive(), client.receive())}
        assert {r.version_info for r in pushed.values()} == {"ra-b-c"}
        client.send(ads.CLUSTER_TYPE, version="ra-b", nonce=pushed[ads.CLUSTER_TYPE].nonce, error="rejected!")
        client.send(ads.ENDPOINT_TYPE, version="ra-b", nonce="stale", names=["c"])  # ignored: old nonce
        assert client.nothing(), "a NACKed version must not be resent"
        row = wait_until(lambda: (r := syncz(plane)["proxies"][0])["nacked"] == "ra-b-c" and r)
        assert row["nack_error"] == "rejected!" and row["acked"] == "ra-b"

        client.send(ads.SECRET_TYPE, names=["default", "ROOTCA"])
        sds = client.receive()
        secrets = {}
        for packed in sds.resources:
            secret = secret_pb2.Secret()
            packed.Unpack(secret)
            secrets[secret.name] = secret
        assert set(secrets) == {"default", "ROOTCA"}
        leaf = x509.load_pem_x509_certificate(secrets["default"].tls_certificate.certificate_chain.inline_string.encode())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/shop-web"]
        assert secrets["ROOTCA"].validation_context.trusted_ca.inline_string == plane.ca.trust_bundle
        client.send(ads.SECRET_TYPE, version=sds.version_info, nonce=sds.nonce, names=["default", "ROOTCA"])
        assert client.nothing()
    finally:
        client.close()
    wait_until(lambda: not syncz(plane)["proxies"][0]["connected"])
    assert any(line.startswith("NACK Cluster") for line in plane.lines)


def test_secrets_only_for_known_pods_each_with_its_own_key(plane):
    two = payload(1, "a")
    two["pods"].append({"name": "web-2", "namespace": "shop", "service_account": "shop-web", "ip": "127.0.0.1"})
    plane.build(two)
    first = plane.secrets(NODE)
    other = plane.secrets("sidecar~127.0.0.1~web-2.shop~shop.svc.cluster.local")
    assert set(first) == {"default", "ROOTCA"}
    assert first == plane.secrets(NODE)  # stable until rotation
    key = lambda s: s["default"]["tls_certificate"]["private_key"]["inline_string"]
    assert key(first) != key(other)
    assert plane.secrets("sidecar~127.0.0.1~stranger.shop~shop.svc.cluster.local") is None
    plane.build(payload(2, "a"))  # web-2 is gone: its certificate is forgotten
    assert plane.secrets("sidecar~127.0.0.1~web-2.shop~shop.svc.cluster.local") is None
    assert [k[0] for k in plane.ca._issued] == [NODE]


def test_any_typed_config_resolves_and_bad_json_is_not_sent(plane):
    cors = {"name": "l", "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "s", "http_filters": [{"name": "cors", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "rl"}}]}}]}]}
    assert ads.to_any(ads.LISTENER_TYPE, cors).type_url == ads.LISTENER_TYPE
    with pytest.raises(ads.json_format.ParseError):
        ads.to_any(ads.CLUSTER_TYPE, {"name": "c", "no_such_field": 1})
    plane.cache.set(NODE, Snapshot("bad", {ads.CLUSTER_TYPE: {"c": {"name": "c", "no_such_field": 1}}}))
    client = AdsClient(plane.xds_port)
    try:
        client.send(ads.CLUSTER_TYPE)
        assert client.nothing()
        row = wait_until(lambda: (r := syncz(plane)["proxies"][0])["nacked"] == "bad" and r)
        assert "cannot encode" in row["nack_error"] and "no_such_field" in row["nack_error"]
    finally:
        client.close()
