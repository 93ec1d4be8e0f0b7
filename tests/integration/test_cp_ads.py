"""The ADS server against a real Envoy: it ACKs, serves the config and the SDS identity, gets rotated
certificates, and a config Envoy rejects is recorded as a NACK while the old one keeps serving."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cpfakes import ads_bootstrap
from cryptography import x509

from meshlab.controlplane import ads, ca, cache
from meshlab.envoy import binary
import waiting

pytestmark = pytest.mark.integration
NODE = "sidecar~127.0.0.1~web-6d8f-abcde.shop~shop.svc.cluster.local"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
ADS_SOURCE = {"ads": {}, "resource_api_version": "V3"}
CERT_TTL = 4.0


@dataclass
class Snapshot:
    """A hand-made snapshot with the shape of meshlab.controlplane.snapshot.Snapshot."""

    version: str
    resources: dict = field(default_factory=dict)

    def consistent(self) -> list[str]:
        """Nothing dangling in these hand-made snapshots."""
        return []


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hcm(stat_prefix: str) -> dict:
    """An HTTP connection manager filter routing with RDS `local` over ADS."""
    return {"name": "envoy.filters.network.http_connection_manager",
            "typed_config": {"@type": HCM, "stat_prefix": stat_prefix, "http_filters": [ROUTER],
                             "rds": {"route_config_name": "local", "config_source": ADS_SOURCE}}}


def config(version: str, ports: dict, body_header: str, broken: bool = False) -> Snapshot:
    """Listeners (plain + mTLS via SDS), route `local`, EDS cluster `backend` and its endpoints."""
    plain = hcm("plain")
    if broken:
        plain["typed_config"]["stat_prefix"] = ""  # proto-valid JSON, but Envoy's validation rejects it
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificate_sds_secret_configs": [{"name": "default", "sds_config": ADS_SOURCE}],
            "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": ADS_SOURCE}}}}

    def listener(name, port, filters, transport=None):
        chain = {"filters": filters, **({"transport_socket": transport} if transport else {})}
        return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [chain]}
    route = {"name": "local", "virtual_hosts": [{
        "name": "all", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"},
                    "response_headers_to_add": [{"header": {"key": "x-config", "value": body_header}}]}]}]}
    return Snapshot(version, {
        ads.LISTENER_TYPE: {"plain": listener("plain", ports["plain"], [plain]),
                            "mtls": listener("mtls", ports["mtls"], [hcm("mtls")], tls)},
        ads.ROUTE_TYPE: {"local": route},
        ads.CLUSTER_TYPE: {"backend": {"name": "backend", "type": "EDS", "connect_timeout": "1s",
                                       "eds_cluster_config": {"eds_config": ADS_SOURCE}}},
        ads.ENDPOINT_TYPE: {"backend": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["backend"]}}}}]}]}},
    })


def bootstrap(xds_port: int, admin_port: int) -> dict:
    """An Envoy bootstrap that takes everything over ADS from the server under test."""
    return ads_bootstrap(NODE, "web.shop", xds_port, admin_port)


class Backend(http.server.BaseHTTPRequestHandler):
    """The app behind Envoy: answers `hello`."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


def wait_for(what, predicate, timeout: float = 15.0):
    """Poll predicate until it returns something truthy; fail naming what was awaited."""
    return waiting.wait_for(what, predicate, timeout, tolerate=(OSError, ValueError, KeyError))


@pytest.fixture(scope="module")
def mesh():
    """ADS server + CA + backend + a real Envoy, all torn down afterwards."""
    folder = tempfile.TemporaryDirectory(prefix="meshlab-cp-ads-")
    root = Path(folder.name)
    logs: list[str] = []
    snapshots = cache.SnapshotCache()
    authority = ca.CertificateAuthority(root / "ca", ttl=CERT_TTL)
    secrets = lambda node_id: ca.sds_secrets(authority.workload("shop", "shop-web"), authority.trust_bundle)
    service = ads.AdsService(snapshots, secrets, log=logs.append, secret_check_interval=0.2)
    server = backend = envoy = None
    try:
        server = ads.AdsServer(service, "127.0.0.1", 0).start()
        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        ports = {"plain": free_port(), "mtls": free_port(), "backend": backend.server_address[1],
                 "admin": free_port()}
        (root / "envoy.json").write_text(json.dumps(bootstrap(server.port, ports["admin"])))
        log = open(root / "envoy.log", "wb")
        envoy = subprocess.Popen([binary.find(), "-c", str(root / "envoy.json"), "--disable-hot-restart",
                                  "--concurrency", "1", "--base-id", str(os.getpid() % 60000 + 1000),
                                  "-l", "warning"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        yield {"cache": snapshots, "ports": ports, "ca": authority, "logs": logs, "root": root, "envoy": envoy}
    finally:
        if envoy:
            envoy.kill()
            envoy.wait()
        if server:
            server.stop(0)
        if backend:
            backend.shutdown()
            backend.server_close()
        if envoy and envoy.returncode not in (0, -9):
            print((root / "envoy.log").read_text(errors="replace"))
        folder.cleanup()


def proxy_status(mesh) -> dict:
    """This proxy's row of /debug/syncz."""
    return next(p for p in mesh["cache"].status()["proxies"] if p["node_id"] == NODE)


def get(mesh, path: str = "/"):
    """GET through Envoy's plain listener: (status, x-config header, body)."""
    with NO_PROXY.open(f"http://127.0.0.1:{mesh['ports']['plain']}{path}", timeout=5) as answer:
        return answer.status, answer.headers.get("x-config"), answer.read()


def dumped_versions(mesh) -> dict:
    """version_info per dynamic resource in Envoy's /config_dump."""
    url = f"http://127.0.0.1:{mesh['ports']['admin']}/config_dump?include_eds"
    dump = json.loads(NO_PROXY.open(url, timeout=5).read())
    versions = {}
    for part in dump["configs"]:
        for listener in part.get("dynamic_listeners", []):
            if "active_state" in listener:
                versions[f"listener/{listener['name']}"] = listener["active_state"].get("version_info")
        for cluster in part.get("dynamic_active_clusters", []):
            versions[f"cluster/{cluster['cluster']['name']}"] = cluster.get("version_info")
        for route in part.get("dynamic_route_configs", []):
            versions[f"route/{route['route_config']['name']}"] = route.get("version_info")
    return versions


def test_envoy_acks_and_serves_the_snapshot(mesh):
    assert mesh["cache"].set(NODE, config("v1", mesh["ports"], "one"))
    wait_for("Envoy to ACK v1", lambda: proxy_status(mesh)["acked"] == "v1")
    row = proxy_status(mesh)
    assert row["connected"] and row["version"] == "v1" and not row["nacked"]
    assert row["pod"] == "web-6d8f-abcde" and row["namespace"] == "shop"
    assert row["pushed_at"] <= row["acked_at"]
    assert wait_for("traffic through Envoy", lambda: get(mesh)) == (200, "one", b"hello")
    versions = dumped_versions(mesh)
    assert versions["listener/plain"] == versions["cluster/backend"] == versions["route/local"] == "v1"


def test_tls_listener_presents_the_workload_identity(mesh):
    authority = mesh["ca"]
    client = authority.workload("shop", "shop-client")
    files = mesh["root"] / "client"
    files.mkdir(exist_ok=True)
    (files / "chain.pem").write_text(client.chain_pem)
    (files / "key.pem").write_text(client.key_pem)
    context = ssl.create_default_context(cadata=authority.trust_bundle)
    context.check_hostname = False
    context.load_cert_chain(files / "chain.pem", files / "key.pem")

    def peer_identity():
        with socket.create_connection(("127.0.0.1", mesh["ports"]["mtls"]), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
                return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, cert.serial_number
    san, _ = wait_for("the mTLS listener", peer_identity)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/shop-web"]


def test_rotated_certificate_is_pushed(mesh):
    def serial():
        context = ssl.create_default_context(cadata=mesh["ca"].trust_bundle)
        context.check_hostname = False
        client = mesh["ca"].workload("shop", "shop-client")
        files = mesh["root"] / "client"
        (files / "chain.pem").write_text(client.chain_pem)
        (files / "key.pem").write_text(client.key_pem)
        context.load_cert_chain(files / "chain.pem", files / "key.pem")
        with socket.create_connection(("127.0.0.1", mesh["ports"]["mtls"]), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    first = wait_for("a TLS handshake", serial)
    second = wait_for("a rotated certificate", lambda: serial() != first and serial(), timeout=CERT_TTL * 3)
    assert second != first
    assert any(line.startswith("ACK Secret") for line in mesh["logs"])


def test_rejected_config_is_a_nack_and_the_old_one_keeps_serving(mesh):
    assert mesh["cache"].set(NODE, config("v2", mesh["ports"], "two", broken=True))
    row = wait_for("Envoy to NACK v2", lambda: (r := proxy_status(mesh))["nacked"] == "v2" and r)
    assert "stat_prefix" in row["nack_error"] or "StatPrefix" in row["nack_error"]
    assert row["version"] == "v2" and row["acked"] == "v1"
    assert any(line.startswith("NACK Listener") for line in mesh["logs"])
    pushes = sum(line.startswith("push Listener") for line in mesh["logs"])
    time.sleep(0.5)
    assert sum(line.startswith("push Listener") for line in mesh["logs"]) == pushes, "NACKed version resent"
    assert dumped_versions(mesh)["listener/plain"] == "v1"
    assert get(mesh)[0] == 200

    assert mesh["cache"].set(NODE, config("v3", mesh["ports"], "three"))
    wait_for("Envoy to ACK v3", lambda: proxy_status(mesh)["acked"] == "v3")
    assert not proxy_status(mesh)["nacked"]
    assert wait_for("the new route", lambda: get(mesh)[1] == "three")
    assert mesh["envoy"].poll() is None
