"""`python -m meshlab.controlplane` end to end: it watches a (stand-in) supervisor, translates with the
real model/snapshot code, and a real Envoy sidecar ACKs and carries a request over mTLS (SDS) to its app;
killing the control plane leaves traffic flowing on the last config."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

from cpfakes import ads_bootstrap, FakeSupervisor, abstract_name
from meshlab.envoy import binary
import waiting

pytestmark = pytest.mark.integration
POD_IP = f"127.253.{os.getpid() % 250 + 1}.10"  # outside the lab blocks (127.10-250.x.x): no clash with a lab
POD = "reviews-v1-abc12"
NODE = f"sidecar~{POD_IP}~{POD}.default~default.svc.cluster.local"
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SIDECAR = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{POD_IP}:15001"}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def state(strict: bool) -> dict:
    """One Service `reviews` with one injected pod; mesh-wide STRICT mTLS when asked."""
    objects = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}]
    if strict:
        objects.append({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                        "metadata": {"name": "default", "namespace": "mesh-system"}, "spec": {"mtls": {"mode": "STRICT"}}})
    pod = {"name": POD, "namespace": "default", "ip": POD_IP, "node": "node-1",
           "labels": {"app": "reviews", "version": "v1"}, "annotations": {}, "service_account": "shop-reviews",
           "ready": True, "injected": True, "ports": {"http": 9080}}
    return {"cluster": "", "objects": objects, "pods": [pod]}


class App(http.server.BaseHTTPRequestHandler):
    """The pod's app: echoes the trace header it got."""

    def do_GET(self):
        body = json.dumps({"trace": self.headers.get_all("x-meshlab-trace") or []}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


TOKEN = "token-of-reviews-v1"


def bootstrap(xds_port: int, admin_port: int) -> dict:
    """An Envoy bootstrap that takes everything over ADS from the server under test, with its pod's token."""
    return ads_bootstrap(NODE, "reviews.default", xds_port, admin_port, token=TOKEN)


def ads_answer(xds_port: int, node_id: str, token: str = ""):
    """Ask for a node's certificate as an impostor would: 'answered', or the gRPC status code."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    request = discovery_pb2.DiscoveryRequest(type_url="type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                                             resource_names=["default"])
    request.node.id = node_id
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(f"127.0.0.1:{xds_port}") as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        try:
            for _ in stub.StreamAggregatedResources(iter([request]), metadata=metadata, timeout=5):
                return "answered"
        except grpc.RpcError as exc:
            return exc.code()
    return "ended"


def wait_for(what, predicate, timeout: float = 20.0):
    return waiting.wait_for(what, predicate, timeout, tolerate=(OSError, ValueError, KeyError, StopIteration))


def test_control_plane_program_drives_a_real_sidecar():
    folder = tempfile.TemporaryDirectory(prefix="meshlab-cp-main-")
    root = Path(folder.name)
    api = abstract_name("cp-main")
    supervisor = FakeSupervisor(api, state(strict=False))
    supervisor.tokens[TOKEN] = {"namespace": "default", "name": POD, "serviceAccount": "shop-reviews"}
    xds, status, admin = free_port(), free_port(), free_port()
    app = plane = envoy = None
    try:
        app = http.server.ThreadingHTTPServer((POD_IP, 9080), App)
        threading.Thread(target=app.serve_forever, daemon=True).start()
        with open(root / "cp.log", "wb") as log:
            plane = subprocess.Popen(
                [sys.executable, "-m", "meshlab.controlplane", "--api", api, "--address", "127.0.0.1",
                 "--xds-port", str(xds), "--status-port", str(status), "--state", str(root / "ca"),
                 "--watch-timeout", "1"], stdout=log, stderr=subprocess.STDOUT)
        (root / "envoy.json").write_text(json.dumps(bootstrap(xds, admin)))
        with open(root / "envoy.log", "wb") as log:
            envoy = subprocess.Popen(
                [binary.find(), "-c", str(root / "envoy.json"), "--disable-hot-restart", "--concurrency", "1",
                 "--base-id", str(os.getpid() % 60000 + 2000), "-l", "warning"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": POD, "NODE_NAME": "node-1"})

        def synced():
            doc = json.loads(DIRECT.open(f"http://127.0.0.1:{status}/debug/syncz", timeout=2).read())
            row = next(p for p in doc["proxies"] if p["node_id"] == NODE)
            return row["version"] and row["acked"] == row["version"] and (doc, row)
        doc, row = wait_for("the sidecar to ACK its snapshot", synced)
        assert row["connected"] and row["pod"] == POD and doc["built_revision"] == doc["revision"] == 1
        assert DIRECT.open(f"http://127.0.0.1:{status}/healthz", timeout=2).read() == b"ok\n"

        def call():
            with SIDECAR.open("http://reviews:9080/", timeout=5) as answer:
                return answer.status == 200 and json.loads(answer.read())
        answer = wait_for("a request through the sidecar", call)
        hops = ",".join(answer["trace"])
        assert "dir=in" in hops and "peer=spiffe://cluster.local/ns/default/sa/shop-reviews" in hops, hops

        import grpc
        assert ads_answer(xds, NODE) == grpc.StatusCode.UNAUTHENTICATED  # no token: no certificate, no config
        assert ads_answer(xds, NODE, token="guessed") == grpc.StatusCode.UNAUTHENTICATED
        other = NODE.replace(POD, "ratings-v1-xyz")
        assert ads_answer(xds, other, token=TOKEN) == grpc.StatusCode.UNAUTHENTICATED  # reviews' token, not ratings'

        supervisor.set_state(state(strict=True))
        wait_for("the STRICT config", lambda: (s := synced()) and s[1]["version"] != row["version"])
        assert wait_for("a request under STRICT mTLS", call)

        plane.send_signal(signal.SIGTERM)
        assert plane.wait(10) == 0
        assert call(), "traffic keeps flowing on the last config without a control plane"
        log = (root / "cp.log").read_text()
        assert "push Listener" in log and "ACK Secret" in log and "build revision=2" in log, log
        assert "its token belongs to pod reviews-v1-abc12.default, not ratings-v1-xyz.default" in log, log
    finally:
        for proc in (envoy, plane):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
        if app:
            app.shutdown()
            app.server_close()
        supervisor.close()
        folder.cleanup()
